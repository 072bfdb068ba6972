"""Wiring synthesis to the runtime: the module library (``inference.modules``) behind the
sandboxed executor (``inference.sandbox``), and ``query_native`` for labelling.

The module library's backends come from ``ModuleConfig``: its defaults, then the optional
``module_config`` YAML, then the synthesis config's own fields (``clip_dir``,
``clip_duration``, ``native_api_base``, ``native_model``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inference.types import ExecutionRecord, QARecord


def module_config_from(cfg: Any) -> Any:
    """The ``ModuleConfig`` for a synthesis config."""
    import dataclasses

    from inference.config import load_yaml_overrides
    from inference.modules import ModuleConfig

    values: dict[str, Any] = {}
    if cfg.module_config:
        values.update(load_yaml_overrides(cfg.module_config, ModuleConfig))
    values["clip_dir"] = cfg.clip_dir or str(Path(cfg.output_dir) / "clips")
    values["clip_duration"] = cfg.clip_duration
    if cfg.native_api_base:
        values.update(vlm_backend="openai", vlm_base_url=cfg.native_api_base)
    if cfg.native_model:
        if Path(cfg.native_model).expanduser().is_dir():
            values.update(vlm_backend="transformers", vlm_checkpoint=str(Path(cfg.native_model).expanduser()))
        else:
            values["vlm_model"] = cfg.native_model
    known = {f.name for f in dataclasses.fields(ModuleConfig)}
    return ModuleConfig(**{k: v for k, v in values.items() if k in known})


_RUNTIMES: dict[str, Any] = {}


def video_duration(record: QARecord, probe: Callable[[str], float] | None) -> float | None:
    """The one rule for the ``duration`` a program sees: the record's own, else ``probe(video)``
    (the module runtime's video store, as the inference runner does), else ``None``. The
    program runner, the stage rows and export all go through it."""
    if record.duration is not None:
        return float(record.duration)
    if probe is not None:
        return float(probe(record.video))
    return None


def build_module_runtime(cfg: Any) -> Any:
    """One ``ModuleRuntime`` per module configuration per process (heavy models load once)."""
    from inference.modules import ModuleRuntime

    config = module_config_from(cfg)
    key = json.dumps({k: str(v) for k, v in vars(config).items()}, sort_keys=True)
    if key not in _RUNTIMES:
        _RUNTIMES[key] = ModuleRuntime(config)
    return _RUNTIMES[key]


class SandboxProgramRunner:
    """``(code, QARecord) -> ExecutionRecord`` over a ``ProgramExecutor``.

    Registers the record's subtitle file with the module runtime first (subtitle modules read
    it) and lets the program name only its own video and the files ``roots_for(video)``
    returns (the module runtime's ``program_roots``: that video's clip folder).

    Programs get the video length as the ``duration`` global. A record without one (the
    CG-Bench loader leaves it out when the annotation lacks it) gets ``duration_for(video)``
    (the module runtime's ``store.probe(video).duration``, as the inference runner does), so a
    program that uses ``duration`` behaves in synthesis as it does at inference.
    """

    def __init__(self, executor: Any, *, register_subtitles: Callable[[str, str | None], None] | None = None,
                 roots_for: Callable[[str], Sequence[str]] | None = None,
                 duration_for: Callable[[str], float] | None = None):
        self.executor = executor
        self.register_subtitles = register_subtitles
        self.roots_for = roots_for
        self.duration_for = duration_for
        self._probed: dict[str, float | None] = {}

    def duration_of(self, record: QARecord) -> float | None:
        """The ``duration`` this runner runs ``record``'s programs with (stage rows record it)."""
        if record.duration is not None:
            return float(record.duration)
        if record.video not in self._probed:
            self._probed[record.video] = video_duration(record, self.duration_for)
        return self._probed[record.video]

    def __call__(self, code: str, record: QARecord) -> ExecutionRecord:
        if self.register_subtitles is not None:  # None clears what an earlier record registered
            self.register_subtitles(record.video, record.subtitles or None)
        roots = tuple(self.roots_for(record.video)) if self.roots_for is not None else ()
        return self.executor.execute(code, video=record.video, question=record.question,
                                     choices=list(record.choices), duration=self.duration_of(record),
                                     allowed_roots=roots)


def build_program_runner(cfg: Any) -> SandboxProgramRunner:
    """Module library + call cache + sandboxed executor, as configured."""
    from inference.call_cache import CallCache
    from inference.sandbox.host import ProgramExecutor, SandboxLimits

    runtime = build_module_runtime(cfg)
    cache = CallCache(cfg.call_cache_dir or str(Path(cfg.output_dir) / "call_cache"))
    limits = SandboxLimits(total_time_s=cfg.exec_timeout_s)
    # The identity is read once per execution: what the endpoint serves, and the weights version.
    executor = ProgramExecutor(runtime.functions(), limits=limits, workers=cfg.exec_workers, cache=cache,
                               cache_identity=runtime.cache_identity, video_context=runtime.subtitle_identity)
    return SandboxProgramRunner(executor, register_subtitles=runtime.register_subtitles,
                                roots_for=runtime.program_roots,
                                duration_for=lambda video: runtime.store.probe(video).duration)


def build_duration_probe(cfg: Any) -> Callable[[str], float]:
    """``video -> duration`` in seconds from the module runtime's video store (lazy: the store
    is built on the first call, and no model is loaded)."""
    return lambda video: float(build_module_runtime(cfg).store.probe(video).duration)


def runner_duration(run_program: Any) -> Callable[[QARecord], float | None] | None:
    """``record -> duration`` as a program runner runs it (``SandboxProgramRunner.duration_of``),
    or ``None`` for a runner that does not say (a plain callable)."""
    return getattr(run_program, "duration_of", None)


def build_query_native(cfg: Any) -> Callable[..., Any]:
    """The module library's ``query_native`` (its VLM backend: endpoint or in-process)."""
    return build_module_runtime(cfg).query_native
