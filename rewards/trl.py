"""The reward components as TRL-style functions: ``fn(completions, **columns) -> list[float | None]``.

TRL's ``GRPOTrainer(reward_funcs=[...])`` (and ms-swift, through :mod:`rewards.swift_plugin`)
call a reward function with the sampled completions and every dataset column as a per-sample
list (``solution=[...]``, ``choices=[...]``, ``mode_label=[...]``, ``videos=[...]``, ...). Each
function here rebuilds the rows from those columns and calls :func:`rewards.score_completions`
for its component; ``None`` marks an unscorable completion (a host error), which TRL and ms-swift
turn into NaN and leave out of the reward sum.

    from rewards.trl import trl_reward_functions
    funcs = trl_reward_functions(RewardConfig(answering_vlm="module_config", module_config="modules.yaml"))
    trainer = GRPOTrainer(..., reward_funcs=list(funcs.values()))

The module-level ``accuracy``, ``format``, ``mode`` and ``videopro`` (the weighted sum) use the
config named by ``$VIDEOPRO_REWARD_CONFIG`` (a YAML of ``RewardConfig`` fields), else the paper's
weights with ``answering_vlm: module_config`` (those trainers do not hand us their policy).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from rewards.config import RewardConfig
from rewards.functions import REWARDS
from rewards.scoring import RewardBatch, completion_text, score_completions

__all__ = ["rows_from_columns", "trl_reward_function", "trl_reward_functions", "config_from_environment",
           "accuracy", "format", "mode", "videopro"]

RewardFn = Callable[..., list[float | None]]
# Keyword arguments trainers add that are not dataset columns.
_NOT_COLUMNS = frozenset({"prompts", "completion_ids", "trainer_state", "log_extra", "log_metric"})


def _video_path(value: Any) -> Any:
    """A video entry as a path (ms-swift may pass ``{"path": ...}`` dicts)."""
    if isinstance(value, dict):
        return value.get("path") or value.get("video") or value.get("url")
    return value


def rows_from_columns(num: int, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-sample rows from TRL/ms-swift's per-sample column lists."""
    rows: list[dict[str, Any]] = [{} for _ in range(num)]
    for name, values in columns.items():
        if name in _NOT_COLUMNS or not isinstance(values, (list, tuple)) or len(values) != num:
            continue
        for row, value in zip(rows, values):
            row[name] = value
    for row in rows:
        if "videos" in row and isinstance(row["videos"], (list, tuple)):
            row["videos"] = [_video_path(v) for v in row["videos"]]
    return rows


def _truncation(num: int, columns: dict[str, Any]) -> list[bool] | None:
    flags = columns.get("is_truncated")  # ms-swift's per-sample column
    if isinstance(flags, (list, tuple)) and len(flags) == num:
        return [bool(f) for f in flags]
    return None


class _LastBatch:
    """The batch of the latest call, so that the component functions of one step (a trainer calls
    each with the same completions and columns) execute the programs once."""

    def __init__(self) -> None:
        self.key: Any = None
        self.batch: RewardBatch | None = None
        self.lock = threading.Lock()

    def score(self, config: RewardConfig, completions: Sequence[Any], columns: dict[str, Any], *, runtime: Any,
              vlm: Any) -> RewardBatch:
        rows = rows_from_columns(len(completions), columns)
        truncated = _truncation(len(completions), columns)
        state = columns.get("trainer_state")
        key = (id(completions), getattr(state, "global_step", None), id(runtime), id(vlm),
               json.dumps({k: getattr(config, k) for k in config.__dataclass_fields__}, sort_keys=True, default=str),
               json.dumps([completion_text(c) for c in completions], ensure_ascii=False),
               json.dumps(rows, sort_keys=True, default=str), json.dumps(truncated))
        with self.lock:
            if self.key == key and self.batch is not None:
                return self.batch
            batch = score_completions(rows, completions, config, runtime=runtime, vlm=vlm, truncated=truncated)
            self.key, self.batch = key, batch
        log_metric = columns.get("log_metric")
        if callable(log_metric):  # TRL: averaged and logged with the step's metrics
            log_metric("videopro/unscorable", float(batch.counters.get("unscorable", 0)))
        return batch


_LAST = _LastBatch()


def trl_reward_function(config: RewardConfig, component: str = "videopro", *, runtime: Any = None,
                        vlm: Any = None) -> RewardFn:
    """A TRL-style function for one registered ``component`` of ``config`` (its unweighted
    values), or for ``videopro``: the weighted sum of ``config``'s components.

    A completion that cannot be scored (a host error) is ``None`` in *every* component function,
    not only in ``accuracy``: trainers add the functions' values with ``nansum`` and leave a
    completion out of the advantage only when all of them are ``None`` (TRL), so a ``None``
    accuracy beside a scored format and mode would count as accuracy 0. The components are
    therefore computed together (``config``'s components, the programs executed once per step)."""
    if component != "videopro" and component not in REWARDS:
        raise ValueError(f"unknown reward component {component!r}; registered: {sorted(REWARDS)}")
    if component not in ("videopro", *config.reward_funcs):
        config = replace(config, reward_funcs=[*config.reward_funcs, component],
                         reward_weights=[*config.reward_weights, 0.0])

    def fn(completions: Sequence[Any], **columns: Any) -> list[float | None]:
        batch = _LAST.score(config, completions, columns, runtime=runtime, vlm=vlm)
        if component == "videopro":
            return list(batch.total)
        return [None if total is None else value for value, total in zip(batch.components[component], batch.total)]

    fn.__name__ = component
    return fn


def trl_reward_functions(config: RewardConfig, *, runtime: Any = None, vlm: Any = None) -> dict[str, RewardFn]:
    """One TRL-style function per component of ``config`` plus ``videopro`` (the weighted sum)."""
    names = [*config.reward_funcs, "videopro"]
    return {name: trl_reward_function(config, name, runtime=runtime, vlm=vlm) for name in names}


def config_from_environment() -> RewardConfig:
    """``$VIDEOPRO_REWARD_CONFIG`` (a YAML of RewardConfig fields), else the paper's reward
    answered by the module library's configured VLM."""
    from inference.config import load_yaml_overrides

    path = os.environ.get("VIDEOPRO_REWARD_CONFIG", "")
    values: dict[str, Any] = {"answering_vlm": "module_config"}
    if path:
        values.update(load_yaml_overrides(path, RewardConfig))
    return RewardConfig(**values)


def _from_environment(name: str) -> RewardFn:
    def fn(completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return trl_reward_function(config_from_environment(), name)(completions, **columns)

    fn.__name__ = name
    return fn


accuracy = _from_environment("accuracy")
format = _from_environment("format")  # noqa: A001 - the component's name
mode = _from_environment("mode")
videopro = _from_environment("videopro")
