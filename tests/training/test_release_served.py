"""The release of real tiny SFT and GRPO runs, end to end: SFT on the quickstart synthesis rows
-> release -> evaluation of the released folder -> a second release (from the first, as a merged
checkpoint) whose dry run lists the files and renders the card with the evaluation table and
the data counts; GRPO from the SFT release on the quickstart's GRPO rows -> its adapter evaluated
and released with both recipes; each release served by ``launch/serve.sh`` (vLLM's CPU server)
answers ``videopro-run --api-base`` as the release and its adapter answer in-process.

All ``slow`` (the SFT and GRPO runs, the synthesis fixture and the evaluations take minutes on
2 cores); the served tests are also ``vllm``.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from inference.jsonl_io import read_jsonl_tolerant
from tests.training.conftest import GRPO_TINY_OVERRIDES, REPO, TINY_OVERRIDES
from tests.training.helpers import dry_run_listing
from training.release import ReleaseConfig, build_release
from training.release.build import RELEASE_MANIFEST, release_files
from training.release.cli import main as release_main

pytestmark = pytest.mark.slow
QUESTION = "What is the background colour of the screen at the start?"
CHOICES = ["red", "blue", "green"]
# Both kinds of module input: frames a program picked (query_mc) and the whole video under the
# trained frame policy (query_native).
PROGRAM = ("def execute_command(video, question):\n"
           "    frames = extract_frames(video, 4)\n"
           "    looked = query_mc(frames, question, choices)\n"
           "    native = query_native(video, question, choices)\n"
           "    if looked[\"confidence\"] > native[\"confidence\"]:\n"
           "        return looked\n"
           "    return native\n")


@pytest.fixture(scope="module")
def sft_adapter(quickstart_synthesis, licensed_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<output_dir>/final`` of a 3-step SFT run (training.sft.train) on the quickstart's SFT rows."""
    from training.sft.train import main as sft_main

    out = tmp_path_factory.mktemp("sft_run")
    settings = dict(TINY_OVERRIDES, model_name_or_path=str(licensed_base),
                    train_file=str(quickstart_synthesis.sft_rows), output_dir=str(out), max_steps=3,
                    learning_rate=5e-3, per_device_train_batch_size=2,
                    save_steps=100, gradient_checkpointing=False, max_length=8192, report_to="none")
    assert sft_main([a for k, v in settings.items() for a in (f"--{k}", str(v))]) == 0
    return out / "final"


@pytest.fixture(scope="module")
def first_release(sft_adapter: Path, tmp_path_factory: pytest.TempPathFactory):
    cfg = ReleaseConfig(adapter=str(sft_adapter), output_dir=str(tmp_path_factory.mktemp("rel") / "videopro-sft"),
                        dtype="float32", max_shard_size="500KB", base_model_id="Qwen/Qwen3-VL-8B-Instruct")
    return build_release(cfg)


def evaluate_natively(checkpoint: Path, settings_file: Path, toy_assets, work: Path) -> Path:
    """``videopro-eval``'s native paradigm on the toy benchmark with ``checkpoint`` in-process
    (a release folder or an adapter) under the frame policy of ``settings_file``; the report."""
    import yaml

    from inference.evaluation.batch import EvalConfig, evaluate
    from inference.evaluation.reports import write_report
    from inference.runner import RunnerConfig
    from inference.toy.benchmark import write_synthetic_longvideobench
    from inference.video_sampling import FRAME_POLICY_FIELDS

    bench = write_synthetic_longvideobench([toy_assets.video], work / "bench")
    settings = yaml.safe_load(settings_file.read_text())
    modules = toy_assets.module_config(clip_dir=str(work / "clips"), vlm_checkpoint=str(checkpoint),
                                       video_patch_factor=settings["video_patch_factor"],
                                       **{f: settings[f] for f in FRAME_POLICY_FIELDS})
    cfg = EvalConfig(benchmark="longvideobench", root=str(bench), output_dir=str(work / "native"), paradigm="native",
                     checkpoint=str(checkpoint), num_workers=1)
    evaluate(cfg, modules, RunnerConfig(max_new_tokens=16), argv=["paradigm=native"])
    write_report([work / "native"], work / "report")
    return work / "report"


