"""``SFTConfig``: every setting of the SFT stage, with its help text.

Defaults are the paper's recipe (seed README: ms-swift LoRA r64/alpha16 on all linear layers,
frozen vision tower, lr 1e-4, 1 epoch, per-device batch 2, warmup 0.05, cosine, 64 frames of
at most 50176 pixels). ``configs/sft/*.yaml`` hold overrides only; command-line flags override
the YAML (``inference.config.parse_config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.video_sampling import VideoSampling as _VS


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class SFTConfig:
    # --- model -----------------------------------------------------------------------------
    model_name_or_path: str = _f("", "Base checkpoint directory (Qwen3-VL or Qwen2.5-VL, transformers format).")
    torch_dtype: str = _f("bfloat16", "Weights and compute dtype: bfloat16, float16 or float32.")
    attn_implementation: str = _f("auto", "Attention kernel: auto (flash_attention_2 when installed on a GPU, "
                                          "else sdpa), sdpa, eager or flash_attention_2.")
    gradient_checkpointing: bool = _f(True, "Recompute activations in the backward pass (non-reentrant).")
    # --- LoRA ------------------------------------------------------------------------------
    lora_rank: int = _f(64, "LoRA rank r.")
    lora_alpha: int = _f(16, "LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input.")
    lora_target_modules: str = _f("all-linear", "all-linear = every linear layer of the language model "
                                                "(vision tower, merger and lm_head excluded); otherwise a "
                                                "PEFT target_modules regex.")
    lora_modules_to_save: str = _f("", "Comma-separated modules trained in full next to the adapters and "
                                       "saved with them (e.g. lm_head); empty: none.")
    # --- data ------------------------------------------------------------------------------
    train_file: str = _f("", "SFT rows (JSON lines, ms-swift messages format with a 'videos' list).")
    eval_file: str = _f("", "Held-out SFT rows for the evaluation loss; empty: split eval_split_ratio "
                            "of train_file off instead.")
    eval_split_ratio: float = _f(0.0, "Fraction of train_file held out for evaluation when eval_file is "
                                      "empty (seeded by seed); 0 disables evaluation.")
    video_dir: str = _f("", "Directory that relative video paths in the rows are resolved against; "
                            "empty: the data file's directory.")
    # Frame policy (inference.video_sampling.VideoSampling): ModuleConfig's video_* fields of the
    # same names give the runner's policy and query_native the same frames; keep them equal.
    video_fps: float = _f(_VS.fps, "Frames sampled per second of video before the frame caps "
                                   "(same as the runner's --video_fps).")
    video_min_frames: int = _f(_VS.min_frames, "Minimum number of sampled frames per video.")
    video_max_frames: int = _f(_VS.max_frames, "Maximum number of sampled frames per video "
                                               "(ms-swift FPS_MAX_FRAMES; the paper: 64).")
    video_min_pixels: int = _f(_VS.min_pixels, "Minimum pixels of one resized frame.")
    video_max_pixels: int = _f(_VS.max_pixels, "Maximum pixels of one resized frame "
                                               "(ms-swift VIDEO_MAX_PIXELS; the paper: 50176).")
    video_frame_rule: str = _f(_VS.frame_rule, "Which frames: linspace (qwen-vl-utils / ms-swift: frame numbers "
                                               "round(linspace(0, total-1, n))) or centres (the centre frame of "
                                               "n equal segments, this project's rule before).")
    video_pixel_rule: str = _f(_VS.pixel_rule, "Frame area bounds: stated ([video_min_pixels, video_max_pixels]; "
                                               "ms-swift with VIDEO_MIN_PIXELS=3136 VIDEO_MAX_PIXELS=50176) or "
                                               "qwen_vl_utils (what ms-swift does with only VIDEO_MAX_PIXELS set: "
                                               "qwen-vl-utils 0.0.14's 128-token minimum per frame wins, 4,480 "
                                               "instead of 1,536 video tokens on a 320x240 video).")
    video_cache_dir: str = _f("", "Directory of preprocessed video tensors shared by ranks and workers; "
                                  "empty: <output_dir>/video_cache; 'none' disables the cache.")
    max_length: int = _f(32768, "Maximum tokens per row; longer rows lose their tail (never vision tokens).")
    train_on: str = _f("all_assistant", "Which assistant turns carry loss: all_assistant or last_assistant.")
    dataloader_num_workers: int = _f(2, "DataLoader worker processes per rank.")
    # --- optimisation ----------------------------------------------------------------------
    output_dir: str = _f("outputs/sft", "Where checkpoints, logs and the final adapter go.")
    num_train_epochs: float = _f(1.0, "Training epochs.")
    max_steps: int = _f(-1, "Stop after this many optimiser steps (overrides num_train_epochs when > 0).")
    per_device_train_batch_size: int = _f(2, "Rows per device per micro-batch.")
    per_device_eval_batch_size: int = _f(1, "Rows per device per evaluation batch.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches accumulated per optimiser step.")
    learning_rate: float = _f(1e-4, "Peak learning rate.")
    lr_scheduler_type: str = _f("cosine", "transformers scheduler name (cosine, linear, constant, ...).")
    warmup_ratio: float = _f(0.05, "Fraction of the steps spent in linear warmup.")
    weight_decay: float = _f(0.1, "AdamW weight decay (ms-swift's default).")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    optim: str = _f("adamw_torch", "transformers optimiser name; ignored when the DeepSpeed config "
                                   "defines one (zero3_offload.json).")
    seed: int = _f(42, "Seed of model init, data order, dropout and the eval split.")
    deepspeed: str = _f("", "DeepSpeed JSON config (configs/deepspeed/zero2.json, zero3.json, "
                            "zero3_offload.json); empty: plain DDP / single process.")
    # --- checkpoints, evaluation, logging -----------------------------------------------------
    save_steps: int = _f(900, "Save a checkpoint every N optimiser steps (and at the end).")
    save_total_limit: int = _f(5, "Keep at most N checkpoints.")
    eval_steps: int = _f(50, "Evaluate every N optimiser steps (when there is an eval split).")
    logging_steps: int = _f(5, "Log every N optimiser steps.")
    resume_from_checkpoint: str = _f("", "Checkpoint directory to resume from; 'auto' = the latest "
                                         "checkpoint-* in output_dir, if any.")
    report_to: str = _f("none", "Comma-separated trackers: wandb, tensorboard, none. W&B honours "
                                "WANDB_MODE=offline.")
    wandb_project: str = _f("videopro", "W&B project name (sets WANDB_PROJECT).")
    run_name: str = _f("", "Run name for the trackers; empty: the output_dir's name.")

    def __post_init__(self) -> None:
        if self.train_on not in ("all_assistant", "last_assistant"):
            raise ValueError(f"train_on must be all_assistant or last_assistant, got {self.train_on!r}")
        if not 0.0 <= self.eval_split_ratio < 1.0:
            raise ValueError(f"eval_split_ratio must be in [0, 1), got {self.eval_split_ratio}")
        if self.torch_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"torch_dtype must be bfloat16, float16 or float32, got {self.torch_dtype!r}")
