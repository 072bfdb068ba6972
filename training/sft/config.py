"""``SFTConfig``: every setting of the SFT stage, with its help text.

Defaults are the paper's recipe (seed README: ms-swift LoRA r64/alpha16 on all linear layers,
frozen vision tower, lr 1e-4, 1 epoch, per-device batch 2, warmup 0.05, cosine, 64 frames of
at most 50176 pixels). ``configs/sft/*.yaml`` hold overrides only; command-line flags override
the YAML (``inference.config.parse_config``).
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.config import config_field
from inference.video_sampling import FramePolicy


@dataclass
class SFTConfig(FramePolicy):
    """The SFT stage. The frame policy (``video_*``, inherited from ``FramePolicy``) is the one
    the runner's ``ModuleConfig`` inherits too, so the trained model and its runtime see the same
    frames; it is saved with the adapter (``sft_config.json``)."""

    # --- model -----------------------------------------------------------------------------
    model_name_or_path: str = config_field("", "Base checkpoint directory (Qwen3-VL or Qwen2.5-VL, transformers "
                                               "format).")
    torch_dtype: str = config_field("bfloat16", "Weights and compute dtype: bfloat16, float16 or float32.")
    attn_implementation: str = config_field("auto", "Attention kernel: auto (flash_attention_2 when installed on a "
                                                    "GPU, else sdpa), sdpa, eager or flash_attention_2.")
    gradient_checkpointing: bool = config_field(True, "Recompute activations in the backward pass (non-reentrant).")
    # --- LoRA ------------------------------------------------------------------------------
    lora_rank: int = config_field(64, "LoRA rank r.")
    lora_alpha: int = config_field(16, "LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = config_field(0.05, "Dropout on the LoRA input.")
    lora_target_modules: str = config_field("all-linear", "all-linear = every linear layer of the language model "
                                                          "(vision tower, merger and lm_head excluded); otherwise a "
                                                          "PEFT target_modules regex.")
    lora_modules_to_save: str = config_field("", "Comma-separated modules trained in full next to the adapters and "
                                                 "saved with them (e.g. lm_head); empty: none.")
    # --- data ------------------------------------------------------------------------------
    train_file: str = config_field("", "SFT rows (JSON lines, ms-swift messages format with a 'videos' list).")
    eval_file: str = config_field("", "Held-out SFT rows for the evaluation loss; empty: split eval_split_ratio of "
                                      "train_file off instead.")
    eval_split_ratio: float = config_field(0.0, "Fraction of train_file held out for evaluation when eval_file is "
                                                "empty (seeded by seed); 0 disables evaluation.")
    video_dir: str = config_field("", "Directory that relative video paths in the rows are resolved against; empty: "
                                      "the data file's directory.")
    video_cache_dir: str = config_field("", "Directory of preprocessed video tensors shared by ranks and workers; "
                                            "empty: <output_dir>/video_cache; 'none' disables the cache.")
    max_length: int = config_field(
        200000, "Maximum tokens per row (the seed README's 200000); longer rows lose their tail (never vision tokens).")
    train_on: str = config_field("all_assistant", "Which assistant turns carry loss: all_assistant or last_assistant.")
    dataloader_num_workers: int = config_field(8, "DataLoader worker processes per rank (the seed README's 8).")
    # --- optimisation ----------------------------------------------------------------------
    output_dir: str = config_field("outputs/sft", "Where checkpoints, logs and the final adapter go.")
    num_train_epochs: float = config_field(1.0, "Training epochs.")
    max_steps: int = config_field(-1, "Stop after this many optimiser steps (overrides num_train_epochs when > 0).")
    per_device_train_batch_size: int = config_field(2, "Rows per device per micro-batch.")
    per_device_eval_batch_size: int = config_field(1, "Rows per device per evaluation batch.")
    gradient_accumulation_steps: int = config_field(1, "Micro-batches accumulated per optimiser step.")
    learning_rate: float = config_field(1e-4, "Peak learning rate.")
    lr_scheduler_type: str = config_field("cosine", "transformers scheduler name (cosine, linear, constant, ...).")
    warmup_ratio: float = config_field(0.05, "Fraction of the steps spent in linear warmup.")
    weight_decay: float = config_field(0.1, "AdamW weight decay (ms-swift's default).")
    max_grad_norm: float = config_field(1.0, "Gradient clipping norm.")
    optim: str = config_field("adamw_torch", "transformers optimiser name; ignored when the DeepSpeed config defines "
                                             "one (zero3_offload.json).")
    seed: int = config_field(42, "Seed of model init, data order, dropout and the eval split.")
    deepspeed: str = config_field("", "DeepSpeed JSON config (configs/deepspeed/zero2.json, zero3.json, "
                                      "zero3_offload.json); empty: plain DDP / single process.")
    # --- checkpoints, evaluation, logging -----------------------------------------------------
    save_steps: int = config_field(900, "Save a checkpoint every N optimiser steps (and at the end).")
    save_total_limit: int = config_field(5, "Keep at most N checkpoints.")
    eval_steps: int = config_field(50, "Evaluate every N optimiser steps (when there is an eval split).")
    logging_steps: int = config_field(5, "Log every N optimiser steps.")
    resume_from_checkpoint: str = config_field("", "Checkpoint directory to resume from; 'auto' = the latest "
                                                   "checkpoint-* in output_dir, if any.")
    report_to: str = config_field("none", "Comma-separated trackers: wandb, tensorboard, none. W&B honours "
                                          "WANDB_MODE=offline.")
    wandb_project: str = config_field("videopro", "W&B project name (sets WANDB_PROJECT).")
    run_name: str = config_field("", "Run name for the trackers; empty: the output_dir's name.")

    def __post_init__(self) -> None:
        if self.train_on not in ("all_assistant", "last_assistant"):
            raise ValueError(f"train_on must be all_assistant or last_assistant, got {self.train_on!r}")
        if not 0.0 <= self.eval_split_ratio < 1.0:
            raise ValueError(f"eval_split_ratio must be in [0, 1), got {self.eval_split_ratio}")
        if self.torch_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"torch_dtype must be bfloat16, float16 or float32, got {self.torch_dtype!r}")
