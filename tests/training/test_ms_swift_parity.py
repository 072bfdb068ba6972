"""ms-swift (the paper's trainer) encodes our exported SFT rows exactly as ``training/sft/data.py``.

The rows come from a real synthesis run (the scenario cases of tests/data_synthesis: R1-R4
trajectories through the real sandbox and export), with real synthetic videos of several
frame rates and shapes in place of the scenario's placeholders, plus a multi-turn row in the
same format. ms-swift 4.6.0 encodes them in a process of its own (``ms_swift_encode``) with
the ``swift sft`` command documented in docs/training.md ("Reproducing our encoding with
ms-swift"), paths replaced and ``--use_cpu true`` added: its dataset loader, its Qwen3-VL template (which hard-codes the
released special-token ids, hence the tiny checkpoint with ``real_token_ids=True``),
qwen-vl-utils reading with decord. Our side is the SFT data path of the default
``SFTConfig``. Both must give equal ``input_ids``, labels, ``mm_token_type_ids``,
``video_grid_thw`` and pixels, for the default pixel rule (the command as documented) and
for ``video_pixel_rule="qwen_vl_utils"`` (the command without ``VIDEO_MIN_PIXELS``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import REPO
from tests.training.ms_swift_encode import pixel_digest

pytestmark = pytest.mark.slow

DOC = REPO / "docs" / "training.md"
DOC_SECTION = "## Reproducing our encoding with ms-swift"
# Videos that replace the scenario's placeholders: the 40-s 4-fps 320x240 video (64 of
# 160 frames), and others whose frame counts and shapes exercise other indices and sizes.
VIDEOS = {
    "q-sky": dict(duration_s=40.0, fps=4.0, size=(320, 240)),
    "q-word": dict(duration_s=12.0, fps=30.0, size=(320, 180), scene_len_s=4.0, needle_len_s=1.0),
    "q-balls": dict(duration_s=8.0, fps=25.0, size=(180, 320), scene_len_s=4.0, needle_len_s=1.0),
    "q-flash": dict(duration_s=7.0, fps=4.0, size=(256, 144), scene_len_s=3.5, needle_len_s=1.0),
}


def documented_command() -> tuple[dict[str, str], list[str]]:
    """The environment and ``swift sft`` arguments of the docs' command."""
    text = DOC.read_text()
    assert DOC_SECTION in text, f"{DOC} lost its section {DOC_SECTION!r}"
    block = text.split(DOC_SECTION, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    words = shlex.split(block.replace("\\\n", " "))
    env = {}
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[:2] == ["swift", "sft"], words[:2]
    return env, words[2:]


def with_values(args: list[str], **values: str) -> list[str]:
    """``args`` with the values of the given ``--flags`` replaced (each must be present)."""
    out = list(args)
    for flag, value in values.items():
        i = out.index(f"--{flag}")
        out[i + 1] = value
    return out


@pytest.fixture(scope="module")
def real_ids_qwen3_vl(tmp_path_factory) -> Path:
    from inference.toy.checkpoints import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("real_ids") / "qwen3_vl", "qwen3_vl", real_token_ids=True)


@pytest.fixture(scope="module")
def exported_rows(tmp_path_factory) -> list[dict]:
    """The SFT rows a scenario synthesis run exports (real videos), plus one multi-turn row."""
    from data_synthesis.config import SynthesisConfig
    from data_synthesis.labeling import ModuleLibraryNativeAnswerer
    from data_synthesis.pipeline import run_pipeline
    from data_synthesis.runtime import SandboxProgramRunner
    from data_synthesis.sharding import read_jsonl
    from data_synthesis.teacher import TeacherClient, TeacherSettings
    from inference.sandbox.host import ProgramExecutor
    from inference.toy.synthetic_video import generate_synthetic_video
    from tests.data_synthesis import scenario

    root = tmp_path_factory.mktemp("ms_swift_rows")
    qa = scenario.write_qa_jsonl(root)
    for seed, (qid, spec) in enumerate(VIDEOS.items()):
        generate_synthetic_video(root / "videos", video_id=qid, seed=seed, overwrite=True, **spec)
    cfg = SynthesisConfig(source=str(qa), output_dir=str(root / "out"), teacher_backoff_s=0.01,
                          teacher_concurrency=1, max_repair_rounds=2, sft_kinds="R1,R2,R3,R4",
                          grpo_kinds="R1,R2,R3,R4")
    executor = ProgramExecutor(scenario.FAKE_MODULES, workers=1)
    try:
        run_pipeline(cfg, teacher=TeacherClient(TeacherSettings.from_config(cfg), client=scenario.FakeChatClient()),
                     run_program=SandboxProgramRunner(executor, roots_for=scenario.clip_roots),
                     native=ModuleLibraryNativeAnswerer(scenario.query_native), video_check=scenario.accept_video)
    finally:
        getattr(executor, "close", lambda: None)()
    rows = list(read_jsonl(root / "out" / "dataset" / "sft" / "train.jsonl"))
    assert {r["kind"] for r in rows} == {"R1", "R2", "R3", "R4"} and len(rows) >= 6
    assert {Path(v).stem for r in rows for v in r["videos"]} == set(VIDEOS)
    first = rows[0]
    rows.append(dict(first, id="multi-turn", messages=first["messages"] + [
        {"role": "user", "content": "The program raised IndexError: list index out of range. Fix it."},
        {"role": "assistant", "content": scenario.CORRECT}]))
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ms_swift_encode(env: dict[str, str], args: list[str], out: Path, pixel_dtype: str) -> dict:
    """Run ``tests.training.ms_swift_encode`` with ``env`` added to a clean copy of ours."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("VIDEO_", "FPS", "MAX_PIXELS", "MIN_PIXELS", "IMAGE_", "MODEL_SEQ_LEN"))}
    base.update(env, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MODELSCOPE_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "tests.training.ms_swift_encode", str(out), pixel_dtype, "--", *args],
                          cwd=REPO, env=base, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def our_encoding(rows_file: Path, checkpoint: Path, out_dir: Path, **overrides):
    """The SFT data path of ``SFTConfig(**overrides)`` (defaults: the paper's): rows and encodings."""
    from training.common.model import load_processor
    from training.sft.config import SFTConfig
    from training.sft.trainer import build_datasets

    cfg = SFTConfig(model_name_or_path=str(checkpoint), train_file=str(rows_file), output_dir=str(out_dir),
                    **overrides)
    processor = load_processor(cfg.model_name_or_path)
    dataset, _ = build_datasets(cfg, processor)
    return cfg, processor, dataset


def key(messages: list[dict]) -> str:
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages])


