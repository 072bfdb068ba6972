"""Fixtures of the training tests: synthetic video SFT rows and the tiny-scale SFT settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from inference.toy.synthetic_video import generate_synthetic_video

REPO = Path(__file__).resolve().parents[2]

# Program trajectories in the model-output format (DESIGN.md §2): native (R1) and program (R2).
TRAJECTORIES = [
    "<planning>The colour is visible in every frame; answer natively.</planning>\n<code>\n"
    "def execute_command(video, question):\n    return query_native(video, question, choices)\n</code>",
    "<planning>Find the clips about the word, then ask about their frames.</planning>\n<code>\n"
    "def execute_command(video, question):\n"
    "    intervals, clip_paths = get_informative_clips(video, question, top_k=2)\n"
    "    frames = extract_frames(clip_paths[0], num_frames=8)\n    return query_mc(frames, question, choices)\n</code>",
    "<planning>The event is at 00:09; look around it.</planning>\n<code>\n"
    "def execute_command(video, question):\n    frames = trim_around(video, 9, 2)\n"
    "    return query_mc(frames, question, choices)\n</code>",
    "<planning>Read the text at the bottom of the screen.</planning>\n<code>\n"
    "def execute_command(video, question):\n    frames = trim_frames(video, 0, 8)\n"
    "    text = run_ocr(crop_bottom(frames[0]))\n    return query_mc(frames, question + text, choices)\n</code>",
]

# SFTConfig overrides for a tiny model on CPU (configs/sft/tiny.yaml holds the same scale).
TINY_OVERRIDES: dict[str, Any] = {
    "torch_dtype": "float32", "attn_implementation": "sdpa", "video_max_frames": 8,
    "video_min_pixels": 1024, "video_max_pixels": 4096, "max_length": 2048,
    "dataloader_num_workers": 0, "warmup_ratio": 0.0, "weight_decay": 0.0, "logging_steps": 1,
}


@pytest.fixture(scope="session")
def sft_videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 12-second synthetic videos (320x240, 4 fps)."""
    root = tmp_path_factory.mktemp("sft_videos")
    return [generate_synthetic_video(root / f"v{i}", duration_s=12.0, seed=i).video_path for i in range(2)]


def make_rows(videos: list[Path], n: int) -> list[dict[str, Any]]:
    """``n`` single-turn SFT rows cycling over ``videos`` and ``TRAJECTORIES``."""
    return [{"messages": [{"role": "user", "content": f"<video>Question {i}: which option is right?\n"
                                                      f"Options: (A) red (B) blue"},
                          {"role": "assistant", "content": TRAJECTORIES[i % len(TRAJECTORIES)]}],
             "videos": [str(videos[i % len(videos)])], "kind": "R2", "id": f"row{i}"}
            for i in range(n)]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def sft_rows_file(sft_videos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten SFT rows over the two synthetic videos."""
    return write_rows(tmp_path_factory.mktemp("sft_rows") / "rows.jsonl", make_rows(sft_videos, 10))


def make_grpo_rows(videos: list[Path], n: int, mode_labels: tuple[str, ...] = ("native", "program")
                   ) -> list[dict[str, Any]]:
    """``n`` GRPO rows (``data_synthesis/export.py``'s columns) over ``videos``."""
    rows = []
    for i, row in enumerate(make_rows(videos, n)):
        row.update({"solution": "AB"[i % 2], "choices": ["red", "blue"],
                    "mode_label": mode_labels[i % len(mode_labels)], "duration": 12.0,
                    "subtitles": None, "question": f"Question {i}: which option is right?"})
        rows.append(row)
    return rows


# GRPOConfig overrides for a tiny model on CPU (configs/grpo/tiny.yaml holds the same scale).
GRPO_TINY_OVERRIDES: dict[str, Any] = {
    "torch_dtype": "float32", "rollout_engine": "transformers", "attn_implementation": "sdpa", "video_max_frames": 4,
    "video_min_pixels": 1024, "video_max_pixels": 4096, "max_completion_length": 24, "num_generations": 4,
    "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "warmup_ratio": 0.0, "weight_decay": 0.0,
    "logging_steps": 1, "learning_rate": 1e-3, "beta": 0.04, "gradient_checkpointing": False,
    "reward_fn": "tests.training.grpo_toy_reward:score_completions", "reward_funcs": "format,mode",
    "reward_weights": "0.2,0.3", "report_to": "none",
}


@pytest.fixture(scope="session")
def grpo_rows_file(sft_videos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight GRPO rows over the two synthetic videos, mode labels alternating native/program."""
    return write_rows(tmp_path_factory.mktemp("grpo_rows") / "rows.jsonl", make_grpo_rows(sft_videos, 8))


@pytest.fixture(scope="session")
def licensed_base(tiny_qwen3_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny Qwen3-VL whose model card declares a licence, as hub downloads do
    (the release tests read the licence from it)."""
    base = tmp_path_factory.mktemp("licensed_base") / "tiny-qwen3-vl"
    shutil.copytree(tiny_qwen3_vl, base)
    (base / "README.md").write_text("---\nlicense: apache-2.0\npipeline_tag: image-text-to-text\n---\n# tiny\n")
    return base
