"""The shared progress display (inference/progress.py): log lines off a terminal, a tqdm bar on
one, nothing when quiet; rate, ETA and counters in both."""

from __future__ import annotations

import io

from inference.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_off_a_terminal_with_rate_eta_counters_and_extra() -> None:
    stream = io.StringIO()
    cost = {"usd": 0.0}
    with Progress(4, "programs", stream=stream, unit="q", log_interval_s=0.0,
                  extra=lambda: {"teacher": f"${cost['usd']:.2f}"}) as bar:
        bar.advance()
        cost["usd"] = 1.5
        bar.advance(failed=True)
        bar.count("host_failures")
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()               # no carriage returns in a Slurm log
    assert "programs: 1/4 (25%)" in lines[0] and "q/s" in lines[0] and "ETA" in lines[0]
    assert "teacher=$0.00" in lines[0]
    assert lines[-1].endswith("(done)")
    assert "programs: 2/4 (50%)" in lines[-1] and "failed=1" in lines[-1] and "host_failures=1" in lines[-1]
    assert "teacher=$1.50" in lines[-1]


def test_log_lines_are_spaced_by_the_interval() -> None:
    stream = io.StringIO()
    with Progress(100, "eval", stream=stream, log_interval_s=3600.0) as bar:
        for _ in range(100):
            bar.advance()
    assert len(stream.getvalue().splitlines()) == 1     # only the final line within the interval
    assert "eval: 100/100 (100%)" in stream.getvalue()


def test_a_bar_on_a_terminal_and_nothing_when_quiet() -> None:
    tty = Terminal()
    with Progress(3, "label", stream=tty) as bar:
        bar.advance(2, failed=1)
    assert "label" in tty.getvalue() and "2/3" in tty.getvalue() and "failed=1" in tty.getvalue()
    quiet = Terminal()
    with Progress(3, "label", stream=quiet, quiet=True) as bar:
        bar.advance(3)
    assert quiet.getvalue() == "" and bar.done == 3


def test_unknown_total_and_a_total_set_later() -> None:
    stream = io.StringIO()
    bar = Progress(None, "r2", stream=stream, log_interval_s=0.0)
    bar.advance()
    assert "r2: 1 |" in stream.getvalue() and "ETA" not in stream.getvalue()
    bar.set_total(2)
    bar.advance()
    bar.close()
    bar.close()                                        # idempotent
    assert stream.getvalue().splitlines()[-1].count("r2: 2/2 (100%)") == 1
