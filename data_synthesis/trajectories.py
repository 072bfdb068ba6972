"""The synthesis stages: native labels, teacher programs, and R1-R4 trajectories.

Stage by stage (paper §3.6, A.2; DESIGN.md §2), for one shard of questions:

``label``     native answer + confidence per question -> oracle mode label m*.
``programs``  the teacher writes a program for each question (Fig. 9 prompt, module spec and
              few-shot examples, question and choices only); it is parsed and executed.
``r1``        m* = native: target = the Fig. 10 native program, verified by running it.
``r2``        m* = program: target = the teacher program that executed and answered correctly.
``r3``        teacher programs that failed at run time: the teacher repairs them from the error
              log (Fig. 11); kept when the repair executes and answers correctly.
``r4``        low-confidence or wrong native answers (Fig. 12) and programs (Fig. 13): the
              teacher revises them; kept when the revision executes and answers correctly.

R3/R4 revisions that fail again go back to the teacher, as the runner's refine loop would: a
crash with its error log (a bug-fix prompt), a wrong or unsure answer with a program-refine
prompt. The kept trajectory is the (prompt, revision) pair of the round that verified, and its
kind follows that prompt (so an R4 candidate fixed in a bug-fix round is an R3 sample).

Every stage writes one row per candidate (kept or not, with the reason) through
:class:`data_synthesis.sharding.StageFile`, so it resumes after a crash and its pass rate can be
reported. Kept rows carry their provenance: question id, source, teacher model, prompt hash,
request key, and the execution record that verified them.

Failures that say nothing about the question are not data. A native call that raises, or an
execution whose ``host_error`` is set (a module backend failed outside the program: endpoint
down, out of memory, sandbox start failure), or a program runner that raises, gets **no row**:
the stage counts and logs it, does not finish (so a rerun retries exactly those questions), and
stops early with an error naming the backend when too many fail (:class:`HostFailureBudget`).
An item that fails that way in ``max_item_attempts`` runs (counted across runs,
:class:`ItemAttempts`) is recorded instead: a row with ``status: host_error`` and the last
error, in no dataset, so a failure that recurs on every run cannot block the stage forever.
A teacher request the API refuses for its content (:class:`TeacherRejected`, e.g. a 400 content
filter) is different: the same request fails on every rerun, so it is that question's recorded
outcome (status / ``teacher_error``), unless so many are refused that the request itself is at
fault. Correctness is always :func:`inference.scoring.is_correct`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_synthesis.cache import text_hash
from data_synthesis.config import SynthesisConfig
from data_synthesis.labeling import NativeAnswerer, label_record
from data_synthesis.sharding import StageFile, shard_name, write_text_atomic
from data_synthesis.teacher import TeacherClient, TeacherRejected, TeacherReply
from data_synthesis.teacher_prompts import StudentPrompts, teacher_messages, teacher_system_prompt
from inference.confidence import TRUST_PROGRAM_CONFIDENCE, effective_confidence
from inference.progress import Progress
from inference.scoring import is_correct
from inference.types import ExecutionRecord, QARecord

log = logging.getLogger(__name__)

ProgramRunner = Callable[[str, QARecord], ExecutionRecord]

# Refinement types, named as in the released dataset's breakdown.
BUGGY_PROGRAM = "buggy_program"
LOW_CONF_NATIVE = "low_confidence_native"
LOW_CONF_PROGRAM = "low_confidence_program"


@dataclass
class SynthesisContext:
    """Everything a stage needs. Components a stage does not use may be ``None``."""

    records: list[QARecord]
    out_dir: Path
    shard: tuple[int, int]
    # The stage settings (thresholds, repair rounds, failure budgets, chunk size): read from the
    # config itself, never copied, so a new setting needs no plumbing here.
    config: SynthesisConfig = field(default_factory=SynthesisConfig)
    teacher: TeacherClient | None = None
    run_program: ProgramRunner | None = None
    native: NativeAnswerer | None = None
    prompts: StudentPrompts = field(default_factory=StudentPrompts)
    # Video length in seconds for records that lack it (the runtime's video store probe).
    duration_for: Callable[[str], float] | None = None
    # Named in errors when the native model fails (backend, endpoint, model).
    native_description: str = "the native model"

    def stage_file(self, stage: str) -> StageFile:
        return StageFile(self.out_dir / stage, self.shard)

    def progress(self, stage: str) -> Progress:
        """The stage's progress display: rows written, kept (verified), failed rows, transient
        host failures, and the teacher's running cost (``quiet`` silences it)."""
        def teacher_cost() -> dict[str, str]:
            if self.teacher is None:
                return {}
            return {"teacher": f"${self.teacher.meter.snapshot().get('_all', {}).get('cost_usd', 0.0):.2f}"}

        return Progress(None, f"{stage} [shard {self.shard[0]}/{self.shard[1]}]", quiet=self.config.quiet,
                        unit="q", extra=teacher_cost)

    def require(self, what: str) -> Any:
        value = getattr(self, what)
        if value is None:
            raise RuntimeError(f"this stage needs a {what} but none was configured")
        return value

    def system_prompt(self, *, refine: bool) -> str:
        # The adaptive prompt (Fig. 9) already holds the module spec and Fig. 8; refinement
        # prompts do not, so the teacher gets them in its system message.
        return teacher_system_prompt(self.config.num_few_shot, with_module_spec=refine)

    def duration(self, record: QARecord) -> float | None:
        """The video length programs see as ``duration``: what the program runner runs them with
        (``SandboxProgramRunner.duration_of``), else :func:`data_synthesis.runtime.video_duration`
        (the record's, else ``duration_for``). Rows record it, so export never re-derives it."""
        from data_synthesis.runtime import runner_duration, video_duration

        of = runner_duration(self.run_program)
        if of is not None:
            return of(record)
        return video_duration(record, self.duration_for)

    def rows_of(self, stage: str) -> dict[str, dict[str, Any]]:
        """Finished rows of an earlier stage (which must have completed for this shard)."""
        stage_file = self.stage_file(stage)
        if not stage_file.done:
            raise RuntimeError(f"stage {stage!r} has not finished for shard {self.shard[0]}/{self.shard[1]} "
                               f"({stage_file.final_path} is missing); run it first")
        return stage_file.load()


