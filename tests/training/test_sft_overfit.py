"""A tiny Qwen3-VL learns a handful of program trajectories by heart through the SFT stage
code (single process, no DeepSpeed): the loss falls by a large factor and greedy decoding then
writes the ``<planning>…</planning><code>…</code>`` replies it was trained on."""

from __future__ import annotations

import pytest
import torch

from inference.programs import parse_model_output
from tests.training.conftest import TINY_OVERRIDES, make_rows, write_rows
from tests.training.helpers import log_history_losses
from training.common.model import load_processor
from training.sft.config import SFTConfig
from training.sft.data import encode_prompt
from training.sft.trainer import build_datasets, build_model, build_trainer, training_arguments

pytestmark = pytest.mark.slow
STEPS = 120


def test_tiny_model_overfits_program_trajectories(tiny_qwen3_vl, sft_videos, tmp_path):
    rows = make_rows(sft_videos, 4)
    # The tiny model's frozen, random lm_head caps how peaked its output can get; training it
    # next to the adapters (lora_modules_to_save) lets the loss fall far.
    cfg = SFTConfig(**dict(TINY_OVERRIDES, model_name_or_path=str(tiny_qwen3_vl),
                           train_file=str(write_rows(tmp_path / "rows.jsonl", rows)), output_dir=str(tmp_path / "out"),
                           max_steps=STEPS, learning_rate=3e-3, lr_scheduler_type="constant",
                           per_device_train_batch_size=4, lora_dropout=0.0, lora_modules_to_save="lm_head",
                           save_steps=10 * STEPS, gradient_checkpointing=False))
    processor = load_processor(cfg.model_name_or_path)
    train_ds, _ = build_datasets(cfg, processor)
    model = build_model(cfg)
    trainer = build_trainer(cfg, training_arguments(cfg, has_eval=False), model, processor, train_ds, None)
    trainer.train()

    losses = log_history_losses(trainer.state.log_history)
    assert losses[1] / losses[STEPS] > 20, losses

    model.eval()
    exact = 0
    for row in rows:
        videos = [train_ds.video_loader(p) for p in row["videos"]]
        inputs = encode_prompt(processor, row["messages"][:1], videos)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=200, do_sample=False)
        text = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        parsed = parse_model_output(text)
        assert parsed.format_ok, (text, parsed.problems)
        assert "def execute_command(video, question):" in parsed.code
        exact += text == row["messages"][1]["content"]
    assert exact >= 3, exact
