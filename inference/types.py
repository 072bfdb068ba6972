"""Plain-data types shared by every stage (DESIGN.md §2).

Everything here is JSON-serialisable through ``to_dict``/``from_dict`` so that it can cross
the sandbox boundary, be written to JSONL and be read back by synthesis, rewards and
evaluation without importing heavy dependencies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["native", "program"]

OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Frame:
    """A handle on one video frame: where it comes from, not its pixels.

    Pixels are decoded on demand by the video store (``VideoStore.load_frames``), so a list of
    frames is cheap to pass between modules, to cache, and to send across the sandbox
    boundary.

    Attributes:
        source: path of the file the frame is decoded from (the video or one of its clips).
        time: presentation time in seconds inside ``source``.
        video_time: time in seconds inside the original (unsplit) video; equals ``time`` when
            ``source`` is the video itself.
        box: optional crop box ``(x0, y0, x1, y1)`` in pixels of the full decoded frame; crops
            of crops compose into one box.
    """

    source: str
    time: float
    video_time: float
    box: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "time": self.time, "video_time": self.video_time,
                "box": list(self.box) if self.box is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Frame:
        box = data.get("box")
        return cls(source=str(data["source"]), time=float(data["time"]),
                   video_time=float(data.get("video_time", data["time"])),
                   box=tuple(int(v) for v in box) if box is not None else None)


@dataclass
class AnswerResult:
    """What every answer-producing module and every program returns (DESIGN.md §2).

    ``confidence`` follows the paper's Eq. 2: exp of the mean token log-probability of the
    generated answer (for a single-letter answer, the probability of that letter).
    """

    answer: str
    confidence: float
    raw_output: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnswerResult:
        return cls(answer=str(data.get("answer", "")), confidence=float(data.get("confidence", 0.0)),
                   raw_output=str(data.get("raw_output", "")), metadata=dict(data.get("metadata") or {}))


@dataclass
class ModuleCall:
    """One module call made by a program, as recorded in its execution record."""

    name: str
    args_summary: str
    duration_s: float
    cache_hit: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ExecutionRecord:
    """The outcome of running one program (DESIGN.md §2)."""

    success: bool
    result: AnswerResult | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    stdout: str = ""
    module_calls: list[ModuleCall] = field(default_factory=list)
    wall_time_s: float = 0.0
    mode: Mode | None = None
    cache_hits: int = 0
    cache_misses: int = 0
    # Set when a module backend failed for reasons outside the program (endpoint down, out of
    # memory, sandbox could not start): the failure says nothing about the program, so data
    # synthesis retries instead of asking for a bug fix, and rewards skip the sample.
    host_error: str | None = None
    #: Where ``result.confidence`` came from (paper Eq. 2: answer modules return it):
    #: ``"module:<name>"`` when it equals a confidence an answer module (``query_mc``,
    #: ``query_native``, ``query_yn``) returned in this execution, ``"program"`` when the program
    #: stated it itself (``make_result(answer, 0.99)``, ``r["confidence"] = 1.0``), ``"missing"``
    #: when the program returned none. ``None``: no result, or a record written before the field
    #: existed. Read it through :func:`inference.confidence.effective_confidence`.
    confidence_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["result"] = self.result.to_dict() if self.result is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionRecord:
        result = data.get("result")
        calls = [ModuleCall(**c) for c in data.get("module_calls") or []]
        return cls(success=bool(data["success"]),
                   result=AnswerResult.from_dict(result) if result else None,
                   error_type=data.get("error_type"), error_message=data.get("error_message"),
                   traceback=data.get("traceback"), stdout=data.get("stdout", ""),
                   module_calls=calls, wall_time_s=float(data.get("wall_time_s", 0.0)),
                   mode=data.get("mode"), cache_hits=int(data.get("cache_hits", 0)),
                   cache_misses=int(data.get("cache_misses", 0)), host_error=data.get("host_error"),
                   confidence_source=data.get("confidence_source"))

    def error_log(self) -> str:
        """The runtime error log a bug-fix prompt (paper Fig. 11) shows the model."""
        if self.success:
            return ""
        parts = [f"{self.error_type}: {self.error_message}"]
        if self.traceback:
            parts.append(self.traceback.rstrip())
        return "\n".join(parts)


@dataclass
class QARecord:
    """One multiple-choice question about one video (DESIGN.md §2)."""

    id: str
    video: str
    question: str
    choices: list[str]
    answer: str | None = None
    duration: float | None = None
    subtitles: str | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"QA record {self.id!r}: needs at least two choices, got {self.choices!r}")
        if len(self.choices) > len(OPTION_LETTERS):
            raise ValueError(f"QA record {self.id!r}: at most {len(OPTION_LETTERS)} choices are supported")
        if self.answer is not None and self.answer not in OPTION_LETTERS[: len(self.choices)]:
            raise ValueError(
                f"QA record {self.id!r}: answer {self.answer!r} is not one of the option letters "
                f"{OPTION_LETTERS[: len(self.choices)]!r}")

    @property
    def letters(self) -> str:
        return OPTION_LETTERS[: len(self.choices)]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QARecord:
        missing = [k for k in ("id", "video", "question", "choices") if k not in data]
        if missing:
            raise ValueError(f"QA record {data.get('id', '<no id>')!r} lacks field(s) {missing}; "
                             "each line needs id, video, question and choices (DESIGN.md §2)")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def format_question_with_choices(question: str, choices: list[str]) -> str:
    """``Question: ...`` followed by ``A. ...`` lines: the ``{question_with_choices}`` slot of
    the paper's prompts (Figs. 11-14)."""
    lines = [f"Question: {question.strip()}", "Choices:"]
    lines += [f"{OPTION_LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines)
