"""The colocated vLLM engine under ``torchrun --nproc_per_node 2`` on CPU: DeepSpeed ZeRO-3 trains a
tiny Qwen3-VL on video rows with one vLLM engine per rank (``external_launcher``); the run is then
resumed from its step-2 checkpoint. One launch (``dist_grpo_vllm_scenarios.py``); the tests assert
on what it recorded."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.training.conftest import GRPO_TINY_OVERRIDES, REPO
from tests.training.helpers import run_torchrun_scenarios

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.vllm]

MAX_STEPS, RESUME_STEP = 3, 2
TORCHRUN_TIMEOUT_S = 1500
TIGHT = 1e-4


@pytest.fixture(scope="module")
def run(tiny_qwen3_vl: Path, grpo_rows_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("deepspeed")
    pytest.importorskip("vllm")
    work = tmp_path_factory.mktemp("grpo_vllm_dist")
    config = dict(GRPO_TINY_OVERRIDES, model_name_or_path=str(tiny_qwen3_vl), train_file=str(grpo_rows_file),
                  output_dir=str(work / "zero3"), deepspeed=str(REPO / "configs" / "deepspeed" / "zero3.json"),
                  rollout_engine="vllm", vllm_tensor_parallel_size=1, move_model_batches=2,
                  importance_sampling="token_truncate", temperature=1.0, top_p=1.0, top_k=0,
                  per_device_train_batch_size=1, gradient_accumulation_steps=2, max_steps=MAX_STEPS,
                  save_steps=RESUME_STEP, max_completion_length=16,
                  reward_fn="tests.training.grpo_vllm_reward:score_brevity_asking_the_policy",
                  reward_funcs="brevity", reward_weights="1.0")
    results = run_torchrun_scenarios(
        REPO / "tests" / "training" / "dist_grpo_vllm_scenarios.py", {"config": config, "resume_step": RESUME_STEP},
        work, timeout_s=TORCHRUN_TIMEOUT_S,
        env={"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
             "VIDEOPRO_TEST_IDENTITIES": str(work / "identities.jsonl")})
    results["identities"] = [json.loads(x) for x in (work / "identities.jsonl").read_text().splitlines()]
    results["log"] = (work / "torchrun.log").read_text()
    return results


def test_zero3_trains_with_a_vllm_engine_per_rank(run):
    train = run["train"]
    assert (train["world_size"], train["zero_stage"]) == (2, 3)
    history = train["history"]
    assert len(history) == MAX_STEPS and all(math.isfinite(h["loss"]) for h in history)
    assert all(h["reward/brevity/std"] > 0 for h in history)
    for h in history:  # ZeRO-3 partitions gathered group by group, merged, pushed: the trainer's log-probs
        assert h["logp_abs_diff_max"] < TIGHT, h
        assert h["vllm/sync_groups"] == 2 and h["vllm/sync_tensors"] > 0
    assert "(external_launcher executor)" in run["log"]
    # the loop keeps logging after vLLM started (its plugins must not silence the root handlers)
    assert f"step {MAX_STEPS}/{MAX_STEPS}" in run["log"]


def test_the_reward_vlm_is_the_engine_at_every_step(run):
    steps = sorted({r["identity"].rsplit("@", 1)[1] for r in run["identities"]})
    assert steps[:MAX_STEPS] == [f"step{i}" for i in range(MAX_STEPS)]
    assert all(r["identity"].startswith("vllm-policy:") and r["answered"] for r in run["identities"])


def test_resume_samples_what_the_uninterrupted_run_sampled(run):
    full, resumed = run["train"]["history"], run["resume"]["history"]
    assert len(resumed) == MAX_STEPS - RESUME_STEP
    for a, b in zip(full[RESUME_STEP:], resumed):
        # the resumed adapters were pushed before the first rollout, and the request seeds follow the step
        assert b["completions/length_mean"] == a["completions/length_mean"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-7)
        assert b["logp_abs_diff_max"] < TIGHT


def test_lockstep_serving_answers_every_rank_and_ends(run):
    ranks = run["lockstep"]["ranks"]
    assert all(r["ok"] for r in ranks)
    assert [sum(len(a) for a in r["answers"]) for r in ranks] == [6, 1]
    assert ranks[0]["rounds"] == ranks[1]["rounds"] >= 1 and ranks[0]["requests"] == ranks[1]["requests"] == 7


def test_closing_the_engines_leaves_the_trainers_process_group(run):
    assert run["process_group_after_close"] == 3.0
