"""The reward components (paper Eq. 3, A.3), plain functions registered by name.

Each component maps one :class:`Sample` (a GRPO row, one sampled completion, its parse and,
when needed, its execution record) to a :class:`Score`: a value in [0, 1], or ``None`` when the
sample cannot be scored for reasons outside the completion (a host error: the endpoint was
down, the sandbox could not start). ``None`` is excluded from the advantage and counted; it is
never turned into 0. Every score below 1 carries a short ``reason`` (``category: detail``) whose
category is counted, so a run shows *why* rewards are low.

    format    1 iff the output is well-formed: ``<planning>`` and ``<code>`` blocks (strict tags,
              closed: a truncated completion fails), the code parses, exactly one
              ``execute_command`` with an accepted signature (``(video, question)`` or
              ``(video, question, choices, duration)``, names and order), no top-level code
              that runs at load, only known modules, and the sandbox's AST policy passes
              (``inference.programs``).
    mode      1 iff the program's mode (the shared AST classifier: native iff its only module
              call is ``query_native``) equals the row's ``mode_label`` (m*, paper A.3); code
              that does not parse has no mode.
    accuracy  1 iff the program, executed in the sandbox on the row's video with the row's
              question, choices, duration and subtitles, returns the option letter ``solution``
              (the one scorer, ``inference.scoring.is_correct``); 0 when it fails, times out or
              returns no valid letter; ``None`` on a host error.

Register another component with ``@reward("name")`` (``needs_execution=True`` when it reads
``sample.execution``) and name it in ``RewardConfig.reward_funcs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inference.programs import ProgramAnalysis
from inference.sandbox.policy import parse_program
from inference.scoring import is_correct, normalise_letter
from inference.types import ExecutionRecord

__all__ = ["Sample", "Score", "RewardFunction", "REWARDS", "reward", "format_problem_category"]


@dataclass
class Sample:
    """One completion to score, with everything a component may read.

    Attributes:
        row: the GRPO row (``solution``, ``choices``, ``mode_label``, ``videos``, ``question``,
            ``duration``, ``subtitles``, ...).
        completion: the sampled text.
        analysis: its parse, validation and mode (``inference.programs.analyse_output``).
        truncated: generation stopped at the token budget (the output is incomplete).
        execution: the sandbox's record of running the program (components that need it only;
            ``None`` when the completion had no runnable program).
    """

    row: dict[str, Any]
    completion: str
    analysis: ProgramAnalysis
    truncated: bool = False
    execution: ExecutionRecord | None = None


@dataclass(frozen=True)
class Score:
    """A component's value (``None``: unscorable, a host error) and, below 1, why."""

    value: float | None
    reason: str | None = None

    @property
    def category(self) -> str | None:
        """The counted part of the reason (before the first ``:``)."""
        return None if self.reason is None else self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class RewardFunction:
    name: str
    fn: Callable[[Sample], Score]
    needs_execution: bool = False

    def __call__(self, sample: Sample) -> Score:
        return self.fn(sample)


#: Every registered component by name.
REWARDS: dict[str, RewardFunction] = {}


ScoreFn = Callable[[Sample], Score]


def reward(name: str, *, needs_execution: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn(sample) -> Score`` as the reward component ``name``."""
    def register(fn: ScoreFn) -> ScoreFn:
        if name in REWARDS:
            raise ValueError(f"a reward component named {name!r} is already registered")
        REWARDS[name] = RewardFunction(name, fn, needs_execution)
        return fn
    return register


# Validation problems (inference.programs.validate_program) by what they mean for the format.
_PROBLEM_CATEGORIES = (
    ("SyntaxError", "syntax_error"),
    ("unknown module", "unknown_module"),
    ("unknown builtin", "forbidden_builtin"),
    ("is defined", "entry_point_count"),
    ("no function named", "no_entry_point"),
    ("parameter", "bad_signature"),
    ("top level", "bad_signature"),
    ("decorated", "bad_signature"),
    ("redefines the module", "redefines_module"),
)


def format_problem_category(problem: str) -> str:
    """A short name for one validation problem (``policy_violation`` for the AST policy's)."""
    for needle, category in _PROBLEM_CATEGORIES:
        if needle in problem:
            return category
    return "policy_violation"


@reward("format")
def format_reward(sample: Sample) -> Score:
    parsed, validation = sample.analysis.parsed, sample.analysis.validation
    if sample.truncated:
        return Score(0.0, "truncated: generation stopped at the token budget")
    if parsed.code is None:
        return Score(0.0, "no_code: " + "; ".join(parsed.problems))
    if not parsed.format_ok:
        return Score(0.0, "malformed_tags: " + "; ".join(parsed.problems))
    if not validation.ok:
        return Score(0.0, f"{format_problem_category(validation.problems[0])}: {validation.problems[0]}")
    if validation.format_problems:  # runnable, but not the prompt's program format
        problem = validation.format_problems[0]
        return Score(0.0, f"{'top_level_code' if 'top-level' in problem else 'bad_signature'}: {problem}")
    return Score(1.0)


@reward("mode")
def mode_reward(sample: Sample) -> Score:
    label = sample.row["mode_label"]
    code = sample.analysis.parsed.code
    if code is None:
        return Score(0.0, f"no_code: no program, so no mode (label {label})")
    try:
        parse_program(code)
    except (SyntaxError, ValueError) as exc:  # the classifier calls unparseable code 'program'; no mode here
        return Score(0.0, f"no_mode: the code does not parse ({type(exc).__name__}), label {label}")
    mode = sample.analysis.mode
    if mode != label:
        return Score(0.0, f"mode_mismatch: wrote a {mode}-mode program, label {label}")
    return Score(1.0)


@reward("accuracy", needs_execution=True)
def accuracy_reward(sample: Sample) -> Score:
    if not sample.analysis.runnable:
        problems = sample.analysis.validation.problems or sample.analysis.parsed.problems
        return Score(0.0, "not_runnable: " + "; ".join(problems)[:300])
    record = sample.execution
    if record is None:
        raise RuntimeError("the accuracy reward needs the execution record of a runnable program; "
                           "score through rewards.score_completions, which executes them")
    if record.host_error:
        return Score(None, f"host_error: {record.host_error[:300]}")
    if not record.success:
        error = record.error_type or ""
        kind = ("timeout" if "TimeLimit" in error else
                "no_valid_letter" if error == "InvalidResult" else "program_error")
        return Score(0.0, f"{kind}: {record.error_type}: {(record.error_message or '')[:200]}")
    choices = sample.row["choices"]
    letter = normalise_letter(record.result.answer if record.result else None, len(choices))
    if letter is None:
        return Score(0.0, "no_valid_letter: the program returned no option letter")
    if not is_correct(letter, sample.row["solution"], len(choices)):
        return Score(0.0, f"wrong_answer: {letter}, solution {sample.row['solution']}")
    return Score(1.0)
