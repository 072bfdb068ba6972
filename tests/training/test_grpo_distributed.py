"""DeepSpeed GRPO on CPU: one ``torchrun --nproc_per_node 2`` launch trains a tiny Qwen3-VL on
video rows with ZeRO-2 and ZeRO-3 (a group split over the two ranks, gradient accumulation,
KL to the reference), each run twice (uninterrupted, and resumed from its step-2 checkpoint);
the tests below assert on what it recorded."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.training.conftest import GRPO_TINY_OVERRIDES, REPO
from tests.training.helpers import run_torchrun_scenarios

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

# ZeRO-3 also runs the DAPO-style options: token-level loss normalised by the token count of the
# whole generation batch across ranks and accumulation steps, clip-higher and the dual clip.
SCENARIOS = [("zero2", "zero2.json", {}),
             ("zero3", "zero3.json", {"loss_type": "dapo", "epsilon_high": 0.28, "dual_clip": 3.0})]
MAX_STEPS, RESUME_STEP = 4, 2
TORCHRUN_TIMEOUT_S = 1500



@pytest.fixture(scope="module")
def dist_results(tiny_qwen3_vl: Path, grpo_rows_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("deepspeed")
    work = tmp_path_factory.mktemp("grpo_dist")
    scenarios = []
    for name, ds, options in SCENARIOS:
        cfg = dict(GRPO_TINY_OVERRIDES, model_name_or_path=str(tiny_qwen3_vl), train_file=str(grpo_rows_file),
                   output_dir=str(work / name), deepspeed=str(REPO / "configs" / "deepspeed" / ds),
                   per_device_train_batch_size=1, gradient_accumulation_steps=2, max_steps=MAX_STEPS,
                   save_steps=RESUME_STEP, max_completion_length=16,
                   reward_fn="tests.training.grpo_toy_reward:score_brevity", reward_funcs="brevity",
                   reward_weights="1.0", report_to="wandb" if name == "zero2" else "none", **options)
        scenarios.append({"name": name, "config": cfg, "resume_step": RESUME_STEP})
    results = run_torchrun_scenarios(REPO / "tests" / "training" / "dist_grpo_scenarios.py", {"scenarios": scenarios},
                                     work, timeout_s=TORCHRUN_TIMEOUT_S)
    for r in results["scenarios"]:
        for run in ("full", "resumed"):
            r[run]["losses"] = {int(k): v for k, v in r[run]["losses"].items()}
    return {"work": work, "by_name": {s["name"]: s for s in results["scenarios"]}}


@pytest.mark.parametrize("name", [s[0] for s in SCENARIOS])
def test_trains_with_deepspeed_on_two_ranks(dist_results: dict[str, Any], name: str):
    r = dist_results["by_name"][name]
    assert r["world_size"] == 2 and r["zero_stage"] == int(name[-1])
    losses = r["full"]["losses"]
    assert sorted(losses) == list(range(1, MAX_STEPS + 1))
    assert all(math.isfinite(v) for v in losses.values())
    history = r["full"]["history"]
    assert all(h["reward/brevity/std"] > 0 for h in history)  # a learning signal in every group
    assert history[-1]["kl"] > 0  # the adapters moved the policy away from the reference


@pytest.mark.parametrize("name", [s[0] for s in SCENARIOS])
def test_every_lora_parameter_changes_and_no_frozen_one_does(dist_results: dict[str, Any], name: str):
    r = dist_results["by_name"][name]
    assert r["num_lora"] == 2 * 7 * 2 and r["num_frozen"] > 0
    assert r["lora_unchanged"] == []
    assert r["frozen_changed"] == []
    assert r["nonfinite_params"] == []


@pytest.mark.parametrize("name", [s[0] for s in SCENARIOS])
def test_resume_reproduces_the_uninterrupted_run(dist_results: dict[str, Any], name: str):
    r = dist_results["by_name"][name]
    full, resumed = r["full"]["losses"], r["resumed"]["losses"]
    assert sorted(resumed) == list(range(RESUME_STEP + 1, MAX_STEPS + 1))
    for step in resumed:
        assert resumed[step] == pytest.approx(full[step], rel=1e-5, abs=1e-8), (step, full, resumed)


def test_checkpoint_holds_the_exact_resume_state(dist_results: dict[str, Any]):
    ckpt = dist_results["work"] / "zero3" / f"checkpoint-{RESUME_STEP}"
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json", "rng_state_0.pth",
                 "rng_state_1.pth", "grpo_config.json"):
        assert (ckpt / name).is_file(), name
    assert (ckpt / "deepspeed").is_dir()  # engine, optimiser partitions and scheduler


def test_wandb_logs_offline(dist_results: dict[str, Any]):
    for out in ("zero2", "zero2_resumed"):  # the uninterrupted run and the resumed one, rank 0 only
        runs = list((dist_results["work"] / out / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs
        assert any(runs[0].glob("*.wandb"))