# ---------------------------------------------------------------------------------- helpers

def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]


def _answer(execution: ExecutionRecord | None, trust_program_confidence: bool) -> tuple[str | None, float]:
    """(answer letter, confidence) of an execution; the confidence is the effective one
    (:func:`inference.confidence.effective_confidence`: one the program stated itself counts
    as 0 unless ``trust_program_confidence``)."""
    if execution is None or not execution.success or execution.result is None:
        return None, 0.0
    confidence = effective_confidence(execution, trust_program_confidence)
    return (execution.result.answer or "").strip().upper() or None, 0.0 if confidence is None else confidence


def _run_checked(ctx: SynthesisContext, code: str, record: QARecord) -> ExecutionRecord:
    """Run a program. The executor reports program faults in the record and never raises for
    them, so a runner that raises (e.g. ``SandboxStartupError``) failed on the host: that
    becomes a record with ``host_error`` set, which no stage turns into data."""
    runner = ctx.require("run_program")
    try:
        return runner(code, record)
    except Exception as exc:  # noqa: BLE001 - marked host_error: counted, never written as data
        message = f"{type(exc).__name__}: {exc}"
        return ExecutionRecord(success=False, error_type=type(exc).__name__, error_message=str(exc),
                               host_error=message)


def host_error_of(execution: ExecutionRecord | None) -> str | None:
    """Why an execution failed outside the program (``ExecutionRecord.host_error``), if it did."""
    return execution.host_error if execution is not None else None


class StageFailures(RuntimeError):
    """A stage stopped (or could not finish) because of failures that are not data."""


