"""The GRPO loop in one process (plain PyTorch engine) on a tiny Qwen3-VL with video rows:
configuration and presets, rows and the prompt order, a short run (logs, checkpoints, the
adapters move and the base does not, the final adapter merges), unscorable rewards and dynamic
sampling, and a stop-and-resume that continues to the same losses (``slow``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from inference.config import parse_config
from tests.training.conftest import GRPO_TINY_OVERRIDES, REPO, make_grpo_rows, write_rows
from tests.training.helpers import gathered_parameters
from training.grpo.config import GRPOConfig
from training.grpo.data import PromptSchedule, load_grpo_rows, rank_slots, validate_grpo_row

BREVITY = "tests.training.grpo_toy_reward:score_brevity"


def _cfg(ckpt: Path, rows: Path, out: Path, **overrides) -> GRPOConfig:
    return GRPOConfig(**{**GRPO_TINY_OVERRIDES, "model_name_or_path": str(ckpt), "train_file": str(rows),
                         "output_dir": str(out), **overrides})


class Snapshots:
    def on_train_begin(self, engine):
        self.before = gathered_parameters(engine.module)
        self.trainable = {n for n, p in engine.module.named_parameters() if p.requires_grad}

    def on_train_end(self, engine):
        self.after = gathered_parameters(engine.module)


# ---------------------------------------------------------------------------------------------
# Configuration, rows, prompt order (fast)
# ---------------------------------------------------------------------------------------------

def test_paper_preset_is_the_defaults_and_flags_override_it():
    paper = parse_config(GRPOConfig, ["--config", str(REPO / "configs/grpo/paper.yaml")])
    defaults = GRPOConfig()
    run_fields = {"model_name_or_path", "train_file", "output_dir", "deepspeed", "report_to"}
    for f in dataclasses.fields(GRPOConfig):
        if f.name not in run_fields:
            assert getattr(paper, f.name) == getattr(defaults, f.name), f.name
    assert (paper.learning_rate, paper.num_generations, paper.temperature, paper.max_completion_length) == \
        (1e-6, 8, 1.0, 4096)
    assert (paper.loss_type, paper.beta, paper.top_p, paper.top_k, paper.scale_rewards) == \
        ("grpo", 0.04, 0.9, 50, "group")
    assert paper.prompts_per_step(world_size=4) == 1  # 1 completion x 4 GPUs x 2 accumulation = one group
    over = parse_config(GRPOConfig, ["--config", str(REPO / "configs/grpo/tiny.yaml"), "--beta", "0",
                                     "--epsilon_high", "0.28", "--loss_type", "dapo"])
    assert (over.beta, over.epsilon_high, over.loss_type, over.num_generations) == (0.0, 0.28, "dapo", 4)
    for f in dataclasses.fields(GRPOConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text"


@pytest.mark.parametrize("bad, match", [
    ({"loss_type": "sum"}, "loss_type"), ({"scale_rewards": "std"}, "scale_rewards"),
    ({"num_generations": 1}, "num_generations"), ({"dual_clip": 0.5}, "dual_clip"),
    ({"importance_sampling": "token"}, "importance_sampling"), ({"reward_weights": "0.5"}, "same number"),
    ({"reward_vlm": "server"}, "reward_vlm"),
])
def test_bad_settings_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        GRPOConfig(**bad)


def test_generation_batch_must_be_whole_groups():
    with pytest.raises(ValueError, match="multiple of num_generations"):
        GRPOConfig(num_generations=8, per_device_train_batch_size=1, gradient_accumulation_steps=2).prompts_per_step(3)


def test_rows_are_validated_with_the_line_named(tmp_path, sft_videos):
    rows = make_grpo_rows(sft_videos, 2)
    good = write_rows(tmp_path / "good.jsonl", rows)
    assert [r["id"] for r in load_grpo_rows(good)] == ["row0", "row1"]
    bad = dict(rows[1])
    del bad["mode_label"]
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: missing reward column"):
        load_grpo_rows(write_rows(tmp_path / "bad.jsonl", [rows[0], bad]))
    no_prompt = dict(rows[0], messages=[{"role": "assistant", "content": "x"}], videos=[])
    with pytest.raises(ValueError, match="user turn"):
        validate_grpo_row(no_prompt)
    # ms-swift-style rows without the assistant turn are fine
    assert validate_grpo_row(dict(rows[0], messages=rows[0]["messages"][:1]))


def test_prompt_schedule_is_seeded_drops_the_tail_and_reshuffles_per_epoch():
    s = PromptSchedule(num_rows=10, prompts_per_batch=3, seed=7)
    assert s.batches_per_epoch == 3
    epoch0 = [s.batch(k)[1] for k in range(3)]
    assert len({i for b in epoch0 for i in b}) == 9
    assert s.batch(3)[0] == 1 and s.batch(3)[1] != epoch0[0]
    assert PromptSchedule(10, 3, seed=7).batch(4) == s.batch(4)  # a resumed run sees the same rows
    assert PromptSchedule(10, 3, seed=7, shuffle=False).batch(1) == (0, [3, 4, 5])


def test_rank_slots_split_the_generation_batch():
    assert rank_slots(2, 4, 0, 2) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert rank_slots(1, 4, 1, 2) == [(0, 2), (0, 3)]


# ---------------------------------------------------------------------------------------------
# Short runs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_short_run_trains_the_adapters_logs_and_checkpoints(family, tiny_qwen3_vl, tiny_qwen2_5_vl, grpo_rows_file,
                                                            tmp_path):
    from training.grpo.train import train
    from training.merge_lora import merge_lora

    ckpt = tiny_qwen3_vl if family == "qwen3_vl" else tiny_qwen2_5_vl
    snaps = Snapshots()
    cfg = _cfg(ckpt, grpo_rows_file, tmp_path / "run", reward_fn=BREVITY, reward_funcs="brevity",
               reward_weights="1.0", max_steps=2, save_steps=1, save_total_limit=1)
    summary = train(cfg, observer=snaps)
    assert summary["steps"] == 2 and summary["world_size"] == 1
    losses = [h["loss"] for h in summary["history"]]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses)
    changed = {n: float((snaps.after[n] - snaps.before[n]).abs().max()) for n in snaps.before}
    lora = sorted(snaps.trainable)
    assert len(lora) == 2 * 7 * 2 and all("lora_" in n for n in lora)
    assert [n for n in lora if changed[n] == 0.0] == []  # B moves at step 1, A from step 2
    assert [n for n in changed if n not in snaps.trainable and changed[n] != 0.0] == []

    out = tmp_path / "run"
    metrics = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    for key in ("loss", "reward/total/mean", "reward/brevity/std", "groups/zero_std_fraction", "kl", "entropy",
                "clip/low", "clip/high", "completions/length_mean", "completions/truncated_fraction", "mode/native",
                "time/rollout", "time/reward", "time/train", "time/sync", "video/visual_tokens_mean", "lr",
                "grad_norm"):
        assert key in metrics[0], key
    assert metrics[0]["kl"] == 0.0 < metrics[1]["kl"]  # the adapters start as a no-op, then move
    completions = [json.loads(line) for line in (out / "logs" / "completions.jsonl").read_text().splitlines()]
    assert {c["step"] for c in completions} == {1, 2} and "reward/brevity" in completions[0]
    # save_total_limit 1 keeps the last checkpoint; it holds the exact-resume state
    ckpts = sorted(p.name for p in out.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-2"]
    for name in ("adapter_model.safetensors", "adapter_config.json", "engine_state.pt", "trainer_state.json",
                 "rng_state_0.pth", "grpo_config.json", "processor_config.json"):
        assert (out / "checkpoint-2" / name).is_file(), name
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["rollout_batch"] == 2
    merged = merge_lora(out / "final", tmp_path / "merged", dtype="float32")
    assert (merged / "model.safetensors").is_file()


def test_unscorable_rewards_are_counted_and_dynamic_sampling_retries(tiny_qwen3_vl, sft_videos, tmp_path):
    from training.grpo.train import train

    rows = make_grpo_rows(sft_videos, 2)
    rows[1]["toy_unscorable"] = True
    path = write_rows(tmp_path / "rows.jsonl", rows)
    # A random model writes no valid program: format and mode rewards are all 0, so every group is
    # without signal and dynamic sampling regenerates it max_resample_times times.
    cfg = _cfg(tiny_qwen3_vl, path, tmp_path / "run", max_steps=2, save_steps=10, shuffle=False,
               dynamic_sampling=True, max_resample_times=1, max_completion_length=8, beta=0.0)
    summary = train(cfg)
    first, second = summary["history"]
    assert first["groups/resample_rounds"] == 1 and first["groups/zero_std_fraction"] == 1.0
    assert first["reward/unscorable"] == 0 and second["reward/unscorable"] == 4
    assert second["failures/host_error/toy"] == 4
    assert first["loss"] == 0.0  # no signal, no KL term: nothing to learn


def test_importance_sampling_weights_are_one_when_engine_and_trainer_agree(tiny_qwen3_vl, grpo_rows_file, tmp_path):
    from training.grpo.train import train

    # Untruncated sampling (top_k 0, top_p 1): the transformers engine samples exactly the
    # distribution the trainer computes, so the weights exp(old - sampler) are 1.
    cfg = _cfg(tiny_qwen3_vl, grpo_rows_file, tmp_path / "run", reward_fn=BREVITY, reward_funcs="brevity",
               reward_weights="1.0", max_steps=1, save_steps=10, top_k=0, top_p=1.0,
               importance_sampling="token_truncate", max_completion_length=12)
    record = train(cfg)["history"][0]
    assert record["is_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    assert record["logp_abs_diff_max"] < 1e-3


@pytest.mark.slow
def test_resume_continues_to_the_same_losses(tiny_qwen3_vl, grpo_rows_file, tmp_path):
    from training.grpo.train import train

    common = dict(reward_fn=BREVITY, reward_funcs="brevity", reward_weights="1.0", max_steps=4, save_steps=2,
                  num_iterations=2, epsilon=0.1, lora_dropout=0.1)
    full = train(_cfg(tiny_qwen3_vl, grpo_rows_file, tmp_path / "full", **common))
    resumed = train(_cfg(tiny_qwen3_vl, grpo_rows_file, tmp_path / "resumed",
                         resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"), **common))
    want = {i + 1: h["loss"] for i, h in enumerate(full["history"])}
    got = {3 + i: h["loss"] for i, h in enumerate(resumed["history"])}
    assert sorted(got) == [3, 4]
    for step in (3, 4):
        assert got[step] == pytest.approx(want[step], rel=1e-6, abs=1e-9), (want, got)
    assert any(h["ratio/max"] != 1.0 for h in full["history"])  # num_iterations 2: the second pass is off-policy
