"""Sandboxed execution of generated programs (docs/sandbox.md).

``from inference.sandbox import ProgramExecutor, SandboxLimits``. The names are loaded lazily so
that the worker process, which imports :mod:`inference.sandbox.worker`, does not import the
host side (and the project's types) it never uses.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProgramExecutor", "SandboxLimits", "SandboxStartupError", "InvalidResult", "coerce_answer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from inference.sandbox import host

        return getattr(host, name)
    raise AttributeError(f"module 'inference.sandbox' has no attribute {name!r}")