class ItemAttempts:
    """Per-item count of runs in which an item failed outside the program, kept across runs in
    ``<out_dir>/<stage>/<shard>.attempts.json`` (written atomically; removed when the stage
    finishes, so deleting a stage's outputs starts its counts afresh)."""

    def __init__(self, path: Path):
        self.path = path
        self.counts: dict[str, dict[str, Any]] = {}
        if path.is_file():
            self.counts = json.loads(path.read_text(encoding="utf-8"))

    def add(self, item_id: str, message: str) -> int:
        entry = self.counts.setdefault(item_id, {"attempts": 0, "last_error": ""})
        entry["attempts"] += 1
        entry["last_error"] = message
        return entry["attempts"]

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.counts, indent=1, sort_keys=True) + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class HostFailureBudget:
    """Counts questions a stage could not process for reasons outside the question (native
    model or module backend failures). They get no row; the stage stops early when more than
    ``max_rate`` of them fail (judged once ``window`` have run) or ``window`` fail in a row,
    and cannot finish while any failed, so a rerun retries them.

    A run that gets to the end of the stage counts one attempt for each item that failed
    (:class:`ItemAttempts`); an item that has failed in ``max_attempts`` such runs is recorded
    instead (``finish(record_exhausted)`` writes its ``status: host_error`` row), so a failure
    that recurs on every run does not block the stage forever. A run stopped early by the rate
    check counts nothing (the backend, not the item, is suspect)."""

    def __init__(self, stage: str, backend: str, max_rate: float, window: int,
                 attempts: ItemAttempts | None = None, max_attempts: int = 3, progress: Progress | None = None):
        self.stage, self.backend, self.max_rate = stage, backend, max_rate
        self.progress = progress
        self.window = max(1, window)
        self.attempts = 0
        self.streak = 0
        self.failures: list[tuple[str, str]] = []
        self.item_attempts = attempts
        self.max_item_attempts = max(1, max_attempts)

    def ok(self) -> None:
        self.attempts += 1
        self.streak = 0

    def fail(self, item_id: str, message: str) -> None:
        self.attempts += 1
        self.streak += 1
        self.failures.append((item_id, message))
        if self.progress is not None:
            self.progress.count("host_failures")
        log.warning("%s: %s failed for %s (no row written; a rerun retries it): %s",
                    self.stage, self.backend, item_id, message)

    def _summary(self, failures: list[tuple[str, str]] | None = None) -> str:
        failures = self.failures if failures is None else failures
        distinct: list[str] = []
        for _, message in failures:
            if message not in distinct:
                distinct.append(message)
        examples = "; ".join(f"{m[:300]}" for m in distinct[:3])
        return (f"{len(failures)} of {self.attempts} attempted item(s) failed outside the program "
                f"({self.backend}), e.g. {', '.join(i for i, _ in failures[:3])}: {examples}")

    def check(self) -> None:
        """Stop the stage when the failures point at a broken backend rather than a bad item."""
        rate = len(self.failures) / self.attempts if self.attempts else 0.0
        if (self.window >= 2 and self.streak >= self.window) or (
                self.attempts >= self.window and rate > self.max_rate):
            raise StageFailures(
                f"stage {self.stage!r} stopped: {self._summary()}. More than "
                f"{self.max_rate:.0%} failing (or {self.window} in a row) means the backend is "
                f"not working - check {self.backend} (is the endpoint up, is there memory, does "
                "the sandbox start?) and rerun; finished rows are kept and failed ones are retried.")

    def finish(self, record_exhausted: Callable[[str, str, int], None] | None = None) -> None:
        """Count this run's failures per item; record (``record_exhausted(item_id, message,
        attempts)``) those that reached ``max_item_attempts``; raise if any are left to retry:
        the stage is not finished until every item has a row."""
        if not self.failures:
            return
        retry = list(self.failures)
        if self.item_attempts is not None and record_exhausted is not None:
            retry = []
            for item_id, message in self.failures:
                count = self.item_attempts.add(item_id, message)
                if count >= self.max_item_attempts:
                    log.warning("%s: %s failed for %s in %d runs; recorded as host_error: %s",
                                self.stage, self.backend, item_id, count, message)
                    record_exhausted(item_id, message, count)
                else:
                    retry.append((item_id, message))
            self.item_attempts.save()
        if not retry:
            return
        self.check()
        raise StageFailures(
            f"stage {self.stage!r} did not finish: {self._summary(retry)}. Their rows were not written; "
            "rerun the stage to retry them (finished rows are kept); an item that fails in "
            f"{self.max_item_attempts} runs is recorded as status host_error.")


def _budget(ctx: SynthesisContext, out: StageFile, stage: str, backend: str, pending: int) -> HostFailureBudget:
    """The stage's host-failure budget over its ``pending`` items; also sizes its progress display."""
    attempts = ItemAttempts(ctx.out_dir / stage / f"{shard_name(ctx.shard)}.attempts.json")
    cfg = ctx.config
    if out.progress is not None:
        out.progress.set_total(pending)
    return HostFailureBudget(stage, backend, cfg.max_host_failure_rate, min(cfg.chunk_size, max(1, pending)),
                             attempts, cfg.max_item_attempts, progress=out.progress)


MODULE_BACKENDS = "the sandbox or a module backend"

# Teacher refusals are judged as a rate only after this many requests (a few content-filter
# refusals among the first requests of a small shard are not a pattern).
TEACHER_ERROR_MIN_REQUESTS = 20


class TeacherRefusals:
    """Counts teacher requests refused for their content. Checked per chunk *before* its rows
    are written, so a request every question fails on (a parameter the model rejects) stops
    the stage instead of filling it with ``teacher_error`` rows."""

    def __init__(self, stage: str, max_rate: float):
        self.stage, self.max_rate = stage, max_rate
        self.requests = 0
        self.refused = 0

    def add(self, replies: list[Any]) -> None:
        refused = [r for r in replies if isinstance(r, TeacherRejected)]
        self.requests += len(replies)
        self.refused += len(refused)
        whole_chunk = len(replies) >= 2 and len(refused) == len(replies)
        rate = self.refused / self.requests if self.requests else 0.0
        if whole_chunk or (self.requests >= TEACHER_ERROR_MIN_REQUESTS and rate > self.max_rate):
            raise StageFailures(
                f"stage {self.stage!r} stopped: the teacher refused {self.refused} of {self.requests} "
                f"request(s){' (a whole chunk)' if whole_chunk else ''}, e.g. {refused[0] if refused else ''}. "
                "That many refusals point at the request (model name, a parameter the model rejects) "
                "rather than at single questions; nothing of this chunk was written. Fix the teacher "
                "settings and rerun.")


def error_log_for_prompt(execution: ExecutionRecord) -> str:
    """The runtime error log the bug-fix prompt (Fig. 11) shows."""
    return execution.error_log() or f"{execution.error_type}: {execution.error_message}"


