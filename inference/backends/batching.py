"""Serve concurrent VLM calls together.

When several programs run at once (the 8 samples of a GRPO group, a batch evaluation), each
makes its own ``query_*`` calls. One by one, an in-process model answers them serially and a
server sees one request at a time. :class:`BatchingVLM` wraps a backend: a call waits up to
``window_s`` for others to join it (or until ``max_batch`` are waiting), then the group is
answered by one :meth:`~inference.backends.vlm.VLMBackend.generate_batch` call of the wrapped
backend (one batched forward in-process; concurrent requests for a server). Each caller gets
its own reply, exactly as from a direct call. When the batched call fails, its requests are
answered again one at a time, so that a failure reaches only the caller whose request causes it:
one program's impossible request (an endpoint's HTTP 400, an input the processor cannot take)
must not fail the other programs of a GRPO step batched with it, which would hand the one that
caused it a relative gain in advantage. Each caller's module-time deadline (``inference.budget``, set by the sandbox
host) is kept: the batch runs until the latest of them, and a caller whose own deadline passed
gets ``ModuleBudgetExceeded`` instead of its reply.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.backends.vlm import GenerateRequest, Generation, VideoWithMetadata, VLMBackend
from inference.budget import budget_until, current_budget
from inference.errors import ModuleBudgetExceeded

__all__ = ["BatchingVLM"]


@dataclass
class _Pending:
    request: GenerateRequest
    deadline: float | None = None  # the caller's module-time deadline (time.monotonic()), if any
    done: threading.Event = field(default_factory=threading.Event)
    result: Generation | None = None
    error: BaseException | None = None


class BatchingVLM(VLMBackend):
    """A :class:`VLMBackend` that gathers concurrent calls into batches for ``backend``.

    Args:
        backend: the VLM that answers (``generate_batch``).
        window_s: how long the first call of a batch waits for company.
        max_batch: most calls per batch (a full batch is sent at once).

    ``batches`` and ``requests`` count what was sent (``requests / batches`` is the mean batch size);
    ``isolated_batches`` the failed batches answered again one request at a time.
    """

    def __init__(self, backend: VLMBackend, *, window_s: float = 0.05, max_batch: int = 32) -> None:
        if max_batch < 1 or window_s < 0:
            raise ValueError(f"BatchingVLM needs max_batch >= 1 and window_s >= 0, got {max_batch}, {window_s}")
        self.backend = backend
        self.name = getattr(backend, "name", "vlm")
        self.window_s = window_s
        self.max_batch = max_batch
        self.batches = 0
        self.requests = 0
        self.isolated_batches = 0  # failed batches answered again request by request
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._leader = False  # a caller is collecting the next batch

    def __getattr__(self, name: str) -> Any:  # checkpoint, model, ... of the wrapped backend
        return getattr(self.backend, name)

    def identity(self) -> str:
        return self.backend.identity()

    def generate(self, prompt: str | None = None, *, messages: Sequence[dict[str, Any]] | None = None,
                 images: Sequence[np.ndarray] = (), videos: Sequence[VideoWithMetadata] = (),
                 max_new_tokens: int = 512, temperature: float = 0.0, top_p: float | None = None,
                 top_k: int | None = None, top_logprobs: int = 0, seed: int | None = None) -> Generation:
        budget = current_budget()
        pending = _Pending(GenerateRequest(prompt, messages, tuple(images), tuple(videos), max_new_tokens,
                                           temperature, top_p, top_k, top_logprobs, seed),
                           deadline=budget.deadline if budget is not None else None)
        with self._cond:
            self._queue.append(pending)
            lead = not self._leader
            if lead:
                self._leader = True
            else:
                self._cond.notify_all()  # a full batch may be waiting for this call
        if lead:
            self._lead()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        return self.backend.generate_batch(requests)

    def _lead(self) -> None:
        """Collect calls for ``window_s`` (or until ``max_batch``), then answer them together."""
        deadline = time.monotonic() + self.window_s
        with self._cond:
            while len(self._queue) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            # Calls beyond this batch get a leader of their own.
            self._leader = bool(self._queue)
            next_leader = self._queue[0] if self._queue else None
        if next_leader is not None:
            threading.Thread(target=self._lead, daemon=True).start()
        self.batches += 1
        self.requests += len(batch)
        deadlines = [p.deadline for p in batch]
        latest = None if any(d is None for d in deadlines) else max(deadlines)  # type: ignore[type-var]
        replies = self._answer(batch, latest)
        now = time.monotonic()
        for p, reply in zip(batch, replies):
            if isinstance(reply, BaseException):
                p.error = reply
            elif p.deadline is not None and now > p.deadline:
                p.error = ModuleBudgetExceeded("the VLM call outlasted the execution's budget of host seconds in "
                                               "module calls; make fewer or smaller module calls")
            else:
                p.result = reply
            p.done.set()

    def _answer(self, batch: list[_Pending], latest: float | None) -> list[Generation | BaseException]:
        """Each pending call's reply, or the exception to raise in its caller."""
        try:
            with budget_until(latest):
                results = self.backend.generate_batch([p.request for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{type(self.backend).__name__}.generate_batch returned {len(results)} "
                                   f"replies for {len(batch)} requests")
            return list(results)
        except ModuleBudgetExceeded as exc:
            return [exc] * len(batch)  # the latest caller's deadline passed: alone, each would fail too
        except Exception as exc:  # noqa: BLE001 - handed to the callers, which re-raise it
            if len(batch) == 1:
                return [exc]
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt and the like: every caller
            return [exc] * len(batch)
        # One request may have failed the whole batch: answer each alone, within its own deadline.
        self.isolated_batches += 1
        replies: list[Generation | BaseException] = []
        for p in batch:
            try:
                with budget_until(p.deadline):
                    (reply,) = self.backend.generate_batch([p.request])
                replies.append(reply)
            except BaseException as exc:  # noqa: BLE001 - raised in this request's caller only
                replies.append(exc)
        return replies
