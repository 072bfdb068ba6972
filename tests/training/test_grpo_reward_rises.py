"""GRPO raises the reward on a toy task a tiny model can reach (``slow``, ~2-3 min).

SFT first teaches a tiny Qwen3-VL two answers to the same prompts, a native-mode program and a
program-mode one (an ambiguous target: the SFT policy samples both). The GRPO rows label those
prompts ``native``; the reward is the paper's format (0.2) and mode (0.3) terms computed from
the text (``tests/training/grpo_toy_reward.py``). Measured with 16 samples per prompt before and
after: GRPO moves the policy to the native program and the mean reward up. The numbers of one
run are recorded in docs/benchmarks.md ("GRPO toy task").
"""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import GRPO_TINY_OVERRIDES, TINY_OVERRIDES, TRAJECTORIES, write_rows
from tests.training.grpo_toy_reward import score_completions

pytestmark = pytest.mark.slow
NATIVE, PROGRAM = TRAJECTORIES[0], TRAJECTORIES[2]  # query_native only / trim_around + query_mc
GRPO_STEPS = 12


def _row(q: int, target: str, video: str) -> dict:
    return {"messages": [{"role": "user", "content": f"<video>Question {q}: which option is right?\n"
                                                     "Options: (A) red (B) blue"},
                         {"role": "assistant", "content": target}], "videos": [video], "id": f"q{q}",
            "solution": "A", "choices": ["red", "blue"], "mode_label": "native", "duration": 12.0,
            "subtitles": None, "question": f"Question {q}"}


def _sample_rewards(model, processor, prompts, n: int) -> tuple[float, float]:
    """Mean toy reward and native-mode fraction of ``n`` samples per prompt (temperature 1)."""
    from training.grpo.engines import RolloutRequest, SamplingSettings, TransformersEngine, vision_placeholder_ids

    engine = TransformersEngine(model.eval(), processor, processor.tokenizer.pad_token_id)
    sampling = SamplingSettings(max_new_tokens=144, temperature=1.0, top_p=0.9, top_k=50,
                                stop_token_ids=(processor.tokenizer.convert_tokens_to_ids("<|im_end|>"),),
                                suppress_token_ids=vision_placeholder_ids(processor))
    rows, texts = [], []
    for p in prompts:
        out = engine.generate([RolloutRequest(p.prompt_ids, p.videos, n)], sampling)[0]
        texts += [processor.tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in out.completions]
        rows += [p.row] * n
    result = score_completions(rows, texts)
    native = sum(r["mode"] == "native" for r in result.records if r) / len(texts)
    return sum(result.total) / len(texts), native


def test_grpo_raises_the_toy_reward(tiny_qwen3_vl, sft_videos, tmp_path):
    from peft import PeftModel

    from training.common.model import load_model, load_processor
    from training.common.video import VideoLoader, VideoSampling
    from training.grpo.config import GRPOConfig
    from training.grpo.data import encode_prompt_row
    from training.grpo.train import train
    from training.merge_lora import merge_lora
    from training.sft.config import SFTConfig
    from training.sft.trainer import build_datasets, build_model, build_trainer, save_final, training_arguments

    videos = [str(v) for v in sft_videos]
    sft_rows = [_row(q, target, videos[q % 2]) for q in range(2) for target in (NATIVE, PROGRAM)]
    sft_cfg = SFTConfig(**dict(TINY_OVERRIDES, model_name_or_path=str(tiny_qwen3_vl),
                               train_file=str(write_rows(tmp_path / "sft.jsonl", sft_rows)),
                               output_dir=str(tmp_path / "sft"), max_steps=120, learning_rate=3e-3,
                               lr_scheduler_type="constant", per_device_train_batch_size=4, lora_dropout=0.0,
                               lora_modules_to_save="lm_head", save_steps=10_000, gradient_checkpointing=False,
                               video_max_frames=4))
    processor = load_processor(tiny_qwen3_vl)
    train_ds, _ = build_datasets(sft_cfg, processor)
    trainer = build_trainer(sft_cfg, training_arguments(sft_cfg, has_eval=False), build_model(sft_cfg), processor,
                            train_ds, None)
    trainer.train()
    save_final(trainer, sft_cfg, processor)
    merged = merge_lora(tmp_path / "sft" / "final", tmp_path / "sft_merged", dtype="float32")

    grpo_rows = [sft_rows[0], sft_rows[2]]  # one row per question, labelled native
    cfg = GRPOConfig(**{**GRPO_TINY_OVERRIDES, "model_name_or_path": str(merged),
                        "train_file": str(write_rows(tmp_path / "grpo.jsonl", grpo_rows)),
                        "output_dir": str(tmp_path / "grpo"), "max_completion_length": 144,
                        "max_steps": GRPO_STEPS, "save_steps": 10_000, "beta": 0.0, "learning_rate": 2e-4,
                        "num_train_epochs": 100, "log_completions": False})
    loader = VideoLoader(processor, VideoSampling.from_config(cfg))
    prompts = [encode_prompt_row(processor, r, i, loader, None) for i, r in enumerate(grpo_rows)]
    torch.manual_seed(0)
    before_reward, before_native = _sample_rewards(load_model(merged, "float32", "sdpa"), processor, prompts, 16)
    assert 0.0 < before_native <= 0.8, f"the SFT policy should sample both modes; native {before_native}"

    summary = train(cfg)
    torch.manual_seed(0)
    policy = PeftModel.from_pretrained(load_model(merged, "float32", "sdpa"), summary["final_adapter"])
    after_reward, after_native = _sample_rewards(policy, processor, prompts, 16)
    curve = [round(h["reward/total/mean"], 3) for h in summary["history"]]
    print(f"toy GRPO: reward {before_reward:.3f} -> {after_reward:.3f}, native {before_native:.2f} -> "
          f"{after_native:.2f}; per-step reward {curve}")
    assert after_native >= before_native + 0.3, (before_native, after_native, curve)
    assert after_reward >= before_reward + 0.05, (before_reward, after_reward, curve)
