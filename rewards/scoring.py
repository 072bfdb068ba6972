"""Score a step's completions: parse every one, execute the runnable programs concurrently in the
sandbox, and apply the configured reward components (``rewards.functions``).

    batch = score_completions(rows, completions, RewardConfig(), vlm=policy_vlm)
    batch.total        # weighted sum per completion; None = unscorable (host error)
    batch.components   # {"accuracy": [...], "format": [...], "mode": [...]}

``rows[i]`` is the GRPO row completion ``i`` answers (a step's rows repeated G times, aligned
with the completions). Programs run on the row's video with the row's question, choices,
duration and subtitles, at most ``exec_workers`` at once, each with a hard time limit. Module
calls go through one call cache keyed by the answering backends' identity (its weights version
included), so identical calls within a step, and across steps at the same weights, are
computed once; the VLM calls that concurrent programs make are served together
(``inference.backends.batching.BatchingVLM``). The :class:`RewardScorer` that does this is built
once per (config, runtime, VLM) and reused by later calls.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.confidence import effective_confidence
from inference.programs import analyse_output
from inference.scoring import normalise_letter
from inference.types import OPTION_LETTERS, ExecutionRecord
from rewards.config import RewardConfig
from rewards.functions import REWARDS, Sample, Score

__all__ = ["RewardBatch", "RewardScorer", "score_completions", "completion_text", "strip_end_tokens", "END_TOKENS",
           "MODE_LABELS", "VLM_MODULES"]

logger = logging.getLogger(__name__)

#: Modules whose work is a VLM call: they may run concurrently (their calls are batched);
#: every other module (retrieval, detection, OCR, ...) runs one at a time.
VLM_MODULES = frozenset({"query_native", "query_mc", "query_frames", "query_yn", "get_subtitle_hints"})

_ROW_COLUMNS = {
    "accuracy": ("videos", "question", "choices", "solution"),
    "format": (),
    "mode": ("mode_label",),
}


@dataclass
class RewardBatch:
    """Rewards of one scoring call, one entry per completion.

    Attributes:
        components: component name -> values (``None`` = unscorable).
        weights: component name -> weight.
        total: the weighted sum; ``None`` when any component is ``None`` (excluded from the
            advantage, counted in ``counters["unscorable"]``).
        reasons: component name -> why each value is below 1 (``None`` at 1).
        failures: the first reason per completion (``None`` when every component is 1).
        records: the execution record (``ExecutionRecord.to_dict()``) of each executed program.
        modes: the mode of each completion's program (``native``/``program``; ``None``: no program).
        confidences: each executed answer's confidence as the runner reads it
            (``inference.confidence.effective_confidence``: ``None`` when missing, or stated by the
            program while ``trust_program_confidence`` is off). Logged; no component reads it.
        counters: ``"<component>/<category>"`` counts of the reasons, and ``unscorable``.
        timing: seconds spent parsing, executing and in total; module-call and VLM-batch counts.
    """

    components: dict[str, list[float | None]]
    weights: dict[str, float]
    total: list[float | None]
    reasons: dict[str, list[str | None]]
    failures: list[str | None]
    records: list[dict[str, Any] | None]
    modes: list[str | None]
    confidences: list[float | None] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.total)

    def mean(self, name: str | None = None) -> float | None:
        """Mean over scorable completions of one component (or of the total)."""
        values = [v for v in (self.total if name is None else self.components[name]) if v is not None]
        return sum(values) / len(values) if values else None

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per completion (what ``python -m rewards.score`` writes)."""
        return [{"total": self.total[i], **{k: v[i] for k, v in self.components.items()},
                 "reasons": {k: r[i] for k, r in self.reasons.items() if r[i] is not None},
                 "program_mode": self.modes[i], "confidence": self.confidences[i] if self.confidences else None,
                 "execution": self.records[i]} for i in range(len(self))]


#: End-of-turn / end-of-text tokens a decoder may leave at the end of a completion (decoded
#: without ``skip_special_tokens``): not the model's text, so not a format fault.
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "</s>", "<eos>")


