"""launch/grpo.sh: help, argument checks; and the ``python -m training.grpo.train`` entry point
end to end in one process (``slow``; the torchrun path runs in test_grpo_distributed.py through
the same ``train`` function, and in the quickstart)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.training.conftest import GRPO_TINY_OVERRIDES, REPO

SCRIPT = str(REPO / "launch" / "grpo.sh")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)  # the interpreter running the tests, venv or not
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


def test_help_lists_the_launcher_options():
    out = _run("--help")
    assert out.returncode == 0
    for flag in ("--nproc_per_node", "--nnodes", "--node_rank", "--master_addr", "--master_port",
                 "--config", "--quickstart"):
        assert flag in out.stdout


def test_help_config_lists_grpo_config_flags():
    out = _run("--help-config")
    assert out.returncode == 0
    for flag in ("--num_generations", "--loss_type", "--epsilon_high", "--dual_clip", "--scale_rewards",
                 "--reward_vlm", "--video_max_pixels"):
        assert flag in out.stdout, flag


def test_bad_arguments_fail_with_a_message(tmp_path):
    out = _run("--nnodes", "2", "--node_rank", "2")
    assert out.returncode == 2 and "node_rank" in out.stderr
    out = _run("--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "missing.yaml" in out.stderr
    out = _run("--quickstart", str(tmp_path))
    assert out.returncode == 2 and "sft.sh --quickstart" in out.stderr


@pytest.mark.slow
def test_module_entry_point_runs_a_step(tiny_qwen3_vl, grpo_rows_file, tmp_path):
    flags = {**GRPO_TINY_OVERRIDES, "model_name_or_path": str(tiny_qwen3_vl), "train_file": str(grpo_rows_file),
             "output_dir": str(tmp_path / "out"), "max_steps": 1, "max_completion_length": 8}
    argv = ["--config", str(REPO / "configs/grpo/tiny.yaml")]
    for key, value in flags.items():
        argv += [f"--{key}", str(value)]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "training.grpo.train", *argv], capture_output=True, text=True,
                         timeout=600, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["steps"] == 1 and summary["config"]["video_max_frames"] == 4  # the flag beat the YAML's 8
    assert (tmp_path / "out" / "final" / "adapter_model.safetensors").is_file()
