"""launch/sft.sh: help, argument checks (the torchrun path itself runs in the quickstart and,
through the same entry point, in test_sft_distributed.py)."""

from __future__ import annotations

import subprocess

from tests.training.conftest import REPO

SCRIPT = str(REPO / "launch" / "sft.sh")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_help_lists_the_launcher_options():
    out = _run("--help")
    assert out.returncode == 0
    for flag in ("--nproc_per_node", "--nnodes", "--node_rank", "--master_addr", "--master_port",
                 "--config", "--quickstart"):
        assert flag in out.stdout


def test_help_config_lists_sft_config_flags():
    out = _run("--help-config")
    assert out.returncode == 0
    assert "--video_max_pixels" in out.stdout and "--lora_rank" in out.stdout


def test_bad_arguments_fail_with_a_message(tmp_path):
    out = _run("--nnodes", "2", "--node_rank", "2")
    assert out.returncode == 2 and "node_rank" in out.stderr
    out = _run("--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "missing.yaml" in out.stderr
    out = _run("--quickstart", str(tmp_path))
    assert out.returncode == 2 and "synthesize.sh --quickstart" in out.stderr
