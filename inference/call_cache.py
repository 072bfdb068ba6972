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
* the folders the execution may read besides its video (its ``allowed_roots``: the clip
  folder), since results name files there (clip paths, frame sources);
* the caller's ``identity`` string: backend names, model and weights version (for a served
  model, what ``/v1/models`` reports it runs, plus an explicit ``weights_version``), the clip
  folder, and any setting that changes outputs (frame caps). The cache cannot know these; the
  executor is given them as ``cache_identity`` (``ModuleRuntime.cache_identity``).

Values live in memory (an LRU of JSON-ready data, so a hit returns fresh objects that the
caller may mutate) and optionally on disk (one JSON file per key, written atomically), so
sweeps in other processes reuse them. Both layers are bounded in bytes (the size of an entry's
JSON); the oldest entries are evicted, and an entry larger than ``max_entry_bytes`` is returned
but not stored. Failed calls are not cached. Concurrent identical calls are computed once:
later callers wait for the first (single flight).
"""

from __future__ import annotations

import contextlib
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
        max_memory_entries: LRU capacity of the in-memory layer, in entries.
        max_memory_bytes: LRU capacity of the in-memory layer, in bytes of entry JSON.
        max_disk_bytes: capacity of the disk layer; over it, the least recently written or read
            files are deleted. Several processes may share a directory: each counts what it
            found at start plus what it wrote, and rescans after writing a tenth of the bound,
            so the directory stays near the bound.
        max_entry_bytes: a value whose JSON is larger is returned but not cached.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, max_memory_entries: int = 50_000,
                 max_memory_bytes: int = 256 << 20, max_disk_bytes: int = 2 << 30, max_entry_bytes: int = 4 << 20):
        for name, value in (("max_memory_entries", max_memory_entries), ("max_memory_bytes", max_memory_bytes),
                            ("max_disk_bytes", max_disk_bytes), ("max_entry_bytes", max_entry_bytes)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.max_memory_entries = max_memory_entries
        self.max_memory_bytes = max_memory_bytes
        self.max_disk_bytes = max_disk_bytes
        self.max_entry_bytes = max_entry_bytes
        self._memory: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._memory_bytes = 0
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._disk_lock = threading.Lock()
        self._disk: OrderedDict[Path, int] | None = None  # file -> bytes, least recently used first
        self._disk_bytes = 0
        self._written_since_scan = 0
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    # -- keys -----------------------------------------------------------------------------
    @staticmethod
    def make_key(module: str, arguments: Mapping[str, Any], *, identity: str, video: str | None = None,
                 path_arguments: Collection[str] = (), roots: Collection[str] = ()) -> str:
        """The content key of one call.

        Args:
            module: module name.
            arguments: bound arguments by parameter name, defaults applied.
            identity: backend identity and weights version (see module docstring).
            video: the execution's video; its file identity is part of the key.
            path_arguments: parameter names whose string values (or lists of strings) are file
                paths and are keyed by file identity rather than text.
            roots: the folders the execution may read besides its video (results name files
                there, so the same call under another clip folder is another call).
        Raises :class:`UncacheableValue` when an argument has no content key.
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
                   "video": path_identity(video) if video is not None else None, "arguments": form,
                   "roots": sorted(os.path.realpath(r) for r in roots)}
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
                return True, self._memory[key][0]
        if self.directory is None:
            return False, None
        path = self._disk_path(key)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            data = json.loads(text)["value"]
        except (OSError, ValueError, KeyError):
            return False, None  # missing or corrupt (e.g. a partial write from a killed run)
        size = len(text.encode("utf-8"))
        self._touch(path, size)
        self._remember(key, data, size)
        return True, data

    def _remember(self, key: str, data: Any, size: int) -> None:
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._memory_bytes -= old[1]
            self._memory[key] = (data, size)
            self._memory_bytes += size
            while self._memory and (len(self._memory) > self.max_memory_entries
                                    or self._memory_bytes > self.max_memory_bytes):
                _, (_, dropped) = self._memory.popitem(last=False)
                self._memory_bytes -= dropped
                self.evicted += 1

    # -- the disk layer's byte bound ------------------------------------------------------
    def _scan_disk(self) -> None:
        """(Re)read the directory's entry files, least recently used (modified) first."""
        assert self.directory is not None
        files = []
        for path in self.directory.glob("*/*.json"):
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime_ns, path, st.st_size))
        files.sort()
        self._disk = OrderedDict((path, size) for _, path, size in files)
        self._disk_bytes = sum(size for _, _, size in files)
        self._written_since_scan = 0

    def _touch(self, path: Path, size: int) -> None:
        """Mark an entry file as just used (read or written); evict the oldest over the bound."""
        with self._disk_lock:
            if self._disk is None or self._written_since_scan > self.max_disk_bytes // 10:
                self._scan_disk()
            assert self._disk is not None
            old = self._disk.pop(path, None)
            self._disk_bytes += size - (old or 0)
            self._disk[path] = size
            while self._disk_bytes > self.max_disk_bytes and len(self._disk) > 1:
                victim, dropped = self._disk.popitem(last=False)
                self._disk_bytes -= dropped
                victim.unlink(missing_ok=True)
                self.evicted += 1
        with contextlib.suppress(OSError):
            os.utime(path)  # other processes' scans see it as recently used

    def disk_bytes(self) -> int:
        """Bytes of the disk layer as this cache counts them (0 without a directory)."""
        if self.directory is None:
            return 0
        with self._disk_lock:
            if self._disk is None:
                self._scan_disk()
            return self._disk_bytes

    def _store(self, key: str, module: str, data: Any) -> bool:
        """Keep ``data`` under ``key``; ``False`` when it is too large to cache."""
        text = json.dumps({"module": module, "value": data}, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
        size = len(text.encode("utf-8"))
        if size > self.max_entry_bytes:
            return False
        self._remember(key, data, size)
        if self.directory is None:
            return True
        path = self._disk_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        with self._disk_lock:
            self._written_since_scan += size
        self._touch(path, size)
        return True

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
                stored = self._store(key, module, data)
            except (UncacheableValue, ValueError):  # no (strict) JSON form: returned, not cached
                return value, False
            return (from_portable(data) if stored else value), False
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
            self._memory_bytes = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "memory_entries": len(self._memory),
                    "memory_bytes": self._memory_bytes, "evicted": self.evicted}
