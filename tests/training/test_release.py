"""``python -m training.release``: the release folder, its model card, the dry run, the upload, and
the errors a user would hit.

Default suite: a LoRA adapter on the tiny Qwen3-VL with non-zero weights, saved with the files the
SFT stage's ``save_final`` writes (``test_release_slow.py`` releases a real SFT run and serves it).
The upload path runs against ``tests/training/recording_hub.py`` (huggingface_hub ships no local
Hub server; the double checks every call against the real ``HfApi`` signatures); nothing here
reaches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from inference.config import config_to_dict, load_yaml_overrides
from inference.video_sampling import FRAME_POLICY_FIELDS
from tests.training.conftest import REPO, TINY_OVERRIDES
from tests.training.helpers import dry_run_listing
from tests.training.recording_hub import InterruptedUpload, RecordingHubApi
from training.common.versions import code_versions, write_versions
from training.release import ReleaseConfig, ReleaseError, build_release, upload_release
from training.release.build import RELEASE_MANIFEST, release_files
from training.release.cli import main as release_main


def save_adapter_like_sft(base: Path, out: Path, seed: int = 0) -> Path:
    """A LoRA adapter on ``base`` with random non-zero LoRA weights (so merging changes the
    model), with what ``training.sft.trainer.save_final`` writes next to it."""
    from training.common.model import apply_lora, load_model, load_processor
    from training.sft.config import SFTConfig

    model = apply_lora(load_model(base, "float32", "sdpa"), rank=8, alpha=16, dropout=0.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(str(out))
    load_processor(base).save_pretrained(str(out))
    cfg = SFTConfig(**dict(TINY_OVERRIDES, model_name_or_path=str(base), output_dir=str(out.parent),
                           train_file=str(out.parent / "rows.jsonl"), lora_rank=8, lora_alpha=16))
    (out / "sft_config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
    write_versions(out, stage="sft")
    return out


@pytest.fixture(scope="module")
def adapter(licensed_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_adapter_like_sft(licensed_base, tmp_path_factory.mktemp("sft") / "final")


@pytest.fixture(scope="module")
def release(adapter: Path, tmp_path_factory: pytest.TempPathFactory):
    cfg = ReleaseConfig(adapter=str(adapter), output_dir=str(tmp_path_factory.mktemp("releases") / "videopro-tiny"),
                        dtype="float32", max_shard_size="400KB", base_model_id="Qwen/Qwen3-VL-8B-Instruct")
    return build_release(cfg)


# ------------------------------------------------------------------------------- the folder

def test_release_folder_holds_a_standalone_sharded_checkpoint_with_its_settings(release, adapter, licensed_base):
    names = {p for p, _ in release.files()}
    shards = sorted(n for n in names if n.startswith("model-") and n.endswith(".safetensors"))
    assert len(shards) > 1 and "model.safetensors.index.json" in names
    index = json.loads((release.path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    for name in ("config.json", "generation_config.json", "processor_config.json", "tokenizer.json",
                 "chat_template.jinja", "sft_config.json", "videopro_inference.yaml", "videopro_versions.json",
                 "videopro_release.json", "README.md"):
        assert name in names, name
    assert not any(n.startswith("adapter_") or n == "training_args.bin" for n in names)
    assert (release.path / "chat_template.jinja").read_text() == (adapter / "chat_template.jinja").read_text()

    # The paper's program sampling, with the base checkpoint's own top-p / top-k.
    base_gen = json.loads((licensed_base / "generation_config.json").read_text())
    gen = json.loads((release.path / "generation_config.json").read_text())
    assert gen["temperature"] == 0.7 and gen["max_new_tokens"] == 4096 and gen["do_sample"] is True
    assert gen["top_p"] == base_gen["top_p"] and gen["top_k"] == base_gen["top_k"]

    # The frame policy travels: sft_config.json and the --config file for videopro-run/videopro-eval.
    from inference.cli import RunConfig
    from inference.modules import ModuleConfig
    from inference.runner import RunnerConfig

    trained = json.loads((adapter / "sft_config.json").read_text())
    assert json.loads((release.path / "sft_config.json").read_text()) == trained
    from inference.evaluation.batch import EvalConfig

    settings = load_yaml_overrides(release.path / "videopro_inference.yaml", (RunConfig, RunnerConfig, ModuleConfig))
    assert load_yaml_overrides(release.path / "videopro_inference.yaml",
                               (EvalConfig, RunnerConfig, ModuleConfig)) == settings  # videopro-eval --config
    assert {f: settings[f] for f in FRAME_POLICY_FIELDS} == {f: trained[f] for f in FRAME_POLICY_FIELDS}
    assert settings["video_max_frames"] == 8 != ModuleConfig().video_max_frames  # not the defaults
    assert settings["video_patch_factor"] == 32 and settings["temperature"] == 0.7
    assert settings["confidence_threshold"] == 0.75 and settings["max_new_tokens"] == 4096
    assert settings["trust_program_confidence"] is False and "seed" not in settings

    manifest = json.loads((release.path / RELEASE_MANIFEST).read_text())
    assert manifest["stage"] == "sft" and manifest["source"]["path"] == str(adapter.resolve())
    assert manifest["base_model"]["license"] == "apache-2.0"
    assert manifest["base_model"]["merged_into"] == str(licensed_base)
    assert manifest["versions"]["trained_with"]["prompt_version"] == code_versions()["prompt_version"]
    listed = {f["path"]: f["size"] for f in manifest["files"]}
    assert listed == {p: n for p, n in release.files() if p != RELEASE_MANIFEST}
    assert not list(release.path.parent.glob("*.partial-*"))


def test_released_folder_reloads_in_transformers_with_the_adapters_logits(release, adapter, licensed_base):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(release.path)
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "Write a program."}]}],
                                         tokenize=False, add_generation_prompt=True)
    ids = processor.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        released = AutoModelForImageTextToText.from_pretrained(release.path, dtype=torch.float32).eval()
        before = AutoModelForImageTextToText.from_pretrained(adapter, dtype=torch.float32).eval()  # base + adapter
        base = AutoModelForImageTextToText.from_pretrained(licensed_base, dtype=torch.float32).eval()
        got, want, plain = (m(input_ids=ids).logits for m in (released, before, base))
        greedy = [m.generate(input_ids=ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)[0].tolist()
                  for m in (released, before)]
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, want, atol=1e-3)  # the adapter is in the released weights
    assert greedy[0] == greedy[1]


def test_card_metadata_licence_base_model_and_missing_report(release):
    from huggingface_hub import ModelCard

    card = ModelCard((release.path / "README.md").read_text())
    assert card.data.license == "apache-2.0" and card.data.base_model == "Qwen/Qwen3-VL-8B-Instruct"
    assert "videopro" in card.data.tags and card.data.pipeline_tag == "video-text-to-text"
    assert not card.data.eval_results
    text = card.text
    assert "No evaluation report was supplied" in text and "| benchmark |" not in text
    assert any("no evaluation report given" in w for w in release.warnings)
    for section in ("## How to use", "## Training recipe", "## Limitations", "## Citation", "## Licence",
                    "@article{li2025videopro", "overconfident", "videopro_inference.yaml"):
        assert section in text, section


def test_missing_evaluation_report_path_warns_and_writes_the_card_without_it(adapter, tmp_path, capsys):
    missing = tmp_path / "no_such_report"
    out = tmp_path / "release"
    assert release_main(["--adapter", str(adapter), "--output_dir", str(out), "--dtype", "float32",
                         "--eval_report", str(missing)]) == 0
    err = capsys.readouterr().err
    assert f"evaluation report {missing} not found" in err and "videopro-eval report" in err
    assert "No evaluation report was supplied" in (out / "README.md").read_text()


def test_a_recipe_saved_before_a_frame_policy_field_existed_gets_a_warning(adapter, tmp_path):
    from inference.video_sampling import FramePolicy

    old = tmp_path / "final"
    shutil.copytree(adapter, old)
    recipe = json.loads((old / "sft_config.json").read_text())
    del recipe["video_frame_rule"]
    (old / "sft_config.json").write_text(json.dumps(recipe))
    built = build_release(ReleaseConfig(adapter=str(old), output_dir=str(tmp_path / "release"), dtype="float32"))
    assert any("does not record video_frame_rule" in w for w in built.warnings)
    settings = yaml.safe_load((built.path / "videopro_inference.yaml").read_text())
    assert settings["video_frame_rule"] == FramePolicy().video_frame_rule
    assert settings["video_max_frames"] == recipe["video_max_frames"]


def test_output_dir_is_not_overwritten_without_asking(release, adapter, capsys):
    assert release_main(["--adapter", str(adapter), "--output_dir", str(release.path)]) == 2
    assert "--overwrite" in capsys.readouterr().err


# -------------------------------------------------------------------------- adapter vs base

def test_adapter_whose_base_has_another_architecture_is_refused(adapter, tiny_qwen2_5_vl, tmp_path):
    out = tmp_path / "release"
    with pytest.raises(ReleaseError, match="does not match the base the adapter was trained on") as info:
        build_release(ReleaseConfig(adapter=str(adapter), base=str(tiny_qwen2_5_vl), output_dir=str(out)))
    assert "qwen2_5_vl" in str(info.value) and "--base" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob("*.partial-*"))


def test_adapter_whose_layers_do_not_fit_the_base_is_refused(adapter, licensed_base, tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText

    # A base with another MLP width, and an adapter whose recorded base is gone (trained elsewhere).
    config = AutoConfig.from_pretrained(licensed_base)
    config.text_config.intermediate_size = 96
    other = tmp_path / "narrow-base"
    AutoModelForImageTextToText.from_config(config).save_pretrained(other)
    moved = tmp_path / "adapter"
    shutil.copytree(adapter, moved)
    adapter_config = json.loads((moved / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = str(tmp_path / "gone")
    (moved / "adapter_config.json").write_text(json.dumps(adapter_config))

    with pytest.raises(ReleaseError, match="does not exist on this machine.*pass --base"):
        build_release(ReleaseConfig(adapter=str(moved), output_dir=str(tmp_path / "r1")))
    with pytest.raises(ReleaseError, match=r"does not fit base .*mlp\.(down|gate|up)_proj.*96") as info:
        build_release(ReleaseConfig(adapter=str(moved), base=str(other), output_dir=str(tmp_path / "r2")))
    assert "Pass --base with the checkpoint the adapter was trained on" in str(info.value)


def test_a_merged_checkpoint_passed_as_adapter_and_the_reverse_say_which_flag(release, adapter, tmp_path):
    with pytest.raises(ReleaseError, match="--checkpoint"):
        build_release(ReleaseConfig(adapter=str(release.path), output_dir=str(tmp_path / "a")))
    with pytest.raises(ReleaseError, match="--adapter"):
        build_release(ReleaseConfig(checkpoint=str(adapter), output_dir=str(tmp_path / "b")))


# ------------------------------------------------------------------------------- dry run, CLI

def test_dry_run_lists_every_file_with_its_size_and_the_card_and_uploads_nothing(release, monkeypatch, capsys):
    import training.release.hub as hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the dry run must not talk to the Hub")

    monkeypatch.setattr(hub, "make_api", no_hub)
    monkeypatch.setattr(hub, "upload_release", no_hub)
    assert release_main(["--output_dir", str(release.path), "--repo_id", "tester/videopro-tiny", "--tag", "v1",
                         "--private", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tester/videopro-tiny@main, tag v1, private" in out and "nothing is uploaded" in out
    assert dry_run_listing(out) == dict(release_files(release.path))
    assert (release.path / "README.md").read_text() in out


def test_cli_argument_errors_say_what_to_do(tmp_path, capsys):
    assert release_main(["--adapter", "a", "--checkpoint", "b", "--output_dir", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert release_main(["--output_dir", str(tmp_path)]) == 2
    assert "not a release folder" in capsys.readouterr().err
    assert release_main(["--adapter", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert release_main(["--output_dir", str(tmp_path), "--repo_id", "no-namespace"]) == 2
    assert "namespace/name" in capsys.readouterr().err


def test_launch_script_help_and_errors():
    script = str(REPO / "launch" / "release.sh")
    out = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0
    for flag in ("--adapter", "--checkpoint", "--output_dir", "--eval_report", "--repo_id", "--dry-run",
                 "HF_TOKEN"):
        assert flag in out.stdout, flag
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(["bash", script, "--help-config"], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env=env)
    assert out.returncode == 0 and "--replace_remote" in out.stdout and "--max_shard_size" in out.stdout
    out = subprocess.run(["bash", script, "--quickstart", "/nonexistent/quickstart"], capture_output=True, text=True,
                         timeout=60, cwd=REPO, env=env)
    assert out.returncode == 2 and "launch/quickstart.sh" in out.stderr


# ----------------------------------------------------------------------------------- upload

def test_upload_creates_the_repo_uploads_the_manifest_first_then_the_folder_and_tags_the_commit(release):
    hub = RecordingHubApi()
    result = upload_release(release.path, repo_id="tester/videopro-tiny", tag="v1.0", private=True, api=hub,
                            log=lambda m: None)
    assert hub.names() == ["whoami", "create_repo", "repo_info", "list_repo_refs", "list_repo_files",
                           "upload_file", "upload_folder", "create_tag"]
    assert hub.call("create_repo") == {"repo_id": "tester/videopro-tiny", "private": True, "exist_ok": True,
                                       "repo_type": "model"}
    assert hub.call("upload_file")["path_in_repo"] == RELEASE_MANIFEST
    folder = hub.call("upload_folder")
    assert folder["folder_path"] == str(release.path) and folder["revision"] == "main"
    assert folder["delete_patterns"] == "*"
    tag = hub.call("create_tag")
    assert tag["tag"] == "v1.0" and tag["revision"] == result["commit"]
    remote = hub.files("tester/videopro-tiny")
    assert sorted(set(remote) - {".gitattributes"}) == [p for p, _ in release.files()]
    assert remote["model.safetensors.index.json"] == (release.path / "model.safetensors.index.json").read_bytes()
    assert result["remote_state"] == "empty" and hub.repos["tester/videopro-tiny"]["private"] is True


def test_an_interrupted_upload_resumes_when_rerun(release):
    hub = RecordingHubApi()
    hub.interrupt_after = 3
    with pytest.raises(InterruptedUpload):
        upload_release(release.path, repo_id="tester/videopro-tiny", api=hub, log=lambda m: None)
    messages = []
    result = upload_release(release.path, repo_id="tester/videopro-tiny", api=hub, log=messages.append)
    assert result["remote_state"] == "resume" and any("(resuming)" in m for m in messages)
    assert hub.names().count("upload_file") == 1  # the manifest went up once, before the interruption
    assert sorted(set(hub.files("tester/videopro-tiny")) - {".gitattributes"}) == [p for p, _ in release.files()]


def test_a_repo_with_other_content_is_refused_unless_replaced(release):
    hub = RecordingHubApi()
    hub.add_repo("tester/videopro-tiny", {"README.md": b"# mine\n", "weights.bin": b"x", "notes.txt": b"y"})
    with pytest.raises(ReleaseError, match=r"2 file\(s\) that are not a VideoPro release \(notes.txt, weights.bin\)") \
            as info:
        upload_release(release.path, repo_id="tester/videopro-tiny", api=hub, log=lambda m: None)
    for hint in ("--repo_id", "--revision NAME", "--replace_remote"):
        assert hint in str(info.value)
    assert "upload_file" not in hub.names() and "upload_folder" not in hub.names()

    upload_release(release.path, repo_id="tester/videopro-tiny", api=hub, replace_remote=True, log=lambda m: None)
    remote = hub.files("tester/videopro-tiny")
    assert "weights.bin" not in remote and "notes.txt" not in remote
    assert remote["README.md"] == (release.path / "README.md").read_bytes()


def test_another_release_on_main_is_refused_and_a_new_branch_holds_exactly_this_one(release, adapter, tmp_path):
    hub = RecordingHubApi()
    upload_release(release.path, repo_id="tester/videopro-tiny", api=hub, log=lambda m: None)
    again = build_release(ReleaseConfig(adapter=str(adapter), output_dir=str(tmp_path / "v2"), dtype="float32"))
    with pytest.raises(ReleaseError, match=f"another VideoPro release \\({release.manifest['release_id']}"):
        upload_release(again.path, repo_id="tester/videopro-tiny", api=hub, log=lambda m: None)
    result = upload_release(again.path, repo_id="tester/videopro-tiny", revision="v2", api=hub, log=lambda m: None)
    assert result["remote_state"] == "new_branch" and "create_branch" in hub.names()
    assert hub.call("create_branch")["branch"] == "v2"
    branch = hub.files("tester/videopro-tiny", "v2")
    assert sorted(set(branch) - {".gitattributes"}) == [p for p, _ in again.files()]
    assert json.loads(branch[RELEASE_MANIFEST])["release_id"] == again.manifest["release_id"]
    assert json.loads(hub.files("tester/videopro-tiny")[RELEASE_MANIFEST])["release_id"] == \
        release.manifest["release_id"]


def test_an_existing_tag_is_refused_before_anything_is_uploaded(release):
    hub = RecordingHubApi()
    hub.add_repo("tester/videopro-tiny", tags={"v1.0": "f" * 40})
    with pytest.raises(ReleaseError, match="tag 'v1.0' already exists"):
        upload_release(release.path, repo_id="tester/videopro-tiny", tag="v1.0", api=hub, log=lambda m: None)
    assert "upload_file" not in hub.names() and "upload_folder" not in hub.names()


def test_token_problems_are_explained(release, monkeypatch):
    import huggingface_hub.constants

    import training.release.hub as hub_module

    for hub, expected in ((RecordingHubApi(token_valid=False), "refused the token"),
                          (RecordingHubApi(role="read"), "read-only")):
        with pytest.raises(ReleaseError, match=expected):
            upload_release(release.path, repo_id="tester/videopro-tiny", api=hub, log=lambda m: None)
    with pytest.raises(ReleaseError, match="cannot create or open someone-else/x"):
        upload_release(release.path, repo_id="someone-else/x", api=RecordingHubApi(), log=lambda m: None)
    unreachable = RecordingHubApi()

    def no_network(*args, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    unreachable.whoami = no_network
    with pytest.raises(ReleaseError, match="cannot reach the Hub .*Name or service not known.*rerun"):
        upload_release(release.path, repo_id="tester/videopro-tiny", api=unreachable, log=lambda m: None)

    # No api given: the token comes from the environment, and offline mode is refused first.
    monkeypatch.setattr(hub_module, "make_api", lambda token: pytest.fail("no HfApi may be made"))
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # tests/conftest.py
    with pytest.raises(ReleaseError, match="HF_HUB_OFFLINE"):
        upload_release(release.path, repo_id="tester/videopro-tiny")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_module, "hub_token", lambda: None)
    with pytest.raises(ReleaseError, match="no Hugging Face token.*HF_TOKEN.*--dry-run needs no token"):
        upload_release(release.path, repo_id="tester/videopro-tiny")


def test_cli_without_a_token_exits_with_the_message(release, monkeypatch, capsys):
    import huggingface_hub.constants

    import training.release.hub as hub_module

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_module, "hub_token", lambda: None)
    monkeypatch.setattr(hub_module, "make_api", lambda token: pytest.fail("no HfApi may be made"))
    assert release_main(["--output_dir", str(release.path), "--repo_id", "tester/videopro-tiny"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err


def test_recording_hub_checks_calls_against_the_real_hfapi_signatures():
    hub = RecordingHubApi()
    with pytest.raises(TypeError):
        hub.create_repo("tester/x", privat=True)  # a misspelt keyword fails as it would against HfApi
