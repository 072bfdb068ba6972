"""The module-time budget of one execution, as the backends see it (docs/sandbox.md).

The sandbox host gives every execution a budget of host seconds spent in module calls
(``SandboxLimits.module_time_s``). It checks the budget before each call and, around the call,
publishes the deadline here (a context variable, so concurrent executions in other threads see
their own). Backends that can stop mid-call read it: the OpenAI-compatible backend shortens its
request timeout, the transformers backend passes ``max_time`` to ``generate``; both raise
:class:`~inference.errors.ModuleBudgetExceeded` when the deadline passes.

Work the host does once per video for every later program (splitting a video into clips,
embedding the clips), and waiting for a lock shared with other executions, are not the
program's: a module wraps them in :func:`not_charged` (:func:`host_preparation`), which moves the
deadline by the time it took and reports that time to the host, which does not charge it.

Outside the sandbox (trusted callers such as the runner's own generation) no deadline is set and
nothing changes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from inference.errors import ModuleBudgetExceeded

__all__ = ["CallBudget", "call_budget", "budget_until", "current_budget", "remaining_s", "not_charged",
           "host_preparation", "check_deadline"]


@dataclass
class CallBudget:
    """The deadline of one module call (``time.monotonic()`` seconds) and the host-preparation
    seconds spent during it (not charged to the program)."""

    deadline: float
    prepared_s: float = 0.0
    preparing: int = 0  # nesting depth of host_preparation (only the outermost one counts)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()


_CURRENT: ContextVar[CallBudget | None] = ContextVar("videopro_module_budget", default=None)


@contextlib.contextmanager
def call_budget(seconds: float) -> Iterator[CallBudget]:
    """Run a module call with ``seconds`` of budget left (the sandbox host uses this)."""
    budget = CallBudget(time.monotonic() + max(0.0, float(seconds)))
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def budget_until(deadline: float | None) -> Iterator[CallBudget | None]:
    """Run with the given absolute deadline (``time.monotonic()``), or with none: for code that
    serves several callers at once (``BatchingVLM``), whatever this thread's own budget is."""
    budget = None if deadline is None else CallBudget(deadline)
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def current_budget() -> CallBudget | None:
    """The budget of the module call in progress in this context, if any."""
    return _CURRENT.get()


def remaining_s() -> float | None:
    """Seconds left before the current call's deadline (``None``: no budget applies)."""
    budget = _CURRENT.get()
    return None if budget is None else budget.remaining_s()


def check_deadline(what: str) -> None:
    """Raise :class:`ModuleBudgetExceeded` when the current call's deadline has passed."""
    left = remaining_s()
    if left is not None and left <= 0:
        raise ModuleBudgetExceeded(f"{what}: the execution's budget of host seconds in module calls is used up; "
                                   "make fewer or smaller module calls (e.g. fewer frames, fewer OCR calls)")


@contextlib.contextmanager
def not_charged() -> Iterator[None]:
    """Time that is not the program's: work done for every later program of a video (clip
    splitting, clip embeddings), or waiting for a lock shared with other executions. It moves the
    deadline and is reported to the host, which does not charge it to the program."""
    budget = _CURRENT.get()
    if budget is None:
        yield
        return
    start = time.monotonic()
    budget.preparing += 1
    try:
        yield
    finally:
        budget.preparing -= 1
        if budget.preparing == 0:
            spent = time.monotonic() - start
            budget.deadline += spent
            budget.prepared_s += spent


#: Once-per-video preparation inside a module call (:func:`not_charged`).
host_preparation = not_charged
