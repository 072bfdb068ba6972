"""Content-addressed memo of module calls (DESIGN.md §3 "Call cache").

The 8 programs of a GRPO group, the rounds of a refinement loop and the points of a threshold
sweep make many identical module calls (the same retrieval, the same frames, the same VQA).
A call is identified by its content:

* the module name and its bound arguments with defaults applied (so ``f(v, q)`` and
  ``f(v, q, top_k=3)`` are the same call when 3 is the default);
* file identity instead of path text for the video and every path argument or frame source:
  ``realpath``, size and modification time, so a re-encoded or rewritten video is a different
  video, while two spellings of one path (relative, through a symlink) are the same;
* the identity of the execution's video (modules may read context such as subtitles from it);
* the caller's ``identity`` string: backend names, model and weights version, and any setting
  that changes outputs (sampling temperature, frame caps). The cache cannot know these; the
  executor is given them as ``cache_identity``.

Values live in memory (an LRU of JSON-ready data, so a hit returns fresh objects that the
caller may mutate) and optionally on disk (one JSON file per key, written atomically), so
sweeps in other processes reuse them. Failed calls are not cached. Concurrent identical calls
are computed once: later callers wait for the first (single flight).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from inference.sandbox.protocol import CodecLimits, ProtocolError, decode_value, encode_value
from inference.types import AnswerResult, Frame

__all__ = ["CallCache", "UncacheableValue", "path_identity", "to_portable", "from_portable"]

_FRAME = "$Frame"
_ANSWER = "$AnswerResult"
_PATH = "$path"
# Cached values are produced by trusted modules; the limits only guard against runaway sizes.
_LIMITS = CodecLimits(max_depth=64, max_items=5_000_000, max_string_chars=50_000_000, max_int_bits=4096)


class UncacheableValue(TypeError):
    """A module returned something the cache cannot store as JSON (it is returned, not cached)."""


def path_identity(path: str) -> str:
    """Content identity of a file path: ``realpath|size|mtime_ns`` (``realpath`` alone when the
    path does not exist)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return real
    return f"{real}|{st.st_size}|{st.st_mtime_ns}"


def _portable_extension(value: Any) -> Any:
    if type(value) is Frame:
        return {_FRAME: value.to_dict()}
    if type(value) is AnswerResult:
        return {_ANSWER: encode_value(value.to_dict(), limits=_LIMITS, extension=_portable_extension)}
    item = getattr(value, "item", None)
    if type(value).__module__ == "numpy" and callable(item):  # numpy scalar -> Python number
        return encode_value(item(), limits=_LIMITS)
    return NotImplemented


def to_portable(value: Any) -> Any:
    """JSON-ready form of a module result (frames, answer results, tuples, numpy scalars...).

    Raises :class:`UncacheableValue` for anything else."""
    try:
        return encode_value(value, limits=_LIMITS, extension=_portable_extension)
    except (TypeError, ValueError) as exc:
        raise UncacheableValue(str(exc)) from None


_PORTABLE_TAGS = {
    _FRAME: lambda tag: Frame.from_dict(tag[_FRAME]),
    _ANSWER: lambda tag: AnswerResult.from_dict(decode_value(tag[_ANSWER], limits=_LIMITS)),
}


def from_portable(data: Any) -> Any:
    """Inverse of :func:`to_portable`."""
    return decode_value(data, limits=_LIMITS, extensions=_PORTABLE_TAGS)


def _key_extension(value: Any) -> Any:
    """Key form: like the portable form, but frames name their source by content identity."""
    if type(value) is Frame:
        data = value.to_dict()
        data["source"] = path_identity(value.source)
        return {_FRAME: data}
    return _portable_extension(value)


class CallCache:
    """Memoises module calls by content, in memory and optionally on disk.

    Thread-safe. ``hits``/``misses`` count lookups over the cache's life; the executor counts
    per execution in the :class:`~inference.types.ExecutionRecord`.

    Args:
        directory: where to persist entries (created if missing); ``None`` keeps them in memory.
        max_memory_entries: LRU capacity of the in-memory layer.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, max_memory_entries: int = 50_000):
        if max_memory_entries < 1:
            raise ValueError(f"max_memory_entries must be >= 1, got {max_memory_entries}")
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.max_memory_entries = max_memory_entries
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # -- keys -----------------------------------------------------------------------------
    @staticmethod
    def make_key(module: str, arguments: Mapping[str, Any], *, identity: str, video: str | None = None,
                 path_arguments: Collection[str] = ()) -> str:
        """The content key of one call.

        Args:
            module: module name.
            arguments: bound arguments by parameter name, defaults applied.
            identity: backend identity and weights version (see module docstring).
            video: the execution's video; its file identity is part of the key.
            path_arguments: parameter names whose string values (or lists of strings) are file
                paths and are keyed by file identity rather than text.
        Raises :class:`UncacheableValue` when an argument has no content form.
        """
        args: dict[str, Any] = {}
        for name, value in arguments.items():
            if name in path_arguments and isinstance(value, str):
                value = {_PATH: path_identity(value)}
            elif name in path_arguments and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                value = [{_PATH: path_identity(v)} for v in value]
            args[name] = value
        try:
            form = encode_value(args, limits=_LIMITS, extension=_key_extension)
        except (TypeError, ValueError) as exc:
            raise UncacheableValue(f"{module}: arguments have no content key: {exc}") from None
        payload = {"module": module, "identity": identity,
                   "video": path_identity(video) if video is not None else None, "arguments": form}
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # -- lookups --------------------------------------------------------------------------
    def _disk_path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def _load(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return True, self._memory[key]
        if self.directory is None:
            return False, None
        try:
            with open(self._disk_path(key), encoding="utf-8") as f:
                data = json.load(f)["value"]
        except (OSError, ValueError, KeyError):
            return False, None  # missing or corrupt (e.g. a partial write from a killed run)
        self._remember(key, data)
        return True, data

    def _remember(self, key: str, data: Any) -> None:
        with self._lock:
            self._memory[key] = data
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_memory_entries:
                self._memory.popitem(last=False)

    def _store(self, key: str, module: str, data: Any) -> None:
        self._remember(key, data)
        if self.directory is None:
            return
        path = self._disk_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"module": module, "value": data}, f, ensure_ascii=False, separators=(",", ":"))
        os.replace(tmp, path)  # atomic: readers see the old file or the whole new one

    def get_or_compute(self, key: str, compute: Callable[[], Any], *, module: str = "") -> tuple[Any, bool]:
        """Return ``(value, hit)``; compute and store on a miss.

        If another thread is computing the same key, wait for it and count a hit. Exceptions
        from ``compute`` propagate and nothing is stored; a waiting thread then computes itself.
        """
        while True:
            found, data = self._load(key)
            if found:
                try:
                    value = from_portable(data)
                except ProtocolError:
                    found = False  # written by an incompatible version; recompute
                else:
                    with self._lock:
                        self.hits += 1
                    return value, True
            with self._lock:
                event = self._inflight.get(key)
                if event is None:
                    self._inflight[key] = threading.Event()
                    break
            event.wait()
        try:
            with self._lock:
                self.misses += 1
            value = compute()
            try:
                data = to_portable(value)
            except UncacheableValue:
                return value, False
            self._store(key, module, data)
            return from_portable(data), False
        finally:
            with self._lock:
                self._inflight.pop(key).set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)

    def clear_memory(self) -> None:
        """Drop the in-memory layer (disk entries stay)."""
        with self._lock:
            self._memory.clear()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "memory_entries": len(self._memory)}
