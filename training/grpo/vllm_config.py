"""Settings of the colocated vLLM rollout engine (``rollout_engine: vllm``), inherited by
``GRPOConfig``.

Defaults are the paper's GRPO command (seed README: ``--use_vllm true --vllm_mode colocate
--vllm_tensor_parallel_size 4 --vllm_gpu_memory_utilization 0.75 --offload_model --offload_optimizer
--sleep_level 0 --move_model_batches 16``); the field names are ms-swift's flags where it has one.
What each memory mode does, and which settings need a GPU, is in docs/training.md ("Colocated vLLM
rollouts") and ``training.grpo.vllm_engine``.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.config import config_field

VLLM_WEIGHT_SYNC_MODES = ("merged", "adapter")
SLEEP_LEVELS = (0, 1, 2)


@dataclass
class VLLMRolloutConfig:
    vllm_tensor_parallel_size: int = config_field(
        4, "Tensor-parallel size of each colocated vLLM engine (paper: 4 = one engine over the 4 GPUs). The "
           "training processes form groups of this many consecutive ranks; each group runs one engine over "
           "its ranks and samples the group's prompts together. Must divide the world size; > 1 needs GPUs.")
    vllm_gpu_memory_utilization: float = config_field(
        0.75, "Fraction of each GPU's memory vLLM may take for weights, activations and KV cache (paper: 0.75). "
              "Ignored on CPU (vLLM's CPU build sizes its KV cache from vllm_cpu_kv_cache_gib).")
    vllm_max_model_len: int = config_field(
        0, "Context length of the vLLM engine (prompt + completion); 0: sized from the data - the longest "
           "prompt the rows and the frame policy can give (video tokens at the frame caps) plus "
           "max_completion_length, and the reward's module calls.")
    vllm_max_num_batched_tokens: int = config_field(
        0, "Tokens vLLM schedules per engine step; 0: vllm_max_model_len, so a whole video prompt prefills in "
           "one step (TRL's fixed 4096 is shorter than a 64-frame video prompt).")
    vllm_enable_prefix_caching: bool = config_field(
        True, "vLLM prefix caching (the G samples of a prompt share its KV cache). Reset after every sync.")
    vllm_enforce_eager: bool = config_field(
        False, "Skip CUDA-graph capture (ms-swift default false). Always on for vLLM's CPU build.")
    vllm_cpu_kv_cache_gib: int = config_field(
        1, "KV-cache size in GiB per engine on vLLM's CPU build (VLLM_CPU_KVCACHE_SPACE, if not already set).")
    vllm_weight_sync: str = config_field(
        "merged", "How the trained weights reach vLLM after each optimiser step: merged (LoRA folded into the base "
                  "weights per group of layers and loaded into vLLM's model, the paper's ms-swift default) or "
                  "adapter (only the LoRA adapter is sent and vLLM applies it as a LoRA; ms-swift "
                  "--vllm_enable_lora; language-model LoRA only, no modules_to_save).",
        aliases=("vllm_sync_mode",))
    vllm_sync_all_weights: bool = config_field(
        False, "Push every parameter at each sync (TRL). Off: only the groups of layers that hold trainable "
               "parameters (the frozen rest equals what vLLM loaded from the same checkpoint); a full push still "
               "follows every sleep_level 2 wake-up.")
    move_model_batches: int = config_field(
        16, "Groups the language model's decoder layers are split into for the weight sync (paper: 16; "
            "ms-swift --move_model_batches): each group is gathered (ZeRO-3), merged and loaded in turn, so the "
            "whole model is never gathered at once. Embeddings/head and the vision tower are one group each.")
    offload_model: bool = config_field(
        True, "Move the trainer's parameters to CPU memory during rollouts and the reward (paper: "
              "--offload_model), back before training. A no-op on CPU (logged once).")
    offload_optimizer: bool = config_field(
        True, "Move the optimiser state (and DeepSpeed's fp32 master partitions) to CPU memory during rollouts "
              "and the reward (paper: --offload_optimizer). A no-op on CPU (logged once).")
    sleep_level: int = config_field(
        0, "vLLM sleep between rollouts (paper: 0). 0: vLLM stays resident (use offload_model/offload_optimizer "
           "to make room). 1: weights offloaded to CPU and KV cache freed during training; the changed layers are "
           "pushed on wake-up. 2: weights and KV cache discarded; every weight is pushed again from the trainer on "
           "wake-up (a reload from disk would lose the adapter). 1 and 2 need a GPU (vLLM's CPU build has no "
           "sleep mode).")

    def validate_vllm_settings(self) -> None:
        """Check the engine settings (``GRPOConfig.__post_init__`` calls this); the ones that depend
        on the device and the world size are checked when the engine starts."""
        if self.vllm_tensor_parallel_size < 1:
            raise ValueError(f"vllm_tensor_parallel_size must be at least 1, got {self.vllm_tensor_parallel_size}")
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise ValueError(f"vllm_gpu_memory_utilization must be in (0, 1], got {self.vllm_gpu_memory_utilization}")
        if self.vllm_max_model_len < 0 or self.vllm_max_num_batched_tokens < 0:
            raise ValueError("vllm_max_model_len and vllm_max_num_batched_tokens must be >= 0 (0: sized from the data)")
        if self.vllm_weight_sync not in VLLM_WEIGHT_SYNC_MODES:
            raise ValueError(f"vllm_weight_sync must be one of {'|'.join(VLLM_WEIGHT_SYNC_MODES)}, "
                             f"got {self.vllm_weight_sync!r}")
        if self.move_model_batches < 1:
            raise ValueError(f"move_model_batches must be at least 1, got {self.move_model_batches}")
        if self.sleep_level not in SLEEP_LEVELS:
            raise ValueError(f"sleep_level must be 0, 1 or 2, got {self.sleep_level!r}")
        if self.vllm_cpu_kv_cache_gib < 1:
            raise ValueError(f"vllm_cpu_kv_cache_gib must be at least 1, got {self.vllm_cpu_kv_cache_gib}")
