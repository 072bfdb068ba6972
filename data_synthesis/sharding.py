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

from pathlib import Path
from typing import Any

# The generic parts live in inference/ (evaluation uses them too); re-exported here.
from inference.jsonl_io import (  # noqa: F401
    AppendLog,
    in_shard,
    parse_shard,
    read_jsonl,
    read_jsonl_tolerant,
    shard_name,
    write_jsonl_atomic,
    write_text_atomic,
)


class StageFile:
    """One stage's output for one shard: an fsynced append log (``inference.jsonl_io.AppendLog``)
    plus the finished, ordered file written when the stage completes."""

    def __init__(self, stage_dir: Path, shard: tuple[int, int], key: str = "id"):
        self.key = key
        self.final_path = Path(stage_dir) / f"{shard_name(shard)}.jsonl"
        self.partial_path = Path(stage_dir) / f"{shard_name(shard)}.partial.jsonl"
        self._log = AppendLog(self.partial_path, key)
        self._rows: dict[str, dict[str, Any]] = {}
        # Optional display (inference.progress.Progress) advanced once per appended row.
        self.progress: Any = None

    @property
    def done(self) -> bool:
        return self.final_path.is_file()

    def load(self) -> dict[str, dict[str, Any]]:
        """Rows already finished (from the final file, else from the partial log)."""
        if self.final_path.is_file():
            self._rows = {}
            for row in read_jsonl_tolerant(self.final_path):
                self._rows.setdefault(str(row[self.key]), row)
        else:
            self._rows = self._log.load()  # first write wins; a duplicate would be identical work
        return dict(self._rows)

    def append(self, row: dict[str, Any]) -> None:
        """Record one finished row durably. A second row for the same id is a bug."""
        row_id = str(row[self.key])
        if row_id in self._rows:
            raise RuntimeError(f"{self.partial_path}: row {row_id!r} written twice")
        self._log.append(row)
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
        self._log.close()
