"""One progress display for long loops: a tqdm bar on a terminal, plain log lines otherwise.

    bar = progress(total=len(items), desc="eval lvbench")
    for item in items:
        ...
        bar.update(1)
        bar.set_postfix(correct=12, errors=0)
    bar.close()

``progress(iterable_or_total, desc, quiet=False)`` returns an object with ``update(n)``,
``set_postfix(**counters)`` and ``close()`` (and iterates when given an iterable). On a TTY it
is a tqdm bar (rate and time estimate); when stderr is not a TTY (batch jobs, CI logs) it
writes one line every ``log_every_s`` seconds and at the end, with done/total, rate, ETA and
the counters; under ``quiet`` it writes nothing. Thread-safe: workers may call ``update``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["Progress", "progress"]


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """See the module docstring. Use :func:`progress` to build one."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, desc: str, *, quiet: bool = False,
                 stream: TextIO | None = None, log_every_s: float = 30.0, initial: int = 0,
                 tty: bool | None = None) -> None:
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.log_every_s = log_every_s
        self.n = initial
        self._initial = initial
        self._postfix: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_log = self._start
        self._closed = False
        is_tty = (tty if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)()))
        self._bar = None
        if not quiet and is_tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, initial=initial, file=self.stream, dynamic_ncols=True)

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress display was built from a total, not an iterable")
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            if self._bar is not None:
                self._bar.update(n)
            elif not self.quiet and time.monotonic() - self._last_log >= self.log_every_s:
                self._log()

    def set_postfix(self, **counters: Any) -> None:
        with self._lock:
            self._postfix.update(counters)
            if self._bar is not None:
                self._bar.set_postfix(self._postfix, refresh=False)

    def line(self) -> str:
        """The status line the non-TTY mode writes: ``desc: done/total (rate, elapsed, ETA) k=v``."""
        elapsed = time.monotonic() - self._start
        done_here = self.n - self._initial
        rate = done_here / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total is not None else "")]
        timing = f"{rate * 60:.1f}/min, elapsed {_fmt_duration(elapsed)}"
        if self.total is not None and rate > 0:
            timing += f", ETA {_fmt_duration((self.total - self.n) / rate)}"
        parts.append(f"({timing})")
        parts += [f"{k}={v}" for k, v in self._postfix.items()]
        return " ".join(parts)

    def _log(self) -> None:
        self._last_log = time.monotonic()
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.set_postfix(self._postfix)
                self._bar.close()
            elif not self.quiet:
                self._log()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable_or_total: Iterable[Any] | int | None = None, desc: str = "", quiet: bool = False,
             **kwargs: Any) -> Progress:
    """A :class:`Progress` over an iterable (its ``len`` is the total when it has one) or a total."""
    if isinstance(iterable_or_total, int) or iterable_or_total is None:
        return Progress(None, iterable_or_total, desc, quiet=quiet, **kwargs)
    total = kwargs.pop("total", None)
    if total is None and hasattr(iterable_or_total, "__len__"):
        total = len(iterable_or_total)  # type: ignore[arg-type]
    return Progress(iterable_or_total, total, desc, quiet=quiet, **kwargs)