@pytest.fixture(scope="module")
def eval_report(first_release, toy_assets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The released SFT folder evaluated in-process, and its report."""
    return evaluate_natively(first_release.path, first_release.path / "videopro_inference.yaml", toy_assets,
                             tmp_path_factory.mktemp("evaluation"))


@pytest.fixture(scope="module")
def grpo_adapter(first_release, quickstart_synthesis, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<output_dir>/final`` of a 2-step GRPO run (training.grpo.train, plain PyTorch engine) from
    the merged SFT release on the quickstart's GRPO rows, with the SFT run's frame policy and a toy
    reward that varies for a tiny model (tests/training/grpo_toy_reward.py)."""
    from training.grpo.config import GRPOConfig
    from training.grpo.train import train

    out = tmp_path_factory.mktemp("grpo_run")
    policy = {f: first_release.manifest["frame_policy"][f] for f in first_release.manifest["frame_policy"]}
    cfg = GRPOConfig(**{**GRPO_TINY_OVERRIDES, **policy, "model_name_or_path": str(first_release.path),
                        "train_file": str(quickstart_synthesis.grpo_rows), "output_dir": str(out), "max_steps": 2,
                        "save_steps": 2, "reward_fn": "tests.training.grpo_toy_reward:score_brevity",
                        "reward_funcs": "brevity", "reward_weights": "1.0"})
    assert train(cfg)["steps"] == 2
    return out / "final"


@pytest.fixture(scope="module")
def grpo_eval_report(grpo_adapter, first_release, toy_assets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GRPO adapter (before its release) evaluated in-process, and its report."""
    return evaluate_natively(grpo_adapter, first_release.path / "videopro_inference.yaml", toy_assets,
                             tmp_path_factory.mktemp("grpo_evaluation"))


@pytest.fixture(scope="module")
def grpo_release(grpo_adapter, grpo_eval_report, tmp_path_factory: pytest.TempPathFactory):
    cfg = ReleaseConfig(adapter=str(grpo_adapter), output_dir=str(tmp_path_factory.mktemp("rel") / "videopro-grpo"),
                        dtype="float32", max_shard_size="500KB", eval_report=[str(grpo_eval_report)])
    return build_release(cfg)


def test_the_release_counts_the_training_data_per_trajectory_kind(first_release, quickstart_synthesis):
    stats = json.loads((quickstart_synthesis.run_dir / "stats.json").read_text())
    data = first_release.manifest["data"]
    assert data["synthesis_dir"] == str(quickstart_synthesis.run_dir.resolve())
    assert data["synthesis"]["by_kind"] == stats["by_kind"] and data["synthesis"]["questions"] == stats["questions"]
    rows = read_jsonl_tolerant(quickstart_synthesis.sft_rows)
    assert data["train_rows"]["sft"]["by_kind"] == dict(Counter(r["kind"] for r in rows))
    # The synthesis run records the prompt and module-library versions its trajectories were written with.
    code = first_release.manifest["versions"]["release_code"]
    assert data["synthesis"]["versions"] == stats["versions"] == {
        "prompt_version": code["prompt_version"], "module_library_version": code["module_library_version"]}
    card = first_release.card
    for kind, count in stats["by_kind"].items():
        assert any(line.startswith(f"| {kind} ") and f"| {count} |" in line for line in card.splitlines()), kind
    summary = first_release.manifest["training"]["sft"]["summary"]
    assert summary["steps"] == 3 and summary["final_train_loss"] is not None


def test_dry_run_of_a_re_release_with_the_evaluation_report(first_release, eval_report, tmp_path, capsys):
    """The second release starts from the first (a merged checkpoint) and adds the evaluation."""
    out = tmp_path / "videopro-sft-v2"
    assert release_main(["--checkpoint", str(first_release.path), "--output_dir", str(out), "--eval_report",
                         str(eval_report), "--repo_id", "tester/videopro-sft", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    listed = dry_run_listing(printed)
    assert listed == dict(release_files(out))
    assert {"evaluation/report/report.json", "evaluation/report/report.md"} <= set(listed)
    weights = {p for p in listed if p.endswith(".safetensors")}
    assert weights == {p for p, _ in release_files(first_release.path) if p.endswith(".safetensors")}
    for name in weights:  # copied, not re-merged
        assert (out / name).read_bytes() == (first_release.path / name).read_bytes()

    report = json.loads((eval_report / "report.json").read_text())
    (run,) = report["runs"]
    last = run["summaries"]["last"]
    card = (out / "README.md").read_text()
    assert card in printed
    table_row = next(line for line in card.splitlines() if line.startswith("| LongVideoBench | Native VideoLLM |"))
    assert f"| {last['labelled']} | {last['headline']:.1f} (" in table_row
    assert "No evaluation report was supplied" not in card
    from huggingface_hub import ModelCard

    meta = ModelCard(card).data
    (result,) = meta.eval_results
    assert result.metric_value == round(last["headline"], 2) and result.dataset_type == "longvideobench/LongVideoBench"
    manifest = json.loads((out / RELEASE_MANIFEST).read_text())
    assert manifest["source"]["kind"] == "checkpoint" and manifest["stage"] == "sft"
    assert manifest["data"] == first_release.manifest["data"]  # carried over from the first release
    assert manifest["base_model"]["license"] == "apache-2.0"
    assert manifest["base_model"]["hub_id"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert manifest["evaluation"][0]["runs"][0]["model"] == str(first_release.path)


def test_grpo_release_dry_run_lists_its_files_and_both_recipes(grpo_adapter, grpo_eval_report, first_release,
                                                                quickstart_synthesis, tmp_path, capsys):
    out = tmp_path / "videopro-grpo"
    assert release_main(["--adapter", str(grpo_adapter), "--output_dir", str(out), "--dtype", "float32",
                         "--eval_report", str(grpo_eval_report), "--repo_id", "tester/videopro-grpo",
                         "--dry-run"]) == 0
    printed = capsys.readouterr().out
    listed = dry_run_listing(printed)
    assert listed == dict(release_files(out))
    for name in ("grpo_config.json", "sft_config.json", "videopro_versions.json", "evaluation/report/report.json",
                 "generation_config.json", "chat_template.jinja"):
        assert name in listed, name
    manifest = json.loads((out / RELEASE_MANIFEST).read_text())
    assert manifest["stage"] == "grpo" and manifest["stages"] == ["sft", "grpo"]
    # The base chain: GRPO adapter -> the SFT release -> the licensed tiny base; licence and hub id
    # come down from the SFT release.
    assert manifest["base_model"]["merged_into"] == str(first_release.path)
    assert manifest["base_model"]["foundation"] == first_release.manifest["base_model"]["merged_into"]
    assert manifest["base_model"]["license"] == "apache-2.0"
    assert manifest["base_model"]["hub_id"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert manifest["training"]["grpo"]["summary"]["steps"] == 2
    assert manifest["training"]["sft"]["summary"] == first_release.manifest["training"]["sft"]["summary"]
    assert manifest["versions"]["trained_with"]["stage"] == "grpo"
    grpo_rows = read_jsonl_tolerant(quickstart_synthesis.grpo_rows)
    assert manifest["data"]["train_rows"]["grpo"]["by_kind"] == dict(Counter(r["kind"] for r in grpo_rows))
    card = (out / "README.md").read_text()
    assert card in printed and "### SFT" in card and "### GRPO" in card
    assert "| `num_generations` | 4 |" in card and "| `reward_funcs` | `brevity` |" in card
    report = json.loads((grpo_eval_report / "report.json").read_text())
    last = report["runs"][0]["summaries"]["last"]
    row = next(line for line in card.splitlines() if line.startswith("| LongVideoBench | Native VideoLLM |"))
    assert f"| {last['labelled']} | {last['headline']:.1f} (" in row
    assert f"Evaluated model: `{grpo_adapter}`" in card
    # GRPO moved the weights: the released model is not the SFT release's.
    sft_weights = _weights(first_release.path)
    changed = [name for name, tensor in _weights(out).items() if not torch.equal(tensor, sft_weights[name])]
    assert changed and all("language_model" in name for name in changed)


def test_the_quickstart_release_step(sft_adapter, eval_report, tmp_path):
    """`launch/release.sh --quickstart DIR` on a quickstart layout: the SFT adapter and the report."""
    import subprocess

    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "final").symlink_to(sft_adapter, target_is_directory=True)
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "report").symlink_to(eval_report, target_is_directory=True)
    out = subprocess.run(["bash", str(REPO / "launch" / "release.sh"), "--quickstart", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\ndry run: would upload" in "\n" + out.stdout and "| LongVideoBench | Native VideoLLM |" in out.stdout
    assert (tmp_path / "release" / "README.md").read_text() in out.stdout


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for shard in sorted(folder.glob("*.safetensors")) for k, v in load_file(shard).items()}


def _videopro_run(video: Path, code: Path, release: Path, out: Path, *backend: str) -> dict:
    from inference.cli import main as run_main

    argv = ["--config", str(release / "videopro_inference.yaml"), "--video", str(video), "--question", QUESTION,
            "--choices", *CHOICES, "--clip-save-folder", str(out.parent / "clips"), "--code-file", str(code),
            "--temperature", "0", "--max_new_tokens", "24", "--confidence-threshold", "1.0",
            "--max-refine-rounds", "1", "--max_query_frames", "4", "--output", str(out), "--quiet", *backend]
    assert run_main(argv) == 0
    return json.loads(out.read_text())


@pytest.mark.vllm
@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_the_served_release_answers_as_the_release_and_the_adapter_do_in_process(stage, request, synthetic_video,
                                                                                  tmp_path):
    pytest.importorskip("vllm")
    from inference.vllm_utils import VLLMServer
    from tests.fixtures.vllm_server import SERVER_START_TIMEOUT_S

    release = request.getfixturevalue("first_release" if stage == "sft" else "grpo_release").path
    adapter = request.getfixturevalue("sft_adapter" if stage == "sft" else "grpo_adapter")
    code = tmp_path / "program.py"
    code.write_text(PROGRAM)
    video = synthetic_video.video_path
    server = VLLMServer(release, served_model_name="videopro", log_path=tmp_path / "server.log",
                        env={**os.environ, "PYTHON": sys.executable})
    # Started as a user would: the project's launcher around vLLM's OpenAI server.
    server.command = ["bash", str(REPO / "launch" / "serve.sh"), str(release), "--name", "videopro", "--port",
                      str(server.port), "--max-model-len", "8192", "--max-images", "16"]
    server.start()
    try:
        server.wait_until_ready(SERVER_START_TIMEOUT_S)
        served = _videopro_run(video, code, release, tmp_path / "served" / "r.json", "--api-base", server.base_url,
                               "--model", "videopro")
    finally:
        server.stop()
    released = _videopro_run(video, code, release, tmp_path / "inproc" / "r.json", "--checkpoint", str(release),
                             "--device", "cpu")
    before = _videopro_run(video, code, release, tmp_path / "adapter" / "r.json", "--checkpoint", str(adapter),
                           "--device", "cpu")

    first = served["rounds"][0]["execution"]
    assert first["success"] and first["result"]["metadata"]["backend"].startswith("openai")
    assert released["rounds"][0]["execution"]["result"]["metadata"]["backend"].startswith("transformers")
    for other in (released, before):
        assert served["answer"] == other["answer"]
        assert served["confidence"] == pytest.approx(other["confidence"], abs=1e-3)
        assert [r["kind"] for r in served["rounds"]] == [r["kind"] for r in other["rounds"]]
        assert served["rounds"][0]["execution"]["result"]["confidence"] == pytest.approx(
            other["rounds"][0]["execution"]["result"]["confidence"], abs=1e-3)
        # The refinement round is generated greedily through the released chat template.
        assert served["rounds"][1]["output"] == other["rounds"][1]["output"]
    assert served["rounds"][1]["completion_tokens"] > 0
