"""How the GRPO loop calls the reward (``rewards.score_completions``, issue 12), and the VLM
backend that lets the programs' module calls be answered by the policy itself.

The agreed reward interface (``rewards.scoring``)::

    score_completions(rows, completions, config, *, runtime=None, vlm=None, truncated=None,
                      scorer=None) -> RewardBatch

``rows[i]`` is the GRPO row completion ``i`` answers (rows repeated per sample), ``completions[i]``
its decoded text; the batch carries ``components`` (per-component scores, ``None`` where a
component could not be computed), ``weights``, ``total`` (weighted sum; ``None`` = unscorable,
excluded from the advantage), ``failures`` (reason per completion), ``records`` (execution
records), ``counters`` and ``timing``. ``GRPOConfig.reward_fn`` names the callable (``module:name``); the
loop needs only the fields above, so any callable returning an object (or dict) with them works
(the tests use a format + mode reward computed from the text).

**The policy answers its own programs.** With ``reward_vlm: policy`` the programs' VLM modules
(``query_native``, ``query_mc``, ...) run on :func:`policy_vlm`: the in-process
``inference.backends.vlm.TransformersVLM`` handed the live training model
(``TransformersVLM.from_model``), whose identity carries the optimiser step so the module-call
cache never serves an answer of older weights. The calls happen inside the loop's rollout mode
(eval, ZeRO-3 parameters gathered). With ``reward_vlm: runtime`` the backend ``reward_module_config`` names
is used instead (a fixed endpoint or checkpoint, e.g. the SFT model behind ``vllm serve``).

The program runtime (``inference.modules.ModuleRuntime``) is built from
``reward_module_config`` with its ``video_*`` fields overwritten by the run's frame policy, so a
program's ``query_native`` sees the frames the policy was prompted and trained with.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from inference.backends.vlm import TransformersVLM
from inference.config import load_yaml_overrides
from training.grpo.config import GRPOConfig


@dataclass
class RewardResult:
    """The fields of ``rewards.RewardBatch`` the loop reads (see the module docstring; ``timing`` is
    the reward's own time split, summed across ranks in the logs)."""

    components: dict[str, list[float | None]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    total: list[float | None] = field(default_factory=list)
    failures: list[str | None] = field(default_factory=list)
    records: list[dict[str, Any] | None] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)


class RewardFn(Protocol):
    """What ``GRPOConfig.reward_fn`` names: the agreed ``rewards.score_completions`` signature.
    ``truncated`` and ``scorer`` are passed only when the callable takes them."""

    def __call__(self, rows: Sequence[dict[str, Any]], completions: Sequence[str], config: Any = None, *,
                 runtime: Any = None, vlm: Any = None, truncated: Sequence[bool] | None = None) -> Any: ...


def as_reward_result(batch: Any, n: int) -> RewardResult:
    """Read a ``RewardBatch`` (or a dict with its keys) into a :class:`RewardResult`, checking
    that every per-completion list has ``n`` entries."""
    get = (lambda k, d: batch.get(k, d)) if isinstance(batch, dict) else (lambda k, d: getattr(batch, k, d))
    total = list(get("total", None) or [])
    if len(total) != n:
        raise ValueError(f"the reward returned {len(total)} totals for {n} completions")
    components = {str(k): list(v) for k, v in dict(get("components", {}) or {}).items()}
    for name, values in components.items():
        if len(values) != n:
            raise ValueError(f"reward component {name!r} has {len(values)} values for {n} completions")
    failures = list(get("failures", None) or [None] * n)
    records = list(get("records", None) or [None] * n)
    if len(failures) != n or len(records) != n:
        raise ValueError(f"the reward returned {len(failures)} failures / {len(records)} records for {n} completions")
    return RewardResult(components=components, weights=dict(get("weights", {}) or {}),
                        total=[None if t is None else float(t) for t in total], failures=failures,
                        records=records, counters={str(k): int(v) for k, v in dict(get("counters", {}) or {}).items()},
                        timing=dict(get("timing", {}) or {}))


def policy_vlm(model: Any, processor: Any, checkpoint: str, weights_version: Callable[[], int]) -> Any:
    """The policy as the programs' answering VLM: ``TransformersVLM.from_model`` on the live model
    (``training.grpo.engines.generation_model`` of the policy: LoRA active), same prompts, frames,
    greedy answers and Eq. 2 confidence as the runner's in-process backend. Its identity names the
    optimiser step, so the module-call cache never serves an answer of older weights."""
    return TransformersVLM.from_model(model, processor, identity=lambda: f"policy:{checkpoint}@step{weights_version()}",
                                      checkpoint=checkpoint)


def _import(spec: str) -> tuple[Any, Callable[..., Any]]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"reward_fn {spec!r}: cannot import {module_name!r} ({exc}); the default reward is "
                          f"rewards.score_completions (issue 12)") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ImportError(f"reward_fn {spec!r}: {module_name} has no callable {attr!r}")
    return module, fn


