"""The SFT stage's building blocks, on top of the transformers ``Trainer``.

The ``Trainer`` brings the DeepSpeed integration (ZeRO-2/3, CPU offload), gradient
accumulation, evaluation, W&B logging and checkpoints that resume exactly: each checkpoint
holds the LoRA weights, the DeepSpeed engine state (optimizer, partitioned fp32 master
weights), the scheduler, the trainer state and every rank's RNG states; on resume the data
loader (seeded by ``seed``) skips the batches already seen. This module turns an
``SFTConfig`` into those pieces; ``training/sft/train.py`` runs them in order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from inference.config import config_to_dict
from training.common.distributed import configure_cpu_deepspeed_state
from training.common.model import apply_lora, load_model, torch_dtype, with_reference_positions
from training.common.versions import write_versions
from training.common.video import VideoLoader
from training.sft.config import SFTConfig
from training.sft.data import SFTCollator, SFTDataset, load_sft_rows, split_rows


def training_arguments(cfg: SFTConfig, has_eval: bool) -> Any:
    """The ``TrainingArguments`` of a run. Create them before loading the model: under ZeRO-3
    they switch on partitioned loading."""
    from transformers import TrainingArguments

    if not cfg.output_dir:
        raise ValueError("output_dir is required")
    report_to = [r.strip() for r in cfg.report_to.split(",") if r.strip() and r.strip() != "none"]
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_PROJECT", cfg.wandb_project)
    accelerator_config = configure_cpu_deepspeed_state(cfg.deepspeed)
    return TrainingArguments(
        output_dir=cfg.output_dir,
        run_name=cfg.run_name or Path(cfg.output_dir).name,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        bf16=cfg.torch_dtype == "bfloat16",
        fp16=cfg.torch_dtype == "float16",
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        deepspeed=cfg.deepspeed or None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,
        label_names=["labels"],
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps if has_eval else None,
        prediction_loss_only=True,
        include_num_input_tokens_seen="non_padding",
        report_to=report_to or "none",
        ddp_find_unused_parameters=False,
        accelerator_config=accelerator_config or None,
    )


def build_model(cfg: SFTConfig) -> Any:
    """Base model in ``torch_dtype`` with LoRA adapters; everything else frozen."""
    model = load_model(cfg.model_name_or_path, cfg.torch_dtype, cfg.attn_implementation)
    to_save = [m.strip() for m in cfg.lora_modules_to_save.split(",") if m.strip()]
    return apply_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules, to_save)


def build_datasets(cfg: SFTConfig, processor: Any) -> tuple[SFTDataset, SFTDataset | None]:
    """Train and (optional) eval datasets sharing one video loader and cache."""
    if not cfg.train_file:
        raise ValueError("train_file is required (SFT rows in JSON lines)")
    rows = load_sft_rows(cfg.train_file)
    if cfg.eval_file:
        train_rows, eval_rows = rows, load_sft_rows(cfg.eval_file)
    else:
        train_rows, eval_rows = split_rows(rows, cfg.eval_split_ratio, cfg.seed)
    default_cache = str(Path(cfg.output_dir) / "video_cache")
    cache_dir = None if cfg.video_cache_dir == "none" else (cfg.video_cache_dir or default_cache)
    loader = VideoLoader(processor, cfg.video_sampling(), cache_dir, pixel_dtype=torch_dtype(cfg.torch_dtype))
    video_dir = cfg.video_dir or str(Path(cfg.train_file).resolve().parent)
    make = lambda rs: SFTDataset(rs, processor, loader, cfg.max_length, cfg.train_on, video_dir)  # noqa: E731
    return make(train_rows), (make(eval_rows) if eval_rows else None)


def resolve_resume(cfg: SFTConfig) -> str | None:
    """``resume_from_checkpoint``: '' -> None, 'auto' -> latest checkpoint in output_dir or None."""
    if not cfg.resume_from_checkpoint:
        return None
    if cfg.resume_from_checkpoint == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(cfg.output_dir) if Path(cfg.output_dir).is_dir() else None
    if not Path(cfg.resume_from_checkpoint).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint {cfg.resume_from_checkpoint!r} is not a directory")
    return cfg.resume_from_checkpoint


def _sft_trainer_class() -> type:
    from transformers import Trainer

    class SFTTrainer(Trainer):
        """``Trainer`` whose forward passes use the reference M-RoPE positions for Qwen2.5-VL
        (``training.common.model.with_reference_positions``): the positions vLLM serves with."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return super().compute_loss(model, with_reference_positions(model, inputs),
                                        return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    return SFTTrainer


def build_trainer(cfg: SFTConfig, args: Any, model: Any, processor: Any, train_ds: SFTDataset,
                  eval_ds: SFTDataset | None, callbacks: Sequence[Any] = ()) -> Any:
    return _sft_trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                   data_collator=SFTCollator(processor.tokenizer.pad_token_id),
                   processing_class=processor, callbacks=list(callbacks))


def save_final(trainer: Any, cfg: SFTConfig, processor: Any) -> Path:
    """Write the final adapter, processor and run config to ``<output_dir>/final``."""
    out = Path(cfg.output_dir) / "final"
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(out))
        (out / "sft_config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
        # The prompt and module-library versions the model learnt (read by training.release).
        write_versions(out, stage="sft")
    trainer.accelerator.wait_for_everyone()
    return out
