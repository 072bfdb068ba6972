"""One progress idiom for every long loop (data synthesis, evaluation, GRPO): a tqdm bar with
rate, ETA and running counters on a terminal; plain, timestamped log lines when the output is
not a terminal (a Slurm log would otherwise fill with carriage returns); nothing under quiet.

    with Progress(total=len(items), desc="programs", extra=lambda: {"teacher": f"${cost():.2f}"}) as bar:
        for item in items:
            ...
            bar.advance(failed=not ok)      # one item done
            bar.count("host_failures")      # a named counter, shown as host_failures=N

Counters and ``extra`` (a callable returning ``{name: value}``, evaluated at each refresh, e.g.
the running teacher cost) are shown after the rate and ETA.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger("videopro.progress")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Progress of ``total`` items (``None``: unknown).

    Args:
        total: items expected; ``set_total`` changes it later.
        desc: what is being done (the bar's label).
        quiet: show nothing.
        unit: the item's name in the rate (``"q"`` for questions, ...).
        stream: where to draw (default ``sys.stderr``); a bar when it is a terminal, log lines
            otherwise.
        log_interval_s: seconds between log lines when not on a terminal (and at the end).
        extra: called at each refresh for more ``{name: value}`` fields (e.g. running cost).
    """

    def __init__(self, total: int | None, desc: str, *, quiet: bool = False, unit: str = "it",
                 stream: IO[str] | None = None, log_interval_s: float = 30.0,
                 extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.total, self.desc, self.quiet, self.unit = total, desc, quiet, unit
        self.stream = stream if stream is not None else sys.stderr
        self.log_interval_s = log_interval_s
        self.extra = extra
        self.done = 0
        self.counters: dict[str, int] = {}
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Any = None
        self._closed = False
        if not quiet and self._is_terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True, leave=True)

    def _is_terminal(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    # -- updates -----------------------------------------------------------------------------
    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, n: int = 1, *, failed: bool | int = False) -> None:
        """``n`` items finished (``failed`` of them, or all when ``True``, unsuccessfully)."""
        self.done += n
        failures = n if failed is True else int(failed or 0)
        if failures:
            self.counters["failed"] = self.counters.get("failed", 0) + failures
        self._refresh(n)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the named counter (shown as ``name=N``) without finishing an item."""
        self.counters[name] = self.counters.get(name, 0) + n
        self._refresh(0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.set_postfix_str(self._fields(), refresh=False)
            self._bar.close()
        elif not self.quiet:
            self._log_line(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- display -----------------------------------------------------------------------------
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def _fields(self) -> str:
        values: dict[str, Any] = dict(self.counters)
        if self.extra is not None:
            values.update(self.extra())
        return ", ".join(f"{k}={v}" for k, v in values.items())

    def line(self) -> str:
        """The plain status line: ``desc: done/total (pct) | rate | ETA | counters``."""
        count = f"{self.done}/{self.total} ({100.0 * self.done / self.total:.0f}%)" if self.total else f"{self.done}"
        parts = [f"{self.desc}: {count}", f"{self.rate():.2f} {self.unit}/s",
                 f"elapsed {_duration(time.monotonic() - self.started)}"]
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        fields = self._fields()
        if fields:
            parts.append(fields)
        return " | ".join(parts)

    def _log_line(self, final: bool = False) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.stream.write(f"{stamp} {self.line()}{' (done)' if final else ''}\n")
        self.stream.flush()
        self._last_log = time.monotonic()

    def _refresh(self, n: int) -> None:
        if self.quiet or self._closed:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._fields(), refresh=False)
            self._bar.update(n)
        elif time.monotonic() - self._last_log >= self.log_interval_s:
            self._log_line()