def reward_config_for(module: Any, cfg: GRPOConfig) -> Any:
    """The reward module's ``RewardConfig`` from ``cfg.reward_config`` (YAML) plus
    ``reward_funcs`` / ``reward_weights`` passed through; ``None`` when the module has none."""
    config_cls = getattr(module, "RewardConfig", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        return None
    values: dict[str, Any] = load_yaml_overrides(cfg.reward_config, config_cls) if cfg.reward_config else {}
    names = {f.name for f in dataclasses.fields(config_cls)}
    if "answering_vlm" in names:  # rewards.RewardConfig: who answers the programs' VLM calls
        values.setdefault("answering_vlm", "policy" if cfg.reward_vlm == "policy" else "module_config")
    if "reward_funcs" in names:
        values.setdefault("reward_funcs", cfg.reward_func_names)
    if "reward_weights" in names:
        values.setdefault("reward_weights", cfg.reward_weight_values)
    elif "weights" in names:
        values.setdefault("weights", dict(zip(cfg.reward_func_names, cfg.reward_weight_values)))
    return config_cls(**values)


def module_runtime_for(cfg: GRPOConfig, patch_factor: int, vlm: Any | None) -> Any:
    """The programs' ``ModuleRuntime``: ``reward_module_config`` with the run's frame policy
    (clips under ``<output_dir>/clips`` unless the YAML names a ``clip_dir``)."""
    from inference.modules import ModuleConfig, ModuleRuntime
    from inference.video_sampling import FRAME_POLICY_FIELDS

    values: dict[str, Any] = load_yaml_overrides(cfg.reward_module_config, ModuleConfig) \
        if cfg.reward_module_config else {}
    values.setdefault("clip_dir", str(Path(cfg.output_dir) / "clips"))
    values.update({name: getattr(cfg, name) for name in FRAME_POLICY_FIELDS})
    values["video_patch_factor"] = patch_factor
    return ModuleRuntime(ModuleConfig(**values), vlm=vlm)


class LoopReward:
    """The reward as the loop calls it: ``reward(rows, completions, truncated)`` ->
    :class:`RewardResult`, with the reward config, the program runtime and the VLM backend bound.
    When the reward module has a ``RewardScorer`` (``rewards``), one is built here and reused for
    every step (its sandbox workers, call cache and VLM batching live across steps)."""

    def __init__(self, cfg: GRPOConfig, policy_model: Any, processor: Any, patch_factor: int):
        module, self.fn = _import(cfg.reward_fn)
        self.config = reward_config_for(module, cfg)
        self.weights_version = 0
        self.vlm = policy_vlm(policy_model, processor, cfg.model_name_or_path, lambda: self.weights_version) \
            if cfg.reward_vlm == "policy" else None
        # The programs' module library; the scorer points its VLM at the policy (reward_vlm policy),
        # else it answers with the backend reward_module_config names.
        self.runtime = module_runtime_for(cfg, patch_factor, None)
        scorer_cls = getattr(module, "RewardScorer", None)
        self.scorer = scorer_cls(self.config, runtime=self.runtime, vlm=self.vlm) \
            if scorer_cls is not None and self.config is not None else None
        params = inspect.signature(self.fn).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        self.takes_truncated = "truncated" in params or takes_any
        self.takes_scorer = "scorer" in params or takes_any

    def set_weights_version(self, step: int) -> None:
        self.weights_version = int(step)

    def __call__(self, rows: Sequence[dict[str, Any]], completions: Sequence[str],
                 truncated: Sequence[bool] | None = None) -> RewardResult:
        extra: dict[str, Any] = {}
        if truncated is not None and self.takes_truncated:
            extra["truncated"] = list(truncated)
        if self.scorer is not None and self.takes_scorer:
            extra["scorer"] = self.scorer
        batch = self.fn(list(rows), list(completions), self.config, runtime=self.runtime, vlm=self.vlm, **extra)
        return as_reward_result(batch, len(completions))

    def close(self) -> None:
        if self.scorer is not None and hasattr(self.scorer, "close"):
            self.scorer.close()
