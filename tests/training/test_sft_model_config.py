"""Model loading and LoRA placement; the SFT config, recipes and DeepSpeed configs."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from inference.config import parse_config
from tests.training.conftest import REPO
from training.common.model import apply_lora, language_model_linear_targets, load_model, resolve_attn_implementation
from training.sft.config import SFTConfig

LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_lora_covers_every_language_model_linear_layer_and_nothing_else(family, tiny_qwen3_vl, tiny_qwen2_5_vl):
    path = tiny_qwen3_vl if family == "qwen3_vl" else tiny_qwen2_5_vl
    base = load_model(path, "float32", "sdpa")
    lm_linears = {n for n, m in base.named_modules()
                  if isinstance(m, torch.nn.Linear) and ".language_model." in f".{n}"}
    assert {n.rsplit(".", 1)[-1] for n in lm_linears} == LINEAR
    assert any(isinstance(m, torch.nn.Linear) for n, m in base.named_modules() if "visual" in n)
    assert re.fullmatch(language_model_linear_targets(base), "model.language_model.layers.0.mlp.up_proj")
    assert not re.fullmatch(language_model_linear_targets(base), "model.visual.blocks.0.mlp.linear_fc1")

    model = apply_lora(base, rank=64, alpha=16, dropout=0.05)
    from peft.tuners.lora import LoraLayer

    wrapped = {n.removeprefix("base_model.model.") for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped == lm_linears
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".visual." in n)
    cfg = model.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (64, 16, 0.05)
    assert model.base_model.model.config.use_cache is False


def test_attention_falls_back_to_sdpa_without_flash_attn_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("CPU behaviour")
    assert resolve_attn_implementation("auto") == "sdpa"
    assert resolve_attn_implementation("eager") == "eager"


def test_every_config_field_has_help():
    for f in dataclasses.fields(SFTConfig):
        assert f.metadata.get("help"), f.name


def test_defaults_are_the_paper_recipe_and_yaml_holds_overrides_only():
    d = SFTConfig()
    assert (d.learning_rate, d.num_train_epochs, d.per_device_train_batch_size, d.warmup_ratio,
            d.lr_scheduler_type, d.lora_rank, d.lora_alpha, d.lora_target_modules,
            d.video_max_frames, d.video_max_pixels, d.max_length, d.dataloader_num_workers) == (
        1e-4, 1.0, 2, 0.05, "cosine", 64, 16, "all-linear", 64, 50176, 200000, 8)
    import yaml

    for name in ("paper.yaml", "tiny.yaml"):
        data = yaml.safe_load((REPO / "configs" / "sft" / name).read_text())
        redundant = {k for k, v in data.items() if getattr(d, k) == v}
        assert not redundant, f"{name} repeats defaults: {redundant}"

    cfg = parse_config(SFTConfig, ["--config", str(REPO / "configs/sft/paper.yaml"), "--learning_rate", "2e-4",
                                   "--video_max_frames", "32"])
    assert cfg.learning_rate == 2e-4 and cfg.video_max_frames == 32
    assert cfg.deepspeed == "configs/deepspeed/zero2.json" and cfg.report_to == "wandb"
    with pytest.raises(ValueError, match="train_on"):
        SFTConfig(train_on="everything")


@pytest.mark.parametrize("name,stage,offload", [("zero2.json", 2, False), ("zero3.json", 3, False),
                                                ("zero3_offload.json", 3, True)])
def test_deepspeed_configs_resolve_against_training_arguments(name, stage, offload, tmp_path):
    pytest.importorskip("deepspeed")
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    path = REPO / "configs" / "deepspeed" / name
    raw = json.loads(path.read_text())
    assert raw["zero_optimization"]["stage"] == stage
    assert ("offload_optimizer" in raw["zero_optimization"]) == offload
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=4,
                             max_grad_norm=1.0, report_to="none")
    hf = HfTrainerDeepSpeedConfig(str(path))
    hf.trainer_config_process(args)
    cfg = hf.config
    assert cfg["train_micro_batch_size_per_gpu"] == 2 and cfg["gradient_accumulation_steps"] == 4
    assert cfg["gradient_clipping"] == 1.0
    if stage == 3:
        assert cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_resume_auto_picks_the_latest_checkpoint(tmp_path):
    from training.sft.trainer import resolve_resume

    cfg = SFTConfig(output_dir=str(tmp_path), resume_from_checkpoint="auto")
    assert resolve_resume(cfg) is None  # nothing to resume: start fresh
    for step in (2, 10, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert resolve_resume(cfg) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(SFTConfig(output_dir=str(tmp_path))) is None
    with pytest.raises(FileNotFoundError):
        resolve_resume(SFTConfig(output_dir=str(tmp_path), resume_from_checkpoint=str(tmp_path / "nope")))
