"""``RewardConfig``: which reward components, their weights, and how programs are executed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from inference.config import config_field

#: Paper Eq. 3: R = 0.5 r_acc + 0.2 r_fmt + 0.3 r_mode.
PAPER_REWARD_FUNCS = ("accuracy", "format", "mode")
PAPER_REWARD_WEIGHTS = (0.5, 0.2, 0.3)
ANSWERING_VLMS = ("policy", "module_config")


@dataclass
class RewardConfig:
    """The reward of the GRPO stage (paper Eq. 3, A.3); the defaults are the paper's."""

    reward_funcs: list[str] = config_field(
        help="Reward components, by registered name (rewards.functions.REWARDS): accuracy, format, mode.",
        factory=lambda: list(PAPER_REWARD_FUNCS))
    reward_weights: list[float] = config_field(
        help="One weight per reward_funcs entry (paper Eq. 3: 0.5 accuracy, 0.2 format, 0.3 mode).",
        factory=lambda: list(PAPER_REWARD_WEIGHTS))
    answering_vlm: str = config_field(
        "policy", "Who answers the programs' VLM module calls (query_*, subtitle hints): 'policy' = the VLM the "
                  "caller passes (the GRPO loop passes the policy at its current weights, as at inference); "
                  "'module_config' = the module library's vlm_backend (an OpenAI-compatible endpoint or an "
                  "in-process checkpoint).")
    module_config: str = config_field(
        "", "YAML of ModuleConfig settings for the module library the programs call (backends, clip_dir, "
            "frame policy, the answering endpoint/checkpoint); empty: ModuleConfig's defaults.")
    exec_workers: int = config_field(8, "Sandbox worker processes: programs executed at once (a GRPO group is 8).")
    program_timeout_s: float = config_field(
        300.0, "Wall-clock limit of one program, module calls included; a program past it scores accuracy 0.")
    call_cache_dir: str = config_field(
        "", "Persist module-call results here (shared across steps and processes, keyed by the answering "
            "weights); empty: an in-memory cache for the process.")
    host_error_retries: int = config_field(
        1, "Run a program again, up to this many times, when its execution ended in a host error (endpoint "
           "down, sandbox start failure, module OOM): a transient outage then costs time instead of an "
           "unscorable completion. Our addition; 0 disables it.")
    trust_program_confidence: bool = config_field(
        False, "Read a confidence the program stated itself (make_result, or an edited module result) as the "
               "answer's confidence; off (the default, as in the runner and synthesis): it counts as missing.")
    use_call_cache: bool = config_field(
        True, "Compute identical module calls once (within a step, and across steps at the same weights); "
              "off recomputes every call (benchmarks).")
    batch_vlm_calls: bool = config_field(
        True, "Serve VLM module calls that concurrent programs make together (one batched generate for an "
              "in-process model, concurrent requests for a server) instead of one by one.")
    vlm_batch_window_s: float = config_field(
        0.05, "How long the first VLM call of a batch waits for others to join it (seconds).")
    vlm_max_batch: int = config_field(32, "Most VLM calls served in one batch.")

    def __post_init__(self) -> None:
        from rewards.functions import REWARDS

        if len(self.reward_funcs) != len(self.reward_weights):
            raise ValueError(f"reward_funcs {self.reward_funcs} and reward_weights {self.reward_weights} must have "
                             f"the same length: one weight per component")
        try:
            weights = [float(w) for w in self.reward_weights]
        except (TypeError, ValueError):
            raise ValueError(f"reward_weights must be numbers, got {self.reward_weights}") from None
        if any(isinstance(w, bool) for w in self.reward_weights) or not all(math.isfinite(w) for w in weights):
            raise ValueError(f"reward_weights must be finite numbers, got {self.reward_weights}")
        if any(w < 0 for w in weights):
            raise ValueError(f"reward_weights must not be negative, got {self.reward_weights}: every component "
                             "is a value in [0, 1] that the policy should raise")
        if weights and sum(weights) <= 0:
            raise ValueError(f"reward_weights {self.reward_weights} are all zero: the reward would be constant")
        unknown = [name for name in self.reward_funcs if name not in REWARDS]
        if unknown:
            raise ValueError(f"unknown reward component(s) {unknown}; registered: {sorted(REWARDS)}")
        if len(set(self.reward_funcs)) != len(self.reward_funcs):
            raise ValueError(f"reward_funcs names a component twice: {self.reward_funcs}")
        if self.answering_vlm not in ANSWERING_VLMS:
            raise ValueError(f"answering_vlm must be one of {ANSWERING_VLMS}, got {self.answering_vlm!r}")
        if not self.reward_funcs:
            raise ValueError("reward_funcs is empty: name at least one component")
        if isinstance(self.host_error_retries, bool) or not isinstance(self.host_error_retries, int) \
                or self.host_error_retries < 0:
            raise ValueError(f"host_error_retries must be a whole number >= 0, got {self.host_error_retries!r}")
        if not (self.program_timeout_s > 0 and math.isfinite(self.program_timeout_s)):
            raise ValueError(f"program_timeout_s must be a positive number of seconds, got {self.program_timeout_s}")
        if self.exec_workers < 1 or self.vlm_max_batch < 1:
            raise ValueError("exec_workers and vlm_max_batch must be at least 1")

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self.reward_funcs, (float(w) for w in self.reward_weights)))
