"""Shards and crash-safe JSONL stage files.

A stage appends one JSON line per finished question id to ``<stage>/shard-i-of-n.partial.jsonl``,
flushed and fsynced, so a crash loses at most the line being written. On restart the partial
file is read back (a torn last line is dropped), ids already present are skipped, and when the
stage has seen every id of its shard the rows are written in input order to
``shard-i-of-n.jsonl`` through a temporary file and ``os.replace``: readers only ever see a
complete, ordered, duplicate-free file, and a killed-then-resumed run writes exactly the file an
uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_no}: not valid JSON ({exc})") from None


class StageFile:
    """One stage's output for one shard: an fsynced append log plus the finished, ordered file."""

    def __init__(self, stage_dir: Path, shard: tuple[int, int], key: str = "id"):
        self.key = key
        self.final_path = Path(stage_dir) / f"{shard_name(shard)}.jsonl"
        self.partial_path = Path(stage_dir) / f"{shard_name(shard)}.partial.jsonl"
        self._rows: dict[str, dict[str, Any]] = {}
        self._handle = None
        # Optional display (inference.progress.Progress) advanced once per appended row.
        self.progress: Any = None

    @property
    def done(self) -> bool:
        return self.final_path.is_file()

    def load(self) -> dict[str, dict[str, Any]]:
        """Rows already finished (from the final file, else from the partial log)."""
        self._rows = {}
        source = self.final_path if self.final_path.is_file() else self.partial_path
        if source.is_file():
            self._rows = _read_tolerant(source, self.key)
        return dict(self._rows)

    def append(self, row: dict[str, Any]) -> None:
        """Record one finished row durably. A second row for the same id is a bug."""
        row_id = str(row[self.key])
        if row_id in self._rows:
            raise RuntimeError(f"{self.partial_path}: row {row_id!r} written twice")
        if self._handle is None:
            self.partial_path.parent.mkdir(parents=True, exist_ok=True)
            self._repair_tail()
            self._handle = self.partial_path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._rows[row_id] = row
        if self.progress is not None:
            if row.get("verified"):
                self.progress.count("kept")
            self.progress.advance(failed=row.get("status") in ("host_error", "teacher_error"))

    def finalize(self, order: list[str]) -> list[dict[str, Any]]:
        """Write the finished file in ``order`` (ids without a row are left out) and drop the log."""
        self.close()
        rows = [self._rows[i] for i in order if i in self._rows]
        extra = sorted(set(self._rows) - set(order))
        if extra:
            raise RuntimeError(f"{self.partial_path}: rows for ids outside this shard's input: {extra[:5]}")
        write_jsonl_atomic(self.final_path, rows)
        if self.partial_path.exists():
            self.partial_path.unlink()
        return rows

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _repair_tail(self) -> None:
        # A crash mid-write can leave a line without its newline; cut it so the next append
        # starts on a fresh line (its id was not counted as finished by load()).
        if not self.partial_path.is_file():
            return
        data = self.partial_path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with self.partial_path.open("r+b") as handle:
                handle.truncate(cut)


def _read_tolerant(path: Path, key: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    lines = path.read_bytes().split(b"\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if index == len(lines) - 1:
                break  # torn last line of a crashed run
            raise ValueError(f"{path}: line {index + 1} is not valid JSON; the file is damaged "
                             f"beyond a torn last line, delete it to redo this stage") from None
        rows.setdefault(str(row[key]), row)  # first write wins; a duplicate would be identical work
    return rows
