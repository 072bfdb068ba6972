"""Batch evaluation: every question of a benchmark through the runner, resumably, in parallel.

    cfg = EvalConfig(benchmark="lvbench", root="/data/LVBench", output_dir="runs/lvbench",
                     api_base=["http://node1:8007/v1", "http://node2:8007/v1"], num_workers=16)
    evaluate(cfg, ModuleConfig(clip_dir="/scratch/clips"))

**Paradigms** (the paper's Table 2; ``paradigm``):

* ``native`` — Native VideoLLM: ``query_native`` only. The runner executes the native program
  (:data:`inference.prompts.NATIVE_PROGRAM`, Fig. 10) in the sandbox as a ``given`` round, no
  refinement, so the record has the same shape as the others (policy output tokens: 0).
* ``program`` — Multi-step Visual Program: the policy must write a program. Our choice (the paper
  does not publish this prompt): the adaptive prompt with its native option removed
  (:func:`inference.prompts.render_program_only_prompt`); if the policy still answers with a
  lone ``query_native`` it is re-asked (``program_only_retries`` times, with a reminder) and
  the discarded outputs are kept in the record; no refinement.
* ``adaptive`` — Adaptive Reasoning: the adaptive prompt (Fig. 9), ``max_refine_rounds`` 0.
* ``adaptive_refine`` — + Refine, the paper's default: 1 refinement round.

**Results.** ``<output_dir>/results.jsonl`` (``results.shard-i-of-n.jsonl`` for a shard): one JSON
line per question, appended and fsynced when the question finishes (a line is complete or a
torn last line that a restart ignores), holding the whole :class:`~inference.runner.RunResult`
(every round: prompt, output, program, execution record, timings, tokens). A rerun skips ids
already there, so a killed run resumes with no duplicate and no lost line. Beside it,
``provenance[.shard-i-of-n].json``: checkpoint or served model, dataset file hashes, loader
settings, prompt version, frame policy, sampling settings, seed, git commit. A rerun whose
settings differ from the recorded provenance is refused (``force`` overrides), so results of
different settings are never mixed. :func:`merge_shards` combines shard files into one.

**Parallelism.** ``num_workers`` questions run at once on a thread pool. Several endpoints
(data-parallel ``vllm serve`` replicas of one model) are used round-robin per question; each
endpoint has its own module runtime and sandbox executor (``num_workers`` sandbox processes at
most, started on demand); the video store, the heavy retrieval models and the module-call cache
are shared. With an in-process checkpoint the model is used by one thread at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.config import config_field
from inference.evaluation.benchmarks import BenchmarkData, load_benchmark
from inference.jsonl_io import (
    AppendLog,
    in_shard,
    parse_shard,
    read_jsonl_tolerant,
    shard_name,
    write_jsonl_atomic,
    write_text_atomic,
)
from inference.types import QARecord

PARADIGMS = ("native", "program", "adaptive", "adaptive_refine")
RESULTS_FORMAT = "videopro-eval-results/1"
#: Provenance keys that must agree for a run to resume into, or be merged with, existing results.
FINGERPRINT_KEYS = ("format", "benchmark", "split", "dataset_files", "loader_settings", "paradigm", "runner",
                    "seed", "prompt_version", "model", "frame_policy", "records")


@dataclass
class EvalConfig:
    """``videopro-eval run``: which benchmark, which model, which paradigm, where results go."""

    benchmark: str = config_field(None, "Benchmark name: lvbench, videomme, longvideobench, mlvu, cgbench (required).")
    root: str = config_field(
        None, "Folder of the benchmark's download (docs/evaluation.md shows each layout; required).")
    split: str | None = config_field(
        None, "Split (default: the one the paper reports: LongVideoBench val, MLVU test, CG-Bench mini).")
    output_dir: str = config_field(None, "Folder for results.jsonl, provenance.json and reports (required).")
    paradigm: str = config_field(
        "adaptive_refine", "native | program | adaptive | adaptive_refine (paper default: adaptive reasoning + 1 "
                           "refinement round, RunnerConfig max_refine_rounds; the other paradigms never refine).")
    api_base: list[str] = config_field(
        None, "Base URL(s) of OpenAI-compatible servers (data-parallel replicas of one model; several URLs or one "
              "comma-separated value), used round-robin per question. Default: $VIDEOPRO_API_BASE, else "
              "--vlm_base_url.", factory=list)
    model: str | None = config_field(None, "Served model name (default: $VIDEOPRO_MODEL, else ask the server).")
    checkpoint: str | None = config_field(
        None, "Run this local checkpoint in-process (transformers) instead of a server.")
    num_workers: int = config_field(4, "Questions evaluated in parallel.")
    shard: str = config_field(
        "0/1", "Evaluate shard i of n ('i/n'): ids are assigned to shards by a stable hash; combine the shard files "
               "with `videopro-eval merge`.")
    limit: int | None = config_field(None, "Evaluate only the first N records of the (sharded) split.")
    ids: list[str] = config_field(None, "Evaluate only these record ids.", factory=list)
    program_only_retries: int = config_field(
        1, "paradigm=program: re-ask this many times when the policy answers with query_native alone.")
    program_timeout_s: float = config_field(
        1800.0, "Wall-clock limit of one program in the sandbox, module calls included.")
    call_cache_dir: str | None = config_field(
        None, "Module-call cache folder (default <output_dir>/call_cache; 'none' disables the disk cache).")
    concurrent_module_calls: bool | None = config_field(
        None, "Let programs of different questions call modules at the same time (default: yes for served models, "
              "no in-process).")
    max_consecutive_host_errors: int = config_field(
        20, "Stop the run (finished lines stay) after this many questions in a row failed for reasons outside the"
            " program, e.g. a dead endpoint; 0: never stop.")
    retry_errors: bool = config_field(
        False, "Re-run questions whose stored line is an error (host failure, unreadable video) instead of skipping "
               "them.")
    force: bool = config_field(False, "Resume even if the stored provenance differs from these settings.")
    quiet: bool = config_field(False, "No progress display.")
    # --- loader options (only the ones the benchmark knows are passed)
    video_map: str | None = config_field(None, "LVBench: a key -> video file map (JSON object or CSV key,path).")
    videomme_subset: str = config_field("long", "Video-MME subset by duration label: long (paper), medium, short, all.")
    videomme_min_duration_s: float | None = config_field(
        None, "Video-MME: select by probed video length >= this many seconds instead of the label.")
    require_video: bool = config_field(True, "Skip (and report) questions whose video file is missing.")
    training_files: list[str] = config_field(
        None, "CG-Bench: synthesis outputs (SFT/GRPO rows, QA JSONL, or folders) to check for video overlap with "
              "the evaluated questions.", factory=list)

    def __post_init__(self) -> None:
        flat: list[str] = []
        for value in self.api_base or []:
            flat += [v.strip() for v in str(value).split(",") if v.strip()]
        self.api_base = flat

    def refine_rounds(self, runner: Any) -> int:
        """Refinement rounds of this paradigm: the runner's (paper: 1) for adaptive_refine, else 0."""
        return int(runner.max_refine_rounds) if self.paradigm == "adaptive_refine" else 0

    def validate(self) -> None:
        missing = [n for n in ("benchmark", "root", "output_dir") if not getattr(self, n)]
        if missing:
            raise ValueError(f"missing required setting(s): {', '.join('--' + m for m in missing)}")
        if self.paradigm not in PARADIGMS:
            raise ValueError(f"paradigm {self.paradigm!r}: choose one of {', '.join(PARADIGMS)}")
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.checkpoint and self.api_base:
            raise ValueError("pass either --checkpoint (in-process) or --api_base (served), not both")
        parse_shard(self.shard)

    def loader_options(self, benchmark: str) -> dict[str, Any]:
        options: dict[str, Any] = {"require_video": self.require_video}
        if benchmark == "lvbench":
            options["video_map"] = self.video_map
        if benchmark == "videomme":
            options.update(subset=self.videomme_subset, min_duration_s=self.videomme_min_duration_s)
        if benchmark == "cgbench" and self.training_files:
            options["training_files"] = list(self.training_files)
        return options