@pytest.mark.parametrize("pixel_rule", ["stated", "qwen_vl_utils"])
def test_ms_swift_encodes_exported_rows_like_our_sft_data(pixel_rule, exported_rows, real_ids_qwen3_vl, tmp_path):
    import torch

    env, args = documented_command()
    assert env == {"FPS_MAX_FRAMES": "64", "VIDEO_MAX_PIXELS": "50176", "VIDEO_MIN_PIXELS": "3136"}
    assert args[args.index("--model_type") + 1] == "qwen3_vl" and args[args.index("--tuner_type") + 1] == "lora"
    rows = exported_rows
    if pixel_rule == "qwen_vl_utils":  # the paper's stated variables only; two rows keep it short
        del env["VIDEO_MIN_PIXELS"]
        rows = [next(r for r in rows if "q-sky" in r["videos"][0]), rows[-1]]
    rows_file = write_jsonl(tmp_path / "train_sft.jsonl", rows)
    cfg, processor, ours = our_encoding(rows_file, real_ids_qwen3_vl, tmp_path / "ours", video_pixel_rule=pixel_rule)
    args = with_values(args, model=str(real_ids_qwen3_vl), dataset=str(rows_file),
                       output_dir=str(tmp_path / "ms_swift"))
    args += ["--use_cpu", "true"]  # transformers refuses bf16 training arguments without a GPU otherwise
    dtype = cfg.torch_dtype  # our cached pixels are in the training dtype: compare in it
    got = ms_swift_encode(env, args, tmp_path / "ms_swift.json", dtype)
    assert got["template"] == "Qwen3VLTemplate" and got["video_reader"] == "decord"

    theirs = {key(r["messages"]): r for r in got["rows"]}
    assert len(theirs) == len(rows) == len(got["rows"])  # every row loaded, none twice
    tokenizer = processor.tokenizer
    for i, row in enumerate(rows):
        swift = theirs[key(row["messages"])]
        item = ours[i]
        assert item["input_ids"].tolist() == swift["input_ids"], (row["id"], tokenizer.decode(item["input_ids"]))
        assert item["labels"].tolist() == swift["labels"], row["id"]
        assert item["mm_token_type_ids"].tolist() == swift["mm_token_type_ids"], row["id"]
        assert item["video_grid_thw"].tolist() == swift["video_grid_thw"], row["id"]
        assert pixel_digest(item["pixel_values_videos"], getattr(torch, dtype)) == swift["pixel_values_videos"]

        # What that equality means on these rows: each assistant turn is labelled through its
        # "<|im_end|>\n"; the 40-s video has 64 frames, 32 time stamps and the rule's size.
        labelled = [t for t, lab in zip(item["input_ids"].tolist(), item["labels"].tolist()) if lab != -100]
        replies = [m["content"] + "<|im_end|>\n" for m in row["messages"] if m["role"] == "assistant"]
        assert tokenizer.decode(labelled) == "".join(replies)
        if "q-sky" in row["videos"][0]:
            t, h, w = item["video_grid_thw"][0].tolist()
            assert t == 32 and tokenizer.decode(item["input_ids"]).count(" seconds>") == 32
            assert (h * 16, w * 16) == ((192, 256) if pixel_rule == "stated" else (320, 448))