def strip_end_tokens(text: str) -> str:
    """``text`` without the end-of-turn tokens (:data:`END_TOKENS`) it ends with."""
    stripped = text.rstrip()
    while True:
        token = next((t for t in END_TOKENS if stripped.endswith(t)), None)
        if token is None:
            return stripped if stripped != text.rstrip() else text
        stripped = stripped[: -len(token)].rstrip()


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or a chat (TRL's conversational form, a list of
    messages) whose last assistant message is the text; trailing end-of-turn tokens
    (:data:`END_TOKENS`) removed."""
    if isinstance(completion, str):
        return strip_end_tokens(completion)
    if isinstance(completion, dict) and "content" in completion:  # one message
        completion = [completion]
    if isinstance(completion, Sequence) and completion and all(isinstance(m, dict) for m in completion):
        for message in reversed(completion):
            if message.get("role", "assistant") == "assistant":
                content = message.get("content")
                if content is None:
                    return ""
                if isinstance(content, list):  # content parts
                    return strip_end_tokens("".join(p if isinstance(p, str) else str(p.get("text") or "")
                                                    for p in content
                                                    if isinstance(p, str) or (isinstance(p, dict)
                                                                              and p.get("type", "text") == "text")))
                return strip_end_tokens(str(content))
        raise TypeError("a conversational completion must contain an assistant message; got roles "
                        f"{[m.get('role') for m in completion]}")
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


MODE_LABELS = ("native", "program")


def _row_error(i: int, row: dict[str, Any], column: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"row {i} ({row.get('id', 'no id')!r}): column {column!r} {problem}; {fix}")


def _choices_of(i: int, row: dict[str, Any]) -> list[str]:
    """The row's option texts in letter order: a list, or a dict keyed by the option letters."""
    choices = row["choices"]
    if isinstance(choices, dict):
        keys = [str(k).strip().strip("()[].").strip().upper() for k in choices]
        if sorted(keys) != list(OPTION_LETTERS[:len(keys)]):
            raise _row_error(i, row, "choices", f"is a dict with keys {list(choices)[:8]}",
                             "a dict of choices must be keyed by the option letters A, B, ...; or give a list "
                             "of option texts in letter order")
        by_letter = dict(zip(keys, choices.values()))
        choices = [by_letter[k] for k in OPTION_LETTERS[:len(keys)]]
    if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
        raise _row_error(i, row, "choices", f"is a {type(choices).__name__}",
                         "give the option texts as a list in letter order (as data_synthesis exports them)")
    if not 2 <= len(choices) <= len(OPTION_LETTERS) or not all(isinstance(c, str) for c in choices):
        raise _row_error(i, row, "choices", f"is {list(choices)[:8]!r}",
                         f"give 2 to {len(OPTION_LETTERS)} option texts (strings) in letter order")
    return list(choices)


def _solution_of(i: int, row: dict[str, Any], choices: list[str]) -> str:
    """The row's ground truth as an option letter: a letter in any usual spelling (``"B"``,
    ``"b"``, ``"(B)"``, ``"B."``) or the exact text of one choice. An index is refused: 0- and
    1-based readings disagree."""
    solution = row["solution"]
    if isinstance(solution, str):
        letter = normalise_letter(solution, len(choices))
        if letter is not None:
            return letter
        matches = [OPTION_LETTERS[k] for k, c in enumerate(choices) if c.strip().lower() == solution.strip().lower()]
        if len(matches) == 1:
            return matches[0]
    raise _row_error(i, row, "solution", f"is {solution!r}, not one of the option letters "
                     f"{', '.join(OPTION_LETTERS[:len(choices)])} (nor the text of exactly one choice)",
                     "give the ground truth as the option letter (an index is ambiguous: 0- or 1-based)")


def _mode_label_of(i: int, row: dict[str, Any]) -> str:
    label = row["mode_label"]
    value = label.strip().lower() if isinstance(label, str) else None
    if value not in MODE_LABELS:
        raise _row_error(i, row, "mode_label", f"is {label!r}", f"the oracle mode label m* is one of {MODE_LABELS}")
    return value


