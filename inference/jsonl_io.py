"""Crash-safe JSONL files and shard assignment, shared by data synthesis and evaluation.

* :func:`parse_shard` / :func:`in_shard` / :func:`shard_name` — a stable assignment of ids to
  ``i/n`` shards (a hash of the id, independent of input order and of Python's hash seed), so
  that n nodes can split one run and a merge can check that together they covered everything.
* :class:`AppendLog` — one JSON line per finished item, flushed and fsynced: after a crash a
  line is either complete or a torn last line, which :func:`read_jsonl_tolerant` ignores and
  the next append cuts off. Ids already in the log are the items a restart skips.
* :func:`write_jsonl_atomic` / :func:`write_text_atomic` — whole files written through a
  temporary file and ``os.replace``: readers see the old file or the new one, never half.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["AppendLog", "in_shard", "parse_shard", "read_jsonl", "read_jsonl_tolerant", "shard_name",
           "write_jsonl_atomic", "write_text_atomic"]


def parse_shard(text: str) -> tuple[int, int]:
    """``'i/n'`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i_text, n_text = text.split("/")
        index, count = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"shard must look like 'i/n' (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return index, count


def in_shard(item_id: str, shard: tuple[int, int]) -> bool:
    """Stable assignment of an id to a shard (independent of input order and of Python's hash seed)."""
    index, count = shard
    digest = hashlib.sha1(item_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count == index


def shard_name(shard: tuple[int, int]) -> str:
    return f"shard-{shard[0]}-of-{shard[1]}"


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a complete JSONL file; any bad line is an error naming the file and line."""
    with Path(path).open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_no}: not valid JSON ({exc})") from None


def read_jsonl_tolerant(path: Path) -> list[dict[str, Any]]:
    """Rows of an append log written by :class:`AppendLog`: a torn last line (a crash mid-write)
    is ignored; a bad line anywhere else means the file is damaged, and is an error."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    lines = path.read_bytes().split(b"\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if index == len(lines) - 1:
                break  # torn last line of a crashed run
            raise ValueError(f"{path}: line {index + 1} is not valid JSON; the file is damaged beyond a "
                             "torn last line (delete or repair that line to resume)") from None
    return rows


class AppendLog:
    """An fsynced, append-only JSONL file keyed by ``key``; thread-safe.

    ``load()`` returns the rows already there (first row per id wins); ``append(row)`` writes
    one line durably and refuses a second row for an id it has seen.
    """

    def __init__(self, path: Path, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self._ids: set[str] = set()
        self._handle = None
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for row in read_jsonl_tolerant(self.path):
            rows.setdefault(str(row[self.key]), row)
        with self._lock:
            self._ids = set(rows)
        return rows

    def __contains__(self, item_id: str) -> bool:
        return str(item_id) in self._ids

    def append(self, row: dict[str, Any]) -> None:
        row_id = str(row[self.key])
        line = json.dumps(row, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"
        with self._lock:
            if row_id in self._ids:
                raise RuntimeError(f"{self.path}: row {row_id!r} written twice")
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._repair_tail()
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._ids.add(row_id)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repair_tail(self) -> None:
        # A crash mid-write can leave a line without its newline; cut it so the next append
        # starts on a fresh line (its id was not counted as finished by load()).
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