@dataclass
class Attempt:
    """One teacher reply and what running it gave."""

    round: int
    kind: str
    refine_type: str | None
    prompt: str
    reply: TeacherReply
    code: str | None
    format_ok: bool
    problems: list[str]
    mode: str
    execution: ExecutionRecord | None
    answer: str | None
    confidence: float
    correct: bool
    rejected_because: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"round": self.round, "kind": self.kind, "refine_type": self.refine_type,
                "prompt_hash": text_hash(self.prompt), "request_key": self.reply.key,
                "teacher_cached": self.reply.cached, "teacher_via": self.reply.via,
                "teacher_cost_usd": self.reply.recorded_cost_usd, "format_ok": self.format_ok,
                "problems": self.problems, "mode": self.mode, "answer": self.answer,
                "confidence": self.confidence, "correct": self.correct,
                "rejected_because": self.rejected_because,
                "success": bool(self.execution and self.execution.success),
                "error": (f"{self.execution.error_type}: {self.execution.error_message}"
                          if self.execution and not self.execution.success else None)}


def _evaluate(ctx: SynthesisContext, record: QARecord, round_: int, kind: str, refine_type: str | None,
              prompt: str, reply: TeacherReply) -> Attempt:
    from inference.programs import analyse_output

    analysis = analyse_output(reply.text)
    code = analysis.parsed.code
    problems = list(analysis.parsed.problems) + list(analysis.validation.problems)
    execution = _run_checked(ctx, code, record) if code else None
    answer, confidence = _answer(execution, ctx.config.trust_program_confidence)
    return Attempt(round=round_, kind=kind, refine_type=refine_type, prompt=prompt, reply=reply, code=code,
                   format_ok=analysis.parsed.format_ok, problems=problems, mode=analysis.mode,
                   execution=execution, answer=answer, confidence=confidence,
                   correct=is_correct(answer, record.answer, len(record.choices)))


def _trajectory_row(tid: str, record: QARecord, label: dict[str, Any] | None, *, kind: str,
                    refine_type: str | None, verified: bool, reason: str | None, prompt: str | None,
                    output: str | None, mode: str | None, execution: ExecutionRecord | None,
                    teacher: dict[str, Any] | None, attempts: list[dict[str, Any]] | None = None,
                    inputs: dict[str, Any] | None = None, duration: float | None = None,
                    teacher_error: str | None = None, host_error: str | None = None,
                    trust_program_confidence: bool = TRUST_PROGRAM_CONFIDENCE) -> dict[str, Any]:
    answer, confidence = _answer(execution, trust_program_confidence)
    return {
        "id": tid, "question_id": record.id, "kind": kind, "refine_type": refine_type,
        "verified": verified, "reason": reason, "prompt": prompt, "output": output, "mode": mode,
        "mode_label": label.get("mode_label") if label else None, "answer": answer, "confidence": confidence,
        "duration": duration, "teacher_error": teacher_error, "host_error": host_error,
        "attempts": attempts or [],
        "provenance": {
            "question_id": record.id, "source": record.source, "teacher": teacher,
            "prompt_hash": text_hash(prompt) if prompt else None,
            "native": ({k: label.get(k) for k in ("answer", "confidence", "correct", "mode_label",
                                                  "confidence_threshold")} if label else None),
            "inputs": inputs or {},
            "execution": execution.to_dict() if execution is not None else None,
        },
    }