def _check_rows(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Check the columns the components read and return the rows with them in canonical form:
    ``choices`` a list of option texts, ``solution`` an option letter, ``mode_label`` native or
    program. A missing or unusable column is an error naming the row, the column and the fix."""
    checked: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"row {i} is a {type(row).__name__}; each row is a dict of GRPO columns")
        missing = [c for name in names for c in _ROW_COLUMNS.get(name, ()) if row.get(c) in (None, "", [], {})]
        if missing:
            raise ValueError(
                f"row {i} ({row.get('id', 'no id')!r}) lacks column(s) {sorted(set(missing))} that the "
                f"{', '.join(names)} reward(s) read; score GRPO rows as data_synthesis exports them "
                "(videos, question, choices, solution, mode_label, duration, subtitles)")
        row = dict(row)
        if "mode" in names:
            row["mode_label"] = _mode_label_of(i, row)
        if "accuracy" in names:
            row["choices"] = _choices_of(i, row)
            row["solution"] = _solution_of(i, row, row["choices"])
            videos = row["videos"]
            if isinstance(videos, str):
                row["videos"] = videos = [videos]
            if not isinstance(videos, (list, tuple)) or not all(isinstance(v, str) and v for v in videos):
                raise _row_error(i, row, "videos", f"is {videos!r}", "give a list with the video's path")
            if not Path(videos[0]).is_file():  # else every program would fail on it: 0s that say nothing
                raise _row_error(i, row, "videos", f"names {videos[0]!r}, which is not a file",
                                 "the programs run on the row's video: fix the path (absolute, or relative to "
                                 "the working directory) or restore the file")
            duration = row.get("duration")
            if duration not in (None, ""):
                try:
                    row["duration"] = float(duration)
                except (TypeError, ValueError):
                    row["duration"] = math.nan
                if not (math.isfinite(row["duration"]) and row["duration"] > 0):
                    raise _row_error(i, row, "duration", f"is {duration!r}",
                                     "give the video length in seconds the program runs with, or leave it out "
                                     "to have it probed from the video")
            else:
                row["duration"] = None
        checked.append(row)
    if "accuracy" in names:
        # The module library keeps one subtitle file per video, registered before each program
        # runs; programs of one step run concurrently, so rows sharing a video must agree on it.
        subtitles: dict[str, tuple[int, Any]] = {}
        for i, row in enumerate(checked):
            video = str(Path(row["videos"][0]).resolve())
            first = subtitles.setdefault(video, (i, row.get("subtitles") or None))
            if first[1] != (row.get("subtitles") or None):
                raise _row_error(i, row, "subtitles", f"is {row.get('subtitles')!r} but row {first[0]} gives "
                                 f"{first[1]!r} for the same video",
                                 "rows of one step that share a video must name the same subtitles; score the "
                                 "two settings in separate calls")
    return checked


def _serialised(fn: Callable[..., Any], lock: threading.Lock) -> Callable[..., Any]:
    from inference.budget import not_charged

    @functools.wraps(fn)  # the sandbox binds arguments by the wrapped signature
    def call(*args: Any, **kwargs: Any) -> Any:
        with not_charged():  # waiting for another execution's call is not this program's module time
            lock.acquire()
        try:
            return fn(*args, **kwargs)
        finally:
            lock.release()
    return call


class RewardScorer:
    """The execution side of the rewards, built once and reused across steps.

    Args:
        config: the reward settings.
        runtime: the module library programs call (``inference.modules.ModuleRuntime``); built
            from ``config.module_config`` when ``None``.
        vlm: the VLM that answers the programs' VLM module calls when ``config.answering_vlm``
            is ``policy`` (the GRPO loop passes the policy at its current weights).
    """

    def __init__(self, config: RewardConfig, *, runtime: Any = None, vlm: Any = None) -> None:
        from inference.backends.batching import BatchingVLM
        from inference.call_cache import CallCache
        from inference.modules import ModuleConfig, ModuleRuntime
        from inference.sandbox import ProgramExecutor, SandboxLimits

        self.config = config
        needs_execution = any(REWARDS[name].needs_execution for name in config.reward_funcs)
        if config.answering_vlm == "policy" and vlm is None and needs_execution:
            raise ValueError("answering_vlm='policy' needs the policy's VLM (vlm=...; the GRPO loop passes it); "
                             "to answer with a fixed endpoint or checkpoint set answering_vlm='module_config' "
                             "and give module_config (vlm_backend openai + vlm_base_url, or transformers + "
                             "vlm_checkpoint)")
        if runtime is None:
            from inference.config import load_yaml_overrides

            values = load_yaml_overrides(config.module_config, ModuleConfig) if config.module_config else {}
            runtime = ModuleRuntime(ModuleConfig(**values))
        self.runtime = runtime
        self.batching: BatchingVLM | None = None
        answering = vlm if config.answering_vlm == "policy" else None
        if config.batch_vlm_calls and needs_execution:
            base = answering if answering is not None else runtime.vlm
            self.batching = answering = BatchingVLM(base, window_s=config.vlm_batch_window_s,
                                                    max_batch=config.vlm_max_batch)
        if answering is not None:
            runtime.use_vlm(answering)
        self.executor = None
        if needs_execution:
            serial = threading.Lock()
            functions = {name: fn if name in VLM_MODULES else _serialised(fn, serial)
                         for name, fn in runtime.functions().items()}
            cache = CallCache(config.call_cache_dir or None) if config.use_call_cache else None
            # One limit for the program: its own compute (wall) and everything with module calls (total).
            limits = SandboxLimits(wall_time_s=min(SandboxLimits.wall_time_s, config.program_timeout_s),
                                   total_time_s=config.program_timeout_s)
            self.executor = ProgramExecutor(functions, workers=config.exec_workers, cache=cache, limits=limits,
                                            video_context=runtime.subtitle_identity, concurrent_module_calls=True)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()

    def cache_identity(self) -> str:
        """The answering backends' identity now (the policy's weights version moves every step)."""
        return json.dumps(self.runtime.identity(), sort_keys=True)

    # -- one step ----------------------------------------------------------------------------
    def execute(self, row: dict[str, Any], code: str) -> ExecutionRecord:
        video = row["videos"][0]
        # Every row says which subtitles its video has (none clears what an earlier row registered).
        self.runtime.register_subtitles(video, row.get("subtitles") or None)
        duration = row.get("duration")
        if duration is None:  # as the runner does: the program's duration global is the video's length
            duration = float(self.runtime.store.probe(video).duration)
        return self.executor.execute(code, video=video, question=row["question"], choices=list(row["choices"]),
                                     duration=float(duration),
                                     allowed_roots=self.runtime.program_roots(video))

    def score(self, rows: Sequence[dict[str, Any]], completions: Sequence[Any],
              truncated: Sequence[bool] | None = None) -> RewardBatch:
        if len(rows) != len(completions):
            raise ValueError(f"{len(completions)} completions for {len(rows)} rows: pass one row per completion "
                             "(a step's rows repeated G times)")
        if truncated is not None and len(truncated) != len(completions):
            raise ValueError(f"truncated has {len(truncated)} flags for {len(completions)} completions")
        names = list(self.config.reward_funcs)
        rows = _check_rows(rows, names)
        started = time.perf_counter()
        texts = [completion_text(c) for c in completions]
        samples = [Sample(row, text, analyse_output(text), bool(truncated[i]) if truncated else False)
                   for i, (row, text) in enumerate(zip(rows, texts))]
        parsed_s = time.perf_counter() - started
        timing: dict[str, float] = {"parse_s": parsed_s}
        if self.executor is not None:
            self.executor.cache_identity = self.cache_identity()
            runnable = [s for s in samples if s.analysis.runnable]
            batches_before = (self.batching.batches, self.batching.requests) if self.batching else (0, 0)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=max(1, min(self.config.exec_workers, len(runnable)))) as pool:
                records = list(pool.map(lambda s: self.execute(s.row, s.analysis.parsed.code), runnable))
                for _ in range(self.config.host_error_retries):
                    # A host error says nothing about the program: run it again (its module calls that
                    # did succeed come from the call cache) before calling the completion unscorable.
                    again = [i for i, r in enumerate(records) if r.host_error]
                    if not again:
                        break
                    retried = pool.map(lambda i: self.execute(runnable[i].row, runnable[i].analysis.parsed.code), again)
                    for i, record in zip(again, retried):
                        records[i] = record
                    timing["host_error_retries"] = timing.get("host_error_retries", 0.0) + len(again)
            for sample, record in zip(runnable, records):
                sample.execution = record
            timing["execute_s"] = time.perf_counter() - t0
            timing["module_calls"] = float(sum(len(r.module_calls) for r in records))
            timing["module_calls_computed"] = float(sum(r.cache_misses for r in records))
            if self.batching is not None:
                timing["vlm_batches"] = float(self.batching.batches - batches_before[0])
                timing["vlm_requests"] = float(self.batching.requests - batches_before[1])
        components: dict[str, list[float | None]] = {}
        reasons: dict[str, list[str | None]] = {}
        counters: Counter[str] = Counter()
        for name in names:
            scores: list[Score] = [REWARDS[name](s) for s in samples]
            components[name] = [s.value for s in scores]
            reasons[name] = [s.reason for s in scores]
            counters.update(f"{name}/{s.category}" for s in scores if s.category)
        weights = self.config.weights
        total: list[float | None] = []
        failures: list[str | None] = []
        for i in range(len(samples)):
            values = [components[n][i] for n in names]
            total.append(None if any(v is None for v in values)
                         else math.fsum(weights[n] * v for n, v in zip(names, values)))  # type: ignore[operator]
            failures.append(next((f"{n}: {reasons[n][i]}" for n in names if reasons[n][i]), None))
        counters["unscorable"] = sum(1 for t in total if t is None)
        if counters["unscorable"]:
            first = next(f for f, t in zip(failures, total) if t is None)
            logger.warning("rewards: %d of %d completions are unscorable (left out of the advantage), e.g. %s",
                           counters["unscorable"], len(total), first)
        timing["total_s"] = time.perf_counter() - started
        return RewardBatch(components=components, weights=weights, total=total, reasons=reasons,
                           failures=failures, records=[s.execution.to_dict() if s.execution else None for s in samples],
                           modes=[s.analysis.mode if s.analysis.parsed.code is not None else None for s in samples],
                           confidences=[effective_confidence(s.execution, self.config.trust_program_confidence)
                                        for s in samples],
                           counters=dict(counters), timing=timing)


_SCORERS: dict[tuple[Any, ...], RewardScorer] = {}
_SCORERS_LOCK = threading.Lock()


def _scorer_for(config: RewardConfig, runtime: Any, vlm: Any) -> RewardScorer:
    key = (json.dumps({k: getattr(config, k) for k in config.__dataclass_fields__}, sort_keys=True, default=str),
           id(runtime), id(vlm))
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            scorer = _SCORERS[key] = RewardScorer(config, runtime=runtime, vlm=vlm)
        return scorer


def score_completions(rows: Sequence[dict[str, Any]], completions: Sequence[Any], config: RewardConfig | None = None,
                      *, runtime: Any = None, vlm: Any = None, truncated: Sequence[bool] | None = None,
                      scorer: RewardScorer | None = None) -> RewardBatch:
    """Score ``completions`` (``rows[i]`` is completion ``i``'s GRPO row); see the module docstring.

    ``truncated[i]`` marks completions cut at the token budget (format 0). ``scorer`` reuses a
    :class:`RewardScorer`; otherwise one is built for (config, runtime, vlm) on first use and kept.
    """
    config = config or RewardConfig()
    scorer = scorer or _scorer_for(config, runtime, vlm)
    return scorer.score(rows, completions, truncated)