# ------------------------------------------------------------------------------ file names

def results_path(output_dir: str | Path, shard: tuple[int, int] = (0, 1)) -> Path:
    suffix = "" if shard == (0, 1) else f".{shard_name(shard)}"
    return Path(output_dir) / f"results{suffix}.jsonl"


def provenance_path(output_dir: str | Path, shard: tuple[int, int] = (0, 1)) -> Path:
    suffix = "" if shard == (0, 1) else f".{shard_name(shard)}"
    return Path(output_dir) / f"provenance{suffix}.json"


# ------------------------------------------------------------------------------ policy wrappers

def derive_seed(base: int, question_id: str, call: int) -> int:
    import hashlib

    digest = hashlib.sha256(f"{base}:{question_id}:{call}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class SeededPolicy:
    """The policy for one question: every ``generate`` gets a seed derived from the run's seed,
    the question id and the call number, so sampling does not depend on worker scheduling."""

    def __init__(self, policy: Any, seed: int, question_id: str) -> None:
        self.policy, self.seed, self.question_id = policy, seed, question_id
        self.calls = 0

    def generate(self, prompt: Any = None, **kwargs: Any) -> Any:
        base = self.seed if kwargs.get("seed") is None else int(kwargs["seed"])
        kwargs["seed"] = derive_seed(base, self.question_id, self.calls)
        self.calls += 1
        return self.policy.generate(prompt, **kwargs)

    def identity(self) -> str:
        return self.policy.identity() if hasattr(self.policy, "identity") else type(self.policy).__name__


class SerializedVLM:
    """An in-process model used by one thread at a time (transformers models are not re-entrant)."""

    def __init__(self, vlm: Any) -> None:
        self.vlm = vlm
        self._lock = threading.RLock()
        self.name = getattr(vlm, "name", "serialized")

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self.vlm.generate(*args, **kwargs)

    def answer(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self.vlm.answer(*args, **kwargs)

    def identity(self) -> str:
        return self.vlm.identity()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.vlm, name)


# ------------------------------------------------------------------------------ provenance

def git_commit(path: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(path or Path(__file__).resolve().parents[2]),
                             capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=str(path or Path(__file__).resolve().parents[2]),
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def served_model_info(base_url: str, model: str | None, api_key: str = "EMPTY") -> dict[str, Any]:
    """Name and root (the checkpoint path vLLM reports) of the model served at ``base_url``."""
    try:
        from openai import OpenAI

        client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=30, max_retries=1)
        models = client.models.list().data
    except Exception as exc:  # provenance is best effort; the run itself reports endpoint failures
        return {"base_url": base_url, "model": model, "error": f"{type(exc).__name__}: {exc}"}
    chosen = next((m for m in models if m.id == model), models[0] if models else None)
    if chosen is None:
        return {"base_url": base_url, "model": model, "error": "the server lists no model"}
    extra = getattr(chosen, "model_extra", None) or {}
    return {"base_url": base_url, "model": chosen.id, "root": getattr(chosen, "root", None) or extra.get("root"),
            "max_model_len": extra.get("max_model_len")}


def fingerprint(provenance: dict[str, Any]) -> dict[str, Any]:
    """The provenance keys that decide what the results mean (not where or how fast they ran:
    endpoints, workers, host and shard may differ between a run and its resumption)."""
    out = {k: provenance.get(k) for k in FINGERPRINT_KEYS}
    if isinstance(out.get("model"), dict):
        out["model"] = {k: v for k, v in out["model"].items() if k not in ("endpoints", "endpoint_errors")}
    return out


def fingerprint_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = fingerprint(old), fingerprint(new)
    return [k for k in FINGERPRINT_KEYS if json.dumps(a[k], sort_keys=True, default=str)
            != json.dumps(b[k], sort_keys=True, default=str)]


# ------------------------------------------------------------------------------ the evaluator

@dataclass
class EndpointContext:
    """One model endpoint's module runtime, policy and sandbox executor."""

    label: str
    runtime: Any
    policy: Any
    executor: Any


@dataclass
class EvalOutcome:
    """What :func:`evaluate` did."""

    results_path: Path
    provenance_path: Path
    total: int
    already_done: int
    ran: int
    errors: int
    wall_time_s: float
    rows: list[dict[str, Any]] = field(default_factory=list)


def effective_runner_config(cfg: EvalConfig, runner: Any) -> Any:
    """The runner settings of this paradigm (refinement rounds forced to 0 except for adaptive_refine)."""
    return dataclasses.replace(runner, max_refine_rounds=cfg.refine_rounds(runner))


def _endpoint_labels(cfg: EvalConfig, modules: Any) -> list[str]:
    if cfg.checkpoint or modules.vlm_backend == "transformers":
        return [f"in-process:{cfg.checkpoint or modules.vlm_checkpoint}"]
    bases = cfg.api_base or [os.environ.get("VIDEOPRO_API_BASE") or modules.vlm_base_url]
    return bases


def build_contexts(cfg: EvalConfig, modules: Any, *, policy: Any = None, cache: Any = None) -> list[EndpointContext]:
    """The module runtime + policy + executor of every endpoint (see the module docstring)."""
    from inference.modules import ModuleRuntime
    from inference.sandbox import ProgramExecutor, SandboxLimits

    modules = dataclasses.replace(modules)
    if cfg.checkpoint:
        modules.vlm_backend, modules.vlm_checkpoint = "transformers", cfg.checkpoint
    in_process = modules.vlm_backend == "transformers"
    if not in_process:
        modules.vlm_model = cfg.model or os.environ.get("VIDEOPRO_MODEL") or modules.vlm_model
    concurrent = cfg.concurrent_module_calls if cfg.concurrent_module_calls is not None else not in_process
    limits = SandboxLimits(total_time_s=cfg.program_timeout_s)
    contexts: list[EndpointContext] = []
    shared_store = None
    identity: str | None = None
    for label in _endpoint_labels(cfg, modules):
        endpoint_cfg = dataclasses.replace(modules)
        if not in_process:
            endpoint_cfg.vlm_base_url = label
        runtime = ModuleRuntime(endpoint_cfg, store=shared_store)
        shared_store = runtime.store
        if in_process:
            runtime = ModuleRuntime(endpoint_cfg, store=shared_store, vlm=SerializedVLM(runtime.vlm))
        # Replicas serve one model: they share the call cache, keyed by the first endpoint's identity.
        identity = identity or json.dumps(runtime.identity(), sort_keys=True)
        executor = ProgramExecutor(runtime.functions(), limits=limits, workers=cfg.num_workers, cache=cache,
                                   cache_identity=identity, video_context=runtime.subtitle_identity,
                                   concurrent_module_calls=concurrent)
        contexts.append(EndpointContext(label, runtime, policy if policy is not None else runtime.vlm, executor))
    return contexts


def build_provenance(cfg: EvalConfig, runner: Any, modules: Any, data: BenchmarkData, all_ids: list[str],
                     contexts: Sequence[EndpointContext], argv: Sequence[str] | None = None,
                     policy_identity: str | None = None) -> dict[str, Any]:
    from inference.backends.vlm import weights_version
    from inference.prompts import PROMPT_VERSION

    in_process = cfg.checkpoint or modules.vlm_backend == "transformers"
    if in_process:
        checkpoint = cfg.checkpoint or modules.vlm_checkpoint
        model: dict[str, Any] = {"backend": "transformers", "checkpoint": str(checkpoint),
                                 "weights_version": weights_version(str(checkpoint))}
    else:
        served = [served_model_info(c.label, cfg.model or modules.vlm_model, modules.vlm_api_key) for c in contexts]
        model = {"backend": "openai", "model": served[0].get("model"), "root": served[0].get("root"),
                 "endpoints": [c.label for c in contexts]}
        if any("error" in s for s in served):
            model["endpoint_errors"] = {s["base_url"]: s["error"] for s in served if "error" in s}
    if policy_identity:
        model["policy"] = policy_identity  # the programs came from another writer than the answering model
    frame_policy = {k: getattr(modules, k) for k in ("video_fps", "video_min_frames", "video_max_frames",
                                                     "video_min_pixels", "video_max_pixels", "video_patch_factor",
                                                     "max_query_frames", "frame_max_pixels")}
    summary = data.summary()
    return {
        "format": RESULTS_FORMAT,
        "benchmark": data.benchmark, "split": data.split, "root": str(Path(cfg.root).resolve()),
        "dataset_files": summary["files"], "loader_settings": data.settings,
        "load_summary": {k: summary[k] for k in ("records", "labelled", "skipped", "unscorable",
                                                 "skipped_by_reason", "unscorable_by_reason", "notes")},
        "breakdowns": data.breakdowns,
        "records": {"count": len(all_ids)}, "all_ids": all_ids,
        "paradigm": cfg.paradigm,
        "runner": {**dataclasses.asdict(runner),
                   "program_only_retries": cfg.program_only_retries if cfg.paradigm == "program" else None,
                   "program_timeout_s": cfg.program_timeout_s},
        "seed": runner.seed if runner.seed is not None else 0, "prompt_version": PROMPT_VERSION, "model": model,
        "frame_policy": frame_policy,
        "module_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(modules).items()},
        "shard": cfg.shard, "num_workers": cfg.num_workers,
        "git_commit": git_commit(), "host": socket.gethostname(), "python": platform.python_version(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(argv) if argv is not None else sys.argv[1:],
    }


def select_records(data: BenchmarkData, cfg: EvalConfig) -> tuple[list[QARecord], list[str]]:
    """The records this run (shard, ids, limit) covers, and all ids of the split in load order."""
    all_ids = [r.id for r in data.records]
    shard = parse_shard(cfg.shard)
    records = [r for r in data.records if in_shard(r.id, shard)]
    if cfg.ids:
        wanted = set(cfg.ids)
        unknown = sorted(wanted - set(all_ids))
        if unknown:
            raise ValueError(f"--ids not in {data.benchmark}/{data.split}: {unknown[:5]}")
        records = [r for r in records if r.id in wanted]
    if cfg.limit is not None:
        records = records[: cfg.limit]
    return records, all_ids


def _row_meta(record: QARecord, breakdowns: Sequence[str]) -> dict[str, Any]:
    keep = set(breakdowns) | {"video_uid", "question_id", "clue_intervals", "subtitle_offset_s"}
    return {k: v for k, v in (record.meta or {}).items() if k in keep}


class QuestionRunner:
    """Runs one question in the configured paradigm and turns what happened into a result line."""

    def __init__(self, cfg: EvalConfig, runner: Any, data: BenchmarkData, shard: tuple[int, int]) -> None:
        self.cfg, self.runner_config, self.data, self.shard = cfg, runner, data, shard
        self.seed = runner.seed if runner.seed is not None else 0

    def __call__(self, record: QARecord, ctx: EndpointContext, endpoint_index: int) -> dict[str, Any]:
        from inference.errors import VideoInputError
        from inference.runner import AdaptiveRunner
        from inference.scoring import is_correct

        start = time.perf_counter()
        row: dict[str, Any] = {
            "id": record.id, "benchmark": self.data.benchmark, "split": self.data.split,
            "paradigm": self.cfg.paradigm, "ground_truth": record.answer, "num_choices": len(record.choices),
            "meta": _row_meta(record, self.data.breakdowns), "endpoint": endpoint_index,
            "shard": self.cfg.shard, "status": "ok"}
        policy = SeededPolicy(ctx.policy, self.seed, record.id)
        runner = AdaptiveRunner(policy, ctx.executor, ctx.runtime, self.runner_config)
        try:
            ctx.runtime.register_subtitles(record.video, record.subtitles,
                                           offset_s=float((record.meta or {}).get("subtitle_offset_s") or 0.0))
            if self.cfg.paradigm == "native":
                from inference.prompts import NATIVE_PROGRAM

                result = runner.run(record.video, record.question, record.choices, code=NATIVE_PROGRAM,
                                    question_id=record.id, ground_truth=record.answer)
            elif self.cfg.paradigm == "program":
                result, discarded = self._program_only(runner, policy, ctx, record)
                if discarded:
                    row["program_only_discarded"] = discarded
            else:
                result = runner.run(record.video, record.question, record.choices, question_id=record.id,
                                    ground_truth=record.answer)
        except Exception as exc:  # the line records it; the batch goes on
            row.update(status="error", error_type=type(exc).__name__, error=str(exc)[:4000],
                       error_kind="input" if isinstance(exc, VideoInputError) else "host",
                       answer="", correct=False if record.answer else None)
        else:
            row["answer"] = result.answer
            row["correct"] = (is_correct(result.answer, record.answer, len(record.choices))
                              if record.answer else None)
            row["result"] = result.to_dict()
        row["wall_time_s"] = round(time.perf_counter() - start, 3)
        row["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return row

    def _program_only(self, runner: Any, policy: Any, ctx: EndpointContext, record: QARecord) -> tuple[Any, list]:
        from inference.programs import classify_mode, parse_model_output
        from inference.prompts import render_program_only_prompt

        discarded: list[dict[str, Any]] = []
        inputs = ctx.runtime.video_inputs(record.video)
        prompt = render_program_only_prompt(record.question, record.choices)
        generate_s = 0.0
        for attempt in range(self.cfg.program_only_retries + 1):
            t0 = time.perf_counter()
            rc = self.runner_config
            generation = policy.generate(prompt, max_new_tokens=rc.max_new_tokens, temperature=rc.temperature,
                                         top_p=rc.top_p, top_k=rc.top_k, seed=rc.seed, **inputs)
            generate_s = time.perf_counter() - t0
            parsed = parse_model_output(generation.text)
            native = bool(parsed.code) and classify_mode(parsed.code) == "native"
            if not native or attempt == self.cfg.program_only_retries:
                break
            discarded.append({"prompt_reminder": attempt > 0, "output": generation.text,
                              "completion_tokens": int(generation.num_tokens), "generate_s": round(generate_s, 3)})
            prompt = render_program_only_prompt(record.question, record.choices, reminder=True)
        # The runner executes the generated output as the round's program (its <code> block is
        # parsed out the same way); the round is then labelled as the generated round it is.
        result = runner.run(record.video, record.question, record.choices, code=generation.text if parsed.code else "",
                            question_id=record.id, ground_truth=record.answer)
        first = result.rounds[0]
        first.kind, first.prompt, first.output = "initial", prompt, generation.text
        first.planning, first.format_ok = parsed.planning or "", bool(parsed.format_ok)
        if not parsed.code:
            first.problems = list(parsed.problems)
        first.generate_s, first.completion_tokens = generate_s, int(generation.num_tokens)
        result.wall_time_s += generate_s + sum(d["generate_s"] for d in discarded)
        return result, discarded


def _prepare_log(path: Path, retry_errors: bool) -> dict[str, dict[str, Any]]:
    log_rows = {str(r["id"]): r for r in read_jsonl_tolerant(path)}
    if retry_errors and any(r.get("status") == "error" for r in log_rows.values()):
        kept = [r for r in read_jsonl_tolerant(path) if r.get("status") != "error"]
        write_jsonl_atomic(path, kept)
        log_rows = {str(r["id"]): r for r in kept}
    return log_rows


def evaluate(cfg: EvalConfig, modules: Any = None, runner: Any = None, *, policy: Any = None,
             data: BenchmarkData | None = None,
             argv: Sequence[str] | None = None, on_row: Callable[[dict[str, Any]], None] | None = None,
             collect_rows: bool = False) -> EvalOutcome:
    """Run (or resume) one evaluation. ``policy`` replaces the program-writing model (tests,
    replays); ``data`` skips loading; ``on_row`` sees each finished line (after it is on disk)."""
    from inference.call_cache import CallCache
    from inference.modules import ModuleConfig
    from inference.progress import Progress
    from inference.runner import RunnerConfig

    cfg.validate()
    modules = modules or ModuleConfig()
    runner = effective_runner_config(cfg, runner or RunnerConfig())
    shard = parse_shard(cfg.shard)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = load_benchmark(cfg.benchmark, cfg.root, cfg.split, **cfg.loader_options(cfg.benchmark))
    records, all_ids = select_records(data, cfg)
    cache_dir = cfg.call_cache_dir or str(out_dir / "call_cache")
    cache = CallCache(None if cache_dir.lower() == "none" else cache_dir)
    contexts = build_contexts(cfg, modules, policy=policy, cache=cache)
    try:
        res_path, prov_path = results_path(out_dir, shard), provenance_path(out_dir, shard)
        policy_identity = None
        if policy is not None:
            policy_identity = policy.identity() if hasattr(policy, "identity") else type(policy).__name__
        provenance = build_provenance(cfg, runner, modules, data, all_ids, contexts, argv, policy_identity)
        if prov_path.is_file():
            old = json.loads(prov_path.read_text(encoding="utf-8"))
            differences = fingerprint_differences(old, provenance)
            if differences and not cfg.force:
                raise SystemExit(f"error: {res_path} was written with other settings ({', '.join(differences)} "
                                 f"differ; see {prov_path}). Use a new --output_dir, or --force to resume anyway.")
            if differences:
                provenance["resumed_with_differences"] = differences
        write_text_atomic(prov_path, json.dumps(provenance, indent=2, ensure_ascii=False, default=str) + "\n")
        done = _prepare_log(res_path, cfg.retry_errors)
        todo = [r for r in records if r.id not in done]
        outcome = EvalOutcome(res_path, prov_path, total=len(records), already_done=len(records) - len(todo),
                              ran=0, errors=0, wall_time_s=0.0)
        if collect_rows:
            outcome.rows = [done[r.id] for r in records if r.id in done]
        question_runner = QuestionRunner(cfg, runner, data, shard)
        consecutive_host_errors = 0
        stop_reason: str | None = None
        start = time.perf_counter()
        log = AppendLog(res_path)
        log.load()
        resumed = f" ({outcome.already_done} done before)" if outcome.already_done else ""
        bar = Progress(total=len(todo), desc=f"{data.benchmark}/{cfg.paradigm}{resumed}", quiet=cfg.quiet, unit="q")
        pool = ThreadPoolExecutor(max_workers=cfg.num_workers, thread_name_prefix="eval")
        try:
            pending: set[Future] = set()
            queue = iter(enumerate(todo))

            def submit_next() -> bool:
                item = next(queue, None)
                if item is None:
                    return False
                k, record = item
                index = (outcome.already_done + k) % len(contexts)
                pending.add(pool.submit(question_runner, record, contexts[index], index))
                return True

            # A bounded window of submitted questions, so an interrupt leaves little queued work.
            for _ in range(cfg.num_workers * 2):
                if not submit_next():
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    pending.discard(fut)
                    row = fut.result()
                    log.append(row)
                    outcome.ran += 1
                    if row.get("correct"):
                        bar.count("correct")
                    if row["status"] == "error":
                        outcome.errors += 1
                    host_failed = (row.get("error_kind") == "host"
                                   or bool((row.get("result") or {}).get("host_error")))
                    consecutive_host_errors = consecutive_host_errors + 1 if host_failed else 0
                    if cfg.max_consecutive_host_errors and consecutive_host_errors >= cfg.max_consecutive_host_errors:
                        stop_reason = (f"{consecutive_host_errors} questions in a row failed outside the program "
                                       f"(last: {row.get('error') or row['result'].get('host_error')})"[:1000])
                    if collect_rows:
                        outcome.rows.append(row)
                    if on_row is not None:
                        on_row(row)
                    bar.advance(failed=row["status"] == "error")
                    if stop_reason is None:
                        submit_next()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            log.close()
        outcome.wall_time_s = time.perf_counter() - start
        if stop_reason is not None:
            raise SystemExit(f"error: stopped: {stop_reason}. Fix the endpoint/backend and rerun the same command "
                             f"with --retry_errors (finished lines in {res_path} are kept).")
        return outcome
    finally:
        for ctx in contexts:
            ctx.executor.close()


# ------------------------------------------------------------------------------ merge

def merge_shards(output_dir: str | Path, *, shard_dirs: Sequence[str | Path] = (), allow_missing: bool = False,
                 destination: str | Path | None = None) -> dict[str, Any]:
    """Combine ``results.shard-i-of-n.jsonl`` files (in ``output_dir`` and ``shard_dirs``) into
    ``results.jsonl`` (in load order) and one ``provenance.json``.

    Checks: every shard 0..n-1 is there, their provenance fingerprints agree, no id appears twice,
    every row belongs to its shard, and every id of the split has a row (``allow_missing`` lists
    the missing ones instead of failing).
    """
    folders = [Path(output_dir), *map(Path, shard_dirs)]
    found: dict[tuple[int, int], tuple[Path, Path]] = {}
    for folder in folders:
        for prov in sorted(folder.glob("provenance.shard-*-of-*.json")):
            tag = prov.name[len("provenance."):-len(".json")]
            parts = tag.split("-")  # shard-i-of-n
            shard = (int(parts[1]), int(parts[3]))
            res = folder / f"results.{tag}.jsonl"
            if shard in found and found[shard][0].resolve() != res.resolve():
                raise ValueError(f"shard {tag} found twice: {found[shard][0]} and {res}")
            found[shard] = (res, prov)
    if not found:
        raise FileNotFoundError(f"no provenance.shard-*-of-*.json under {', '.join(map(str, folders))}; run "
                                "`videopro-eval run --shard i/n` first")
    counts = {n for _, n in found}
    if len(counts) != 1:
        raise ValueError(f"shards of different splits n={sorted(counts)} cannot be merged")
    n = counts.pop()
    missing_shards = [i for i in range(n) if (i, n) not in found]
    if missing_shards:
        raise ValueError(f"shard(s) {missing_shards} of {n} are missing")
    provenances = {s: json.loads(found[s][1].read_text(encoding="utf-8")) for s in found}
    first = provenances[(0, n)]
    for s, prov in provenances.items():
        differences = fingerprint_differences(first, prov)
        if differences:
            raise ValueError(f"shard {s[0]}/{n} was run with other settings ({', '.join(differences)} differ)")
    rows: dict[str, dict[str, Any]] = {}
    duplicates: list[str] = []
    misplaced: list[str] = []
    for s in sorted(found):
        for row in read_jsonl_tolerant(found[s][0]):
            rid = str(row["id"])
            if rid in rows:
                duplicates.append(rid)
            if not in_shard(rid, s):
                misplaced.append(rid)
            rows.setdefault(rid, row)
    if duplicates:
        raise ValueError(f"id(s) {sorted(set(duplicates))[:5]} appear in more than one shard file")
    if misplaced:
        raise ValueError(f"id(s) {misplaced[:5]} are in a shard file they do not belong to")
    all_ids = list(first.get("all_ids") or [])
    unknown = sorted(set(rows) - set(all_ids))
    if unknown:
        raise ValueError(f"rows for ids not in the split: {unknown[:5]}")
    missing = [i for i in all_ids if i not in rows]
    if missing and not allow_missing:
        raise ValueError(f"{len(missing)} id(s) have no result (e.g. {missing[:5]}); finish the shards or pass "
                         "--allow_missing")
    dest = Path(destination) if destination else Path(output_dir)
    write_jsonl_atomic(results_path(dest), [rows[i] for i in all_ids if i in rows])
    merged = dict(first)
    merged.update(shard="merged", merged_from=[str(found[s][0]) for s in sorted(found)],
                  shard_created_at=[provenances[s].get("created_at") for s in sorted(found)],
                  missing_ids=missing)
    write_text_atomic(provenance_path(dest), json.dumps(merged, indent=2, ensure_ascii=False, default=str) + "\n")
    return {"results": str(results_path(dest)), "rows": len(rows), "missing": missing, "shards": n}
