"""``GRPOConfig``: every setting of the GRPO stage, with its help text.

Defaults are the paper's GRPO run (seed README ``swift rlhf --rlhf_type grpo`` command) and,
for what that command left unset, the defaults of ms-swift v3.8 (the release closest to the
paper's runs; ``swift/trainers/arguments.py`` ``GRPOArgumentsMixin``,
``swift/llm/argument/rlhf_args.py``, ``swift/llm/argument/tuner_args.py``): see
``configs/grpo/paper.yaml``, which lists them with their source. ``configs/grpo/*.yaml`` hold
overrides; command-line flags override the YAML (``inference.config.parse_config``).

Batch sizes count **completions**, as in ms-swift and TRL: one optimiser step consumes
``per_device_train_batch_size * world_size * gradient_accumulation_steps`` completions, i.e.
that number divided by ``num_generations`` prompts (the paper: 1 x 4 GPUs x 2 = 8 = one
prompt's group per step).
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.config import config_field as _f
from inference.video_sampling import FramePolicy
from training.grpo.core_algos import LOSS_TYPES, SCALE_REWARDS


@dataclass
class GRPOConfig(FramePolicy):
    """The GRPO stage. The frame policy (``video_*``, inherited from ``FramePolicy``) is the one
    the rollouts, the training forward and the reward's programs all use; keep it equal to the
    SFT run's (a mismatch with the checkpoint's ``sft_config.json`` is warned about)."""

    # --- model -----------------------------------------------------------------------------
    model_name_or_path: str = _f("", "Policy checkpoint (the merged SFT model, transformers format; "
                                     "Qwen3-VL or Qwen2.5-VL).")
    torch_dtype: str = _f("bfloat16", "Weights and compute dtype: bfloat16, float16 or float32.")
    attn_implementation: str = _f("auto", "Attention kernel: auto (flash_attention_2 when installed on a GPU, "
                                          "else sdpa), sdpa, eager or flash_attention_2.")
    gradient_checkpointing: bool = _f(True, "Recompute activations in the backward pass (non-reentrant).")
    # --- LoRA (the paper's command: --train_type lora, rank/alpha left at ms-swift's defaults) ----
    lora_rank: int = _f(8, "LoRA rank r (ms-swift 3.8 default; the paper's GRPO command sets none).")
    lora_alpha: int = _f(32, "LoRA alpha (ms-swift 3.8 default).")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input (ms-swift 3.8 default). Rollouts and old/"
                                   "reference log-probs run in eval mode (no dropout).")
    lora_target_modules: str = _f("all-linear", "all-linear = every linear layer of the language model "
                                                "(vision tower, merger and lm_head excluded); otherwise a "
                                                "PEFT target_modules regex.")
    lora_modules_to_save: str = _f("", "Comma-separated modules trained in full next to the adapters; "
                                       "empty: none.")
    # --- data ------------------------------------------------------------------------------
    train_file: str = _f("", "GRPO rows (JSON lines from data_synthesis: messages with a <video> tag, "
                             "videos, solution, choices, mode_label, kind, duration, subtitles, question).")
    video_dir: str = _f("", "Directory that relative video paths in the rows are resolved against; "
                            "empty: the data file's directory.")
    max_prompt_length: int = _f(0, "Refuse rows whose prompt (video tokens included) is longer than this; "
                                   "0: no limit. Prompts are never cut (a cut would go through the video).")
    shuffle: bool = _f(True, "Shuffle the rows each epoch (seeded by seed; ms-swift dataset_shuffle).")
    # --- rollouts ---------------------------------------------------------------------------
    rollout_engine: str = _f("transformers", "Rollout engine: transformers (generate on the training "
                                             "model). The colocated vLLM engine plugs into the same "
                                             "interface (training.grpo.engines).")
    num_generations: int = _f(8, "G: completions sampled per prompt (paper: 8).")
    temperature: float = _f(1.0, "Sampling temperature (paper: 1.0); training logits are divided by it.")
    top_p: float = _f(0.9, "Nucleus sampling mass (ms-swift 3.8 GRPO default 0.9).")
    top_k: int = _f(50, "Top-k sampling (ms-swift 3.8 GRPO default 50); 0 disables.")
    repetition_penalty: float = _f(1.0, "Repetition penalty (ms-swift 3.8 default 1.0: none).")
    max_completion_length: int = _f(4096, "Most new tokens per completion (paper: 4096).")
    # --- algorithm --------------------------------------------------------------------------
    loss_type: str = _f("grpo", f"Loss normalisation, one of {'|'.join(LOSS_TYPES)} (ms-swift 3.8 default "
                                "grpo: token mean per sequence, then mean over sequences).")
    scale_rewards: str = _f("group", f"Advantage scaling, one of {'|'.join(SCALE_REWARDS)} (ms-swift 3.8 "
                                     "scale_rewards true = group std; none = Dr. GRPO).")
    advantage_epsilon: float = _f(1e-4, "Added to the std in the advantage denominator (TRL / ms-swift: 1e-4).")
    epsilon: float = _f(0.2, "Clip range: ratios below 1 - epsilon (and above 1 + epsilon_high) are clipped "
                             "(ms-swift 3.8 default 0.2).")
    epsilon_high: float | None = _f(None, "Upper clip range (DAPO clip-higher, e.g. 0.28); None: epsilon.")
    dual_clip: float | None = _f(None, "Dual-clip constant c > 1 bounding the loss of negative-advantage "
                                       "tokens at -A*c (verl clip_ratio_c, e.g. 3.0); None: off.")
    beta: float = _f(0.04, "KL coefficient to the reference (the base with the adapter disabled; k3 "
                           "estimator); ms-swift 3.8 GRPO default 0.04. 0 skips the reference pass.")
    num_iterations: int = _f(1, "Optimiser steps per rollout batch (mu); > 1 reuses the batch with old "
                                "log-probs computed once after the rollout (ms-swift 3.8 default 1).")
    mask_truncated_completions: bool = _f(False, "Exclude completions that hit max_completion_length "
                                                 "without an end-of-turn token from the loss (ms-swift "
                                                 "overlong_filter, default off); their rewards still count.")
    dynamic_sampling: bool = _f(False, "Regenerate groups whose rewards have zero variance (no learning "
                                       "signal), up to max_resample_times (ms-swift dynamic_sample, off).")
    max_resample_times: int = _f(3, "Regeneration rounds of dynamic sampling (ms-swift default 3).")
    importance_sampling: str = _f("none", "Correct for the rollout engine's own log-probs: none, or "
                                          "<token|sequence>_<truncate|mask> (weights exp(old - sampler), "
                                          "capped/masked at importance_sampling_threshold). Needs an engine "
                                          "that reports log-probs (vLLM, issue 14; transformers reports them too).")
    importance_sampling_threshold: float = _f(3.0, "Cap of the importance-sampling weights (TRL default 3.0).")
    # --- rewards (rewards.score_completions, issue 12) -----------------------------------------
    reward_fn: str = _f("rewards:score_completions", "The reward, as module:callable with the signature of "
                                                     "rewards.score_completions(rows, completions, config, "
                                                     "*, runtime, vlm) -> RewardBatch.")
    reward_funcs: str = _f("accuracy,format,mode", "Comma-separated reward components (RewardConfig.reward_funcs; "
                                                   "the paper: R = 0.5 acc + 0.2 fmt + 0.3 mode).")
    reward_weights: str = _f("0.5,0.2,0.3", "Comma-separated weights of reward_funcs (RewardConfig.reward_weights).")
    reward_config: str = _f("", "YAML of further RewardConfig fields (sandbox limits, ...); empty: defaults.")
    reward_module_config: str = _f("", "YAML of ModuleConfig fields for the programs' module runtime "
                                       "(retriever, OCR, detector, clip_dir, ...); its video_* fields are "
                                       "always set to this config's so programs see the training frames.")
    reward_vlm: str = _f("policy", "Who answers the programs' VLM module calls (query_native, query_mc, ...): "
                                   "policy = the policy at its current weights, in-process; runtime = the "
                                   "backend reward_module_config names (a fixed endpoint or checkpoint).")
    # --- optimisation ----------------------------------------------------------------------
    output_dir: str = _f("outputs/grpo", "Where checkpoints, logs and the final adapter go.")
    num_train_epochs: float = _f(1.0, "Passes over the rows (paper: 1).")
    max_steps: int = _f(-1, "Stop after this many optimiser steps (overrides num_train_epochs when > 0).")
    per_device_train_batch_size: int = _f(1, "Completions per device per micro-batch (paper: 1).")
    gradient_accumulation_steps: int = _f(2, "Micro-batches per optimiser step (paper: 2).")
    learning_rate: float = _f(1e-6, "Peak learning rate (paper: 1e-6).")
    lr_scheduler_type: str = _f("cosine", "transformers scheduler name (ms-swift 3.8 default cosine).")
    warmup_ratio: float = _f(0.05, "Fraction of the steps spent in linear warmup (paper: 0.05).")
    weight_decay: float = _f(0.1, "AdamW weight decay (ms-swift 3.8 default 0.1).")
    adam_beta1: float = _f(0.9, "AdamW beta1 (transformers default).")
    adam_beta2: float = _f(0.95, "AdamW beta2 (ms-swift 3.8 default 0.95).")
    adam_epsilon: float = _f(1e-8, "AdamW epsilon.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    seed: int = _f(42, "Seed of LoRA init, data order, sampling and dropout (each rank samples with seed + rank).")
    deepspeed: str = _f("", "DeepSpeed JSON config (configs/deepspeed/zero2.json, zero3.json, "
                            "zero3_offload.json); empty: plain PyTorch (gradients all-reduced across ranks).")
    # --- checkpoints and logging -----------------------------------------------------------
    save_steps: int = _f(500, "Save a checkpoint every N optimiser steps (and at the end); with "
                              "num_iterations > 1 only at rollout-batch boundaries (paper: 500).")
    save_total_limit: int = _f(5, "Keep at most N checkpoints (paper: 5).")
    logging_steps: int = _f(5, "Print a summary every N steps (paper: 5); JSONL and W&B get every step.")
    log_completions: bool = _f(True, "Write sampled completions with their rewards to "
                                     "logs/completions.jsonl and a W&B table (paper: true).")
    num_completions_to_log: int = _f(8, "Completions per step in the completions log (rank 0's first N).")
    resume_from_checkpoint: str = _f("", "Checkpoint directory to resume from; 'auto' = the latest "
                                         "checkpoint-* in output_dir, if any.")
    report_to: str = _f("none", "Comma-separated trackers: wandb, none (JSONL logs are always written). "
                                "W&B honours WANDB_MODE=offline.")
    wandb_project: str = _f("videopro", "W&B project name.")
    run_name: str = _f("", "Run name for the trackers; empty: the output_dir's name.")

    def __post_init__(self) -> None:
        if self.torch_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"torch_dtype must be bfloat16, float16 or float32, got {self.torch_dtype!r}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {self.scale_rewards!r}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be at least 2 (a group needs a baseline), "
                             f"got {self.num_generations}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.num_iterations < 1 or self.max_completion_length < 1:
            raise ValueError("num_iterations and max_completion_length must be at least 1")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1 (or None), got {self.dual_clip}")
        if self.importance_sampling != "none":
            level, _, mode = self.importance_sampling.partition("_")
            if level not in ("token", "sequence") or mode not in ("truncate", "mask"):
                raise ValueError(f"importance_sampling must be none or <token|sequence>_<truncate|mask>, "
                                 f"got {self.importance_sampling!r}")
        if self.reward_vlm not in ("policy", "runtime"):
            raise ValueError(f"reward_vlm must be policy or runtime, got {self.reward_vlm!r}")
        if ":" not in self.reward_fn:
            raise ValueError(f"reward_fn must be module:callable, got {self.reward_fn!r}")
        if len(self.reward_func_names) != len(self.reward_weight_values):
            raise ValueError(f"reward_funcs ({self.reward_funcs!r}) and reward_weights ({self.reward_weights!r}) "
                             "must have the same number of entries")

    @property
    def reward_func_names(self) -> list[str]:
        return [n.strip() for n in self.reward_funcs.split(",") if n.strip()]

    @property
    def reward_weight_values(self) -> list[float]:
        try:
            return [float(w) for w in self.reward_weights.split(",") if w.strip()]
        except ValueError:
            raise ValueError(f"reward_weights must be comma-separated numbers, got {self.reward_weights!r}") from None

    def completions_per_step(self, world_size: int) -> int:
        """Completions one optimiser step consumes (the generation batch)."""
        return self.per_device_train_batch_size * world_size * self.gradient_accumulation_steps

    def prompts_per_step(self, world_size: int) -> int:
        """Prompts per rollout batch; raises when the generation batch is not a whole number of groups."""
        n = self.completions_per_step(world_size)
        if n % self.num_generations:
            raise ValueError(f"per_device_train_batch_size ({self.per_device_train_batch_size}) x world size "
                             f"({world_size}) x gradient_accumulation_steps ({self.gradient_accumulation_steps}) "
                             f"= {n} completions per step is not a multiple of num_generations "
                             f"({self.num_generations}); change one of them")
        return n // self.num_generations