def _host_error_row(tid: str, record: QARecord, label: dict[str, Any] | None, *, kind: str,
                    refine_type: str | None, message: str, runs: int, duration: float | None,
                    teacher: dict[str, Any] | None = None, attempts: list[dict[str, Any]] | None = None,
                    inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A candidate that failed outside the program in ``max_item_attempts`` runs: recorded,
    never verified (so in no dataset), counted in the statistics."""
    row = _trajectory_row(tid, record, label, kind=kind, refine_type=refine_type, verified=False,
                          reason=f"host_error: {message}", prompt=None, output=None, mode=None, execution=None,
                          teacher=teacher, attempts=attempts, inputs=inputs, duration=duration,
                          host_error=message)
    row.update(status="host_error", host_error_runs=runs)
    return row


def _teacher_info(reply: TeacherReply) -> dict[str, Any]:
    return {"model": reply.model, "request_key": reply.key, "via": reply.via, "cached": reply.cached,
            "cost_usd": reply.recorded_cost_usd}


def _refusal_info(ctx: SynthesisContext, refusal: TeacherRejected) -> dict[str, Any]:
    model = ctx.teacher.settings.model if ctx.teacher is not None else ""
    return {"model": model, "request_key": refusal.key, "via": "refused", "cached": False, "cost_usd": 0.0,
            "status_code": refusal.status_code}


StageBody = Callable[[SynthesisContext, StageFile, dict[str, dict[str, Any]]], list[dict[str, Any]]]


def _stage(name: str) -> Callable[[StageBody], Callable[[SynthesisContext], list[dict[str, Any]]]]:
    """Make a stage resumable: a finished stage returns its rows; otherwise the body gets the
    stage file and the rows already written (ids to skip)."""
    def wrap(body: StageBody) -> Callable[[SynthesisContext], list[dict[str, Any]]]:
        @functools.wraps(body)
        def run(ctx: SynthesisContext) -> list[dict[str, Any]]:
            out = ctx.stage_file(name)
            if out.done:
                return list(out.load().values())
            out.progress = ctx.progress(name)
            try:
                return body(ctx, out, out.load())
            finally:
                out.close()  # a stage that stops keeps its fsynced partial log for the rerun
                out.progress.close()
        return run
    return wrap


def _finish(stage_file: StageFile, order: list[str]) -> list[dict[str, Any]]:
    rows = stage_file.finalize(order)
    # The stage is finished: its per-item attempt counts (ItemAttempts) are spent.
    attempts = stage_file.final_path.with_name(stage_file.final_path.name[:-len(".jsonl")] + ".attempts.json")
    attempts.unlink(missing_ok=True)
    log.info("%s: %d rows", stage_file.final_path, len(rows))
    return rows


# ------------------------------------------------------------------------------------ label

@_stage("label")
def run_label_stage(ctx: SynthesisContext, out: StageFile, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Native answer, confidence and m* for every question of the shard. A native call that
    fails gets no row (a rerun retries it); too many failures stop the stage."""
    answerer = ctx.require("native")
    pending = [r for r in ctx.records if r.id not in done]
    budget = _budget(ctx, out, "label", ctx.native_description, len(pending))
    for record in pending:
        if record.answer is None:
            raise ValueError(f"question {record.id!r} has no ground-truth answer; synthesis needs labelled questions")
        try:
            label = label_record(record, answerer, ctx.config.confidence_threshold)
        except Exception as exc:  # noqa: BLE001 - counted and retried, never written as a label
            budget.fail(record.id, f"{type(exc).__name__}: {exc}")
            budget.check()
            continue
        budget.ok()
        out.append(label.to_dict())
    by_id = {r.id: r for r in pending}

    def exhausted(item_id: str, message: str, runs: int) -> None:
        # No label: m* is None, so no later stage takes the question.
        out.append({"id": item_id, "status": "host_error", "host_error": message, "host_error_runs": runs,
                    "answer": None, "confidence": 0.0, "truth": by_id[item_id].answer, "correct": False,
                    "mode_label": None, "confidence_threshold": ctx.config.confidence_threshold,
                    "raw_output": "", "metadata": {}})
    budget.finish(exhausted)
    return _finish(out, [r.id for r in ctx.records])


# --------------------------------------------------------------------------------- programs

@_stage("programs")
def run_programs_stage(ctx: SynthesisContext, out: StageFile, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One teacher program per question (Fig. 9 prompt + module spec + few-shots), executed."""
    teacher = ctx.require("teacher")
    wanted = ctx.records
    if ctx.config.program_questions == "program_label":
        labels = ctx.rows_of("label")
        wanted = [r for r in ctx.records if labels[r.id]["mode_label"] == "program"]
    pending = [r for r in wanted if r.id not in done]
    system = ctx.system_prompt(refine=False)
    # In batch mode, one Batch API job for the whole shard; otherwise small chunks so that
    # rows are written while the teacher works.
    size = len(pending) if teacher.settings.mode == "batch" else ctx.config.chunk_size
    budget = _budget(ctx, out, "programs", MODULE_BACKENDS, len(pending))
    refusals = TeacherRefusals("programs", ctx.config.max_teacher_error_rate)
    host_failed: dict[str, tuple[QARecord, str, TeacherReply, Attempt]] = {}
    for chunk in _chunks(pending, size):
        prompts = [ctx.prompts.adaptive(r) for r in chunk]
        replies = teacher.complete_many([teacher.build_request(teacher_messages(system, p)) for p in prompts],
                                        tag="programs", keep_rejected=True)
        refusals.add(replies)
        for record, prompt, reply in zip(chunk, prompts, replies):
            if isinstance(reply, TeacherRejected):
                out.append({"id": record.id, "status": "teacher_error", "teacher_error": str(reply),
                            "prompt": prompt, "output": None, "code": None, "format_ok": False, "problems": [],
                            "mode": None, "answer": None, "confidence": 0.0, "correct": False,
                            "teacher": _refusal_info(ctx, reply), "prompt_hash": text_hash(prompt),
                            "duration": ctx.duration(record), "execution": None})
                continue
            attempt = _evaluate(ctx, record, 0, "R2", None, prompt, reply)
            host_error = host_error_of(attempt.execution)
            if host_error:
                budget.fail(record.id, host_error)
                host_failed[record.id] = (record, prompt, reply, attempt)
                continue
            budget.ok()
            if attempt.code is None:
                status = "unparsable"
            elif not attempt.execution.success:
                status = "failed"
            else:
                status = "correct" if attempt.correct else "wrong"
            out.append({"id": record.id, "status": status, "teacher_error": None, "prompt": prompt,
                        "output": reply.text, "code": attempt.code, "format_ok": attempt.format_ok,
                        "problems": attempt.problems, "mode": attempt.mode, "answer": attempt.answer,
                        "confidence": attempt.confidence, "correct": attempt.correct,
                        "teacher": _teacher_info(reply), "prompt_hash": text_hash(prompt),
                        "duration": ctx.duration(record),
                        "execution": attempt.execution.to_dict() if attempt.execution else None})
        budget.check()

    def exhausted(item_id: str, message: str, runs: int) -> None:
        record, prompt, reply, attempt = host_failed[item_id]
        out.append({"id": item_id, "status": "host_error", "teacher_error": None, "host_error": message,
                    "host_error_runs": runs, "prompt": prompt, "output": reply.text, "code": attempt.code,
                    "format_ok": attempt.format_ok, "problems": attempt.problems, "mode": attempt.mode,
                    "answer": None, "confidence": 0.0, "correct": False, "teacher": _teacher_info(reply),
                    "prompt_hash": text_hash(prompt), "duration": ctx.duration(record), "execution": None})
    budget.finish(exhausted)
    return _finish(out, [r.id for r in wanted])


# --------------------------------------------------------------------------------------- R1

@_stage("r1")
def run_r1_stage(ctx: SynthesisContext, out: StageFile, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """R1: questions the native model answers correctly and confidently (m* = native). The
    target is the Fig. 10 native program; it is verified by running it through the executor."""
    from inference.programs import parse_model_output

    labels = ctx.rows_of("label")
    output = ctx.prompts.native_output()
    code = parse_model_output(output).code
    candidates = [r for r in ctx.records if labels[r.id]["mode_label"] == "native"]
    budget = _budget(ctx, out, "r1", MODULE_BACKENDS, len(candidates))
    for record in candidates:
        tid = f"{record.id}#R1"
        if tid in done:
            continue
        execution = _run_checked(ctx, code, record)
        if execution.host_error:
            budget.fail(tid, execution.host_error)
            budget.check()
            continue
        budget.ok()
        answer, confidence = _answer(execution, ctx.config.trust_program_confidence)
        if not execution.success:
            reason = "native program failed: " + error_log_for_prompt(execution).splitlines()[0]
        elif not is_correct(answer, record.answer, len(record.choices)):
            reason = f"native program answered {answer}, truth {record.answer}"
        elif confidence < ctx.config.confidence_threshold:
            reason = (f"native program confidence {confidence:.3f} < confidence_threshold "
                      f"{ctx.config.confidence_threshold}")
        else:
            reason = None
        out.append(_trajectory_row(tid, record, labels[record.id], kind="R1", refine_type=None,
                                   verified=reason is None, reason=reason, prompt=ctx.prompts.adaptive(record),
                                   output=output, mode="native", execution=execution, teacher=None,
                                   duration=ctx.duration(record),
                                   trust_program_confidence=ctx.config.trust_program_confidence))
    by_tid = {f"{r.id}#R1": r for r in candidates}

    def exhausted(tid: str, message: str, runs: int) -> None:
        record = by_tid[tid]
        out.append(_host_error_row(tid, record, labels[record.id], kind="R1", refine_type=None, message=message,
                                   runs=runs, duration=ctx.duration(record)))
    budget.finish(exhausted)
    return _finish(out, [f"{r.id}#R1" for r in candidates])


# --------------------------------------------------------------------------------------- R2

@_stage("r2")
def run_r2_stage(ctx: SynthesisContext, out: StageFile, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """R2: for m* = program questions, the teacher program that executed and answered correctly
    (verified by the execution recorded in the ``programs`` stage)."""
    labels, programs = ctx.rows_of("label"), ctx.rows_of("programs")
    candidates = [r for r in ctx.records if labels[r.id]["mode_label"] == "program" and r.id in programs]
    for record in candidates:
        tid = f"{record.id}#R2"
        if tid in done:
            continue
        prog = programs[record.id]
        execution = ExecutionRecord.from_dict(prog["execution"]) if prog["execution"] else None
        if prog["status"] == "teacher_error":
            reason = f"teacher_error: {prog.get('teacher_error')}"
        elif prog["status"] == "host_error":
            reason = f"host_error: {prog.get('host_error')}"
        elif prog["status"] != "correct":
            reason = f"teacher program {prog['status']}"
        elif not prog["format_ok"]:
            reason = "teacher output does not follow the <planning>/<code> format: " + "; ".join(prog["problems"])
        elif prog["mode"] != "program":
            reason = "teacher wrote a native-mode program for a program-mode question"
        elif prog["confidence"] < ctx.config.r2_min_confidence:
            reason = f"confidence {prog['confidence']:.3f} < r2_min_confidence {ctx.config.r2_min_confidence}"
        else:
            reason = None
        teacher = dict(prog["teacher"], prompt_hash=prog["prompt_hash"])
        out.append(_trajectory_row(tid, record, labels[record.id], kind="R2", refine_type=None,
                                   verified=reason is None, reason=reason, prompt=prog["prompt"],
                                   output=prog["output"], mode=prog["mode"], execution=execution, teacher=teacher,
                                   duration=_row_duration(ctx, prog, record),
                                   trust_program_confidence=ctx.config.trust_program_confidence,
                                   teacher_error=prog.get("teacher_error")))
    return _finish(out, [f"{r.id}#R2" for r in candidates])


def _row_duration(ctx: SynthesisContext, row: dict[str, Any], record: QARecord) -> float | None:
    """The duration an earlier stage ran the program with, else the record's or a probe."""
    return row["duration"] if row.get("duration") is not None else ctx.duration(record)


# ----------------------------------------------------------------------------------- R3, R4

@dataclass
class _Candidate:
    tid: str
    record: QARecord
    label: dict[str, Any] | None
    kind: str
    refine_type: str
    prompt: str
    inputs: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    # The follow-up prompt and its (kind, refine_type) after a revision that was not kept.
    next_prompt: str | None = None
    next_kind: tuple[str, str] | None = None


def _kept(ctx: SynthesisContext, cand: _Candidate, attempt: Attempt) -> str | None:
    """Why a revision is not kept (None = keep)."""
    if attempt.code is None:
        return "no program in the teacher reply"
    if not attempt.format_ok:
        return "format: " + "; ".join(attempt.problems)
    if not attempt.execution.success:
        return f"revision failed: {attempt.execution.error_type}: {attempt.execution.error_message}"
    if not attempt.correct:
        return f"revision answered {attempt.answer}, truth {cand.record.answer}"
    if cand.refine_type == LOW_CONF_NATIVE and attempt.mode != "program":
        return "native refinement must turn into a multi-step program"
    if attempt.confidence < ctx.config.refine_min_confidence:
        return f"confidence {attempt.confidence:.3f} < refine_min_confidence {ctx.config.refine_min_confidence}"
    return None


def _next_prompt(ctx: SynthesisContext, cand: _Candidate, attempt: Attempt) -> tuple[str, str, str] | None:
    """The follow-up (prompt, kind, refine_type) for a revision that was not kept, as the
    runner's refine loop would choose it; None when there is nothing to refine."""
    if attempt.code is None:
        return None
    if not attempt.execution.success:
        return (ctx.prompts.bugfix(cand.record, attempt.code, error_log_for_prompt(attempt.execution)),
                "R3", BUGGY_PROGRAM)
    return ctx.prompts.program_refine(cand.record, attempt.code), "R4", LOW_CONF_PROGRAM


def _revise_and_verify(ctx: SynthesisContext, stage: str, out: StageFile, done: dict[str, dict[str, Any]],
                       candidates: list[_Candidate]) -> list[dict[str, Any]]:
    teacher = ctx.require("teacher")
    system = ctx.system_prompt(refine=True)
    pending = [c for c in candidates if c.tid not in done]
    size = len(pending) if teacher.settings.mode == "batch" else ctx.config.chunk_size
    budget = _budget(ctx, out, stage, MODULE_BACKENDS, len(pending))
    refusals = TeacherRefusals(stage, ctx.config.max_teacher_error_rate)
    for chunk in _chunks(pending, size):
        active = list(chunk)
        for round_ in range(ctx.config.max_repair_rounds):
            if not active:
                break
            prompts = [c.next_prompt or c.prompt for c in active]
            kinds = [c.next_kind or (c.kind, c.refine_type) for c in active]
            replies = teacher.complete_many(
                [teacher.build_request(teacher_messages(system, p)) for p in prompts], tag=stage,
                keep_rejected=True)
            refusals.add(replies)
            still: list[_Candidate] = []
            for cand, prompt, (kind, refine_type), reply in zip(active, prompts, kinds, replies):
                if isinstance(reply, TeacherRejected):
                    out.append(_refused_row(ctx, cand, prompt, reply))
                    continue
                attempt = _evaluate(ctx, cand.record, round_, kind, refine_type, prompt, reply)
                host_error = host_error_of(attempt.execution)
                if host_error:
                    # Not a buggy revision: no row, no bug-fix round; a rerun redoes the candidate.
                    budget.fail(cand.tid, host_error)
                    continue
                budget.ok()
                cand.attempts.append(attempt)
                reason = attempt.rejected_because = _kept(ctx, cand, attempt)
                follow = _next_prompt(ctx, cand, attempt) if reason else None
                if reason is None or follow is None or round_ + 1 >= ctx.config.max_repair_rounds:
                    out.append(_candidate_row(ctx, cand, reason))
                    continue
                cand.next_prompt, cand.next_kind = follow[0], (follow[1], follow[2])
                still.append(cand)
            active = still
            budget.check()
    by_tid = {c.tid: c for c in pending}

    def exhausted(tid: str, message: str, runs: int) -> None:
        cand = by_tid[tid]
        last = cand.attempts[-1] if cand.attempts else None
        teacher = dict(_teacher_info(last.reply), prompt_hash=text_hash(last.prompt)) if last else None
        out.append(_host_error_row(tid, cand.record, cand.label, kind=cand.kind, refine_type=cand.refine_type,
                                   message=message, runs=runs, duration=ctx.duration(cand.record),
                                   teacher=teacher, attempts=[a.summary() for a in cand.attempts],
                                   inputs=cand.inputs))
    budget.finish(exhausted)
    return _finish(out, [c.tid for c in candidates])


def _candidate_row(ctx: SynthesisContext, cand: _Candidate, reason: str | None) -> dict[str, Any]:
    last = cand.attempts[-1]
    teacher = dict(_teacher_info(last.reply), prompt_hash=text_hash(last.prompt))
    return _trajectory_row(
        cand.tid, cand.record, cand.label, kind=last.kind if reason is None else cand.kind,
        refine_type=last.refine_type if reason is None else cand.refine_type, verified=reason is None,
        reason=reason, prompt=last.prompt if reason is None else None,
        output=last.reply.text if reason is None else None, mode=last.mode, execution=last.execution,
        teacher=teacher, attempts=[a.summary() for a in cand.attempts], inputs=cand.inputs,
        duration=ctx.duration(cand.record), trust_program_confidence=ctx.config.trust_program_confidence)


def _refused_row(ctx: SynthesisContext, cand: _Candidate, prompt: str, refusal: TeacherRejected) -> dict[str, Any]:
    """A candidate whose teacher request was refused for its content: its recorded outcome."""
    last = cand.attempts[-1] if cand.attempts else None
    teacher = dict(_refusal_info(ctx, refusal), prompt_hash=text_hash(prompt))
    return _trajectory_row(
        cand.tid, cand.record, cand.label, kind=cand.kind, refine_type=cand.refine_type, verified=False,
        reason=f"teacher_error: {refusal}", prompt=None, output=None, mode=last.mode if last else None,
        execution=last.execution if last else None, teacher=teacher,
        attempts=[a.summary() for a in cand.attempts], inputs=cand.inputs,
        duration=ctx.duration(cand.record), teacher_error=str(refusal),
        trust_program_confidence=ctx.config.trust_program_confidence)


def _host_error_label(label: dict[str, Any] | None) -> bool:
    """A question whose native label is a recorded host_error has no m*: no trajectory uses it."""
    return bool(label) and label.get("status") == "host_error"


@_stage("r3")
def run_r3_stage(ctx: SynthesisContext, out: StageFile, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """R3: teacher programs that failed at run time, repaired from their error log (Fig. 11)."""
    programs = ctx.rows_of("programs")
    labels = ctx.stage_file("label").load()
    candidates = []
    for record in ctx.records:
        prog = programs.get(record.id)
        if prog is None or prog["status"] != "failed" or _host_error_label(labels.get(record.id)):
            continue
        execution = ExecutionRecord.from_dict(prog["execution"])
        if execution.host_error:  # rows written before host errors were kept out: not a bug
            log.warning("r3: skipping %s: its program failed outside the program (%s); rerun the "
                        "programs stage for it", record.id, execution.host_error)
            continue
        error_log = error_log_for_prompt(execution)
        candidates.append(_Candidate(
            tid=f"{record.id}#R3", record=record, label=labels.get(record.id), kind="R3", refine_type=BUGGY_PROGRAM,
            prompt=ctx.prompts.bugfix(record, prog["code"], error_log),
            inputs={"code": prog["code"], "error_log": error_log, "teacher": prog["teacher"]}))
    return _revise_and_verify(ctx, "r3", out, done, candidates)


@_stage("r4")
def run_r4_stage(ctx: SynthesisContext, out: StageFile, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """R4: low-confidence or wrong native answers (Fig. 12) and successful programs that are
    wrong or below the refine threshold (Fig. 13), revised by the teacher."""
    labels = ctx.rows_of("label")
    programs = ctx.rows_of("programs")
    candidates = []
    for record in ctx.records:
        label = labels[record.id]
        if label["mode_label"] == "program":
            candidates.append(_Candidate(
                tid=f"{record.id}#R4-native", record=record, label=label, kind="R4", refine_type=LOW_CONF_NATIVE,
                prompt=ctx.prompts.native_refine(record),
                inputs={"native_answer": label["answer"], "native_confidence": label["confidence"]}))
        prog = programs.get(record.id)
        if prog is not None and not _host_error_label(label) and prog["status"] in ("correct", "wrong") and (
                not prog["correct"] or prog["confidence"] < ctx.config.refine_candidate_threshold):
            candidates.append(_Candidate(
                tid=f"{record.id}#R4-program", record=record, label=label, kind="R4", refine_type=LOW_CONF_PROGRAM,
                prompt=ctx.prompts.program_refine(record, prog["code"]),
                inputs={"code": prog["code"], "answer": prog["answer"], "confidence": prog["confidence"],
                        "teacher": prog["teacher"]}))
    return _revise_and_verify(ctx, "r4", out, done, candidates)


STAGE_FUNCTIONS: dict[str, Callable[[SynthesisContext], list[dict[str, Any]]]] = {
    "label": run_label_stage, "programs": run_programs_stage, "r1": run_r1_stage,
    "r2": run_r2_stage, "r3": run_r3_stage, "r4": run_r4_stage,
}
