"""Native labelling: the native VideoLLM's answer and confidence per question, and the oracle
mode label m* (paper A.3, DESIGN.md §2).

m* is ``native`` iff the native answer equals the ground truth *and* its confidence is at least
τ (``confidence_threshold``, 0.75 by default); otherwise ``program``. R1 takes the ``native`` questions, R2 and the
native-refinement half of R4 take the others.

A :class:`NativeAnswerer` is any callable ``(QARecord) -> AnswerResult``, so tests inject fakes
and the pipeline plugs in either the module library's ``query_native`` (an OpenAI-compatible
endpoint or an in-process model, :class:`ModuleLibraryNativeAnswerer`) or the Fig. 10 native
program run through the sandbox (:class:`ExecutorNativeAnswerer`).

A native call that fails (endpoint down, out of memory, ...) is not a label: :func:`label_record`
lets the exception through, and the ``label`` stage writes no row for that question (a rerun
retries it), counts the failures and stops when too many fail (``max_host_failure_rate``).
Correctness is :func:`inference.scoring.is_correct`, the scorer rewards and evaluation use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from inference.confidence import TRUST_PROGRAM_CONFIDENCE, effective_confidence
from inference.scoring import is_correct, normalise_letter
from inference.types import AnswerResult, ExecutionRecord, Mode, QARecord


class NativeAnswerer(Protocol):
    def __call__(self, record: QARecord) -> AnswerResult: ...


def oracle_mode_label(answer: str | None, confidence: float, truth: str, confidence_threshold: float,
                      num_choices: int | None = None) -> Mode:
    """m* = native iff the native answer is correct (``inference.scoring.is_correct``) with
    confidence >= ``confidence_threshold`` (τ, paper A.3)."""
    correct = is_correct(answer, truth, num_choices)
    return "native" if correct and confidence >= confidence_threshold else "program"


@dataclass
class NativeLabel:
    """One question's native answer and its oracle mode label (a row of the ``label`` stage)."""

    id: str
    answer: str
    confidence: float
    truth: str
    correct: bool
    mode_label: Mode
    confidence_threshold: float
    raw_output: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NativeLabel:
        data = dict(data)
        if "tau" in data:  # rows written before the field was named confidence_threshold
            data.setdefault("confidence_threshold", data.pop("tau"))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def label_record(record: QARecord, answerer: NativeAnswerer, confidence_threshold: float) -> NativeLabel:
    """Ask the native model and derive m*. A question without a ground-truth answer cannot be
    labelled (synthesis needs the answer to judge correctness). A failing native call raises:
    it says nothing about the question, so it must not become a label."""
    if record.answer is None:
        raise ValueError(f"question {record.id!r} has no ground-truth answer; synthesis needs labelled questions")
    result = answerer(record)
    if isinstance(result, Mapping):
        result = AnswerResult.from_dict(dict(result))
    num_choices = len(record.choices)
    answer = normalise_letter(result.answer, num_choices) or (result.answer or "").strip().upper()
    confidence = float(result.confidence)
    return NativeLabel(id=record.id, answer=answer, confidence=confidence, truth=record.answer,
                       correct=is_correct(answer, record.answer, num_choices),
                       mode_label=oracle_mode_label(answer, confidence, record.answer, confidence_threshold,
                                                    num_choices),
                       confidence_threshold=confidence_threshold,
                       raw_output=result.raw_output, metadata=dict(result.metadata))


class ExecutorNativeAnswerer:
    """Native answers from running the Fig. 10 native program (a lone ``query_native`` call)
    through a program runner: the same module library, sandbox and call cache as every other
    program, so the R1 verification later hits the call cache. Only a host failure
    (``host_error``) raises; a program that ran but answered nothing readable is an empty,
    zero-confidence answer (m* = program), as with :class:`ModuleLibraryNativeAnswerer`. The
    confidence is the execution's effective one
    (:func:`inference.confidence.effective_confidence`): one the program stated itself counts
    as 0 unless ``trust_program_confidence``."""

    def __init__(self, run_program: Callable[[str, QARecord], ExecutionRecord], *,
                 trust_program_confidence: bool = TRUST_PROGRAM_CONFIDENCE):
        from inference.programs import parse_model_output
        from inference.prompts import NATIVE_OUTPUT

        self.code = parse_model_output(NATIVE_OUTPUT).code
        self.run_program = run_program
        self.trust_program_confidence = trust_program_confidence

    def __call__(self, record: QARecord) -> AnswerResult:
        execution = self.run_program(self.code, record)
        if execution.host_error:
            raise RuntimeError(f"native program could not run: {execution.host_error}")
        if not execution.success or execution.result is None:
            # The program ran on a working host but gave no readable answer (e.g. query_native
            # answered "" and make_result rejected it): an unreadable native answer, labelled
            # ``program`` exactly as the modules backend labels the same answer.
            return AnswerResult("", 0.0, raw_output=execution.error_log() or "",
                                metadata={"native_program_error": f"{execution.error_type}: {execution.error_message}"})
        confidence = effective_confidence(execution, self.trust_program_confidence)
        result = execution.result
        if confidence is None or confidence != result.confidence:
            result = AnswerResult(result.answer, confidence or 0.0, result.raw_output,
                                  dict(result.metadata, confidence_source=execution.confidence_source))
        return result


class ModuleLibraryNativeAnswerer:
    """Native answers from the module library's ``query_native`` called in-process.

    ``query_native`` is whatever callable the module library registers under that name (its
    VLM backend is an OpenAI-compatible endpoint or an in-process transformers model, chosen
    by the module config). It is called the way a program calls it:
    ``query_native(video, question, choices)``.
    """

    def __init__(self, query_native: Callable[..., Any]):
        self.query_native = query_native

    def __call__(self, record: QARecord) -> AnswerResult:
        result = self.query_native(record.video, record.question, list(record.choices))
        if isinstance(result, AnswerResult):
            return result
        if isinstance(result, Mapping):
            return AnswerResult.from_dict(dict(result))
        raise TypeError(f"query_native returned {type(result).__name__}; expected an AnswerResult-shaped dict")
