"""The one scorer: is a predicted answer right?

Data synthesis (R1-R4 verification, the oracle mode label), the GRPO accuracy reward and
benchmark evaluation all call :func:`is_correct`, so "correct" means the same everywhere.
Predictions are option letters as produced by the executor (``coerce_answer``) and the
``query_*`` modules (``extract_letter``); ground truths are QA-record letters.
"""

from __future__ import annotations

from inference.types import OPTION_LETTERS


def normalise_letter(answer: str | None, num_choices: int | None = None) -> str | None:
    """``answer`` as an upper-case option letter, or ``None`` if it is not one (empty, longer
    than one character after stripping, or beyond the first ``num_choices`` letters)."""
    if answer is None:
        return None
    text = str(answer).strip().strip("()[].").strip()
    if len(text) != 1 or text.upper() not in OPTION_LETTERS:
        return None
    letter = text.upper()
    if num_choices is not None and letter not in OPTION_LETTERS[:num_choices]:
        return None
    return letter


def is_correct(prediction: str | None, ground_truth: str | None, num_choices: int | None = None) -> bool:
    """Whether ``prediction`` selects the ground-truth option.

    Raises ``ValueError`` when the ground truth is missing or not an option letter: scoring an
    unlabelled record is a caller bug, not a wrong answer.
    """
    truth = normalise_letter(ground_truth, num_choices)
    if truth is None:
        raise ValueError(f"ground truth {ground_truth!r} is not an option letter"
                         + (f" among {OPTION_LETTERS[:num_choices]!r}" if num_choices else "")
                         + "; score only labelled QA records")
    return normalise_letter(prediction, num_choices) == truth
