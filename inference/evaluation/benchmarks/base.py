"""What every benchmark loader returns, the registry of loaders, and helpers they share.

A loader reads one benchmark's published files (as downloaded, unmodified) and returns a
:class:`BenchmarkData`: the QA records it could use (DESIGN.md §2) plus, never silently dropped,

* ``skipped`` — items that cannot be asked (a generation task, a malformed item, a missing
  video), each with a reason;
* ``unscorable`` — items that can be asked but have no usable ground truth (an MLVU answer that
  is not among the candidates), excluded from accuracy and reported;
* ``files`` — the annotation files read (their hashes go into the run's provenance);
* ``settings`` — the loader's choices that change which records exist (e.g. Video-MME's
  subset rule), written into the results;
* ``breakdowns`` — the ``meta`` keys the benchmark reports accuracy by (the categories are the
  values found in the data, not a fixed list).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.types import OPTION_LETTERS, QARecord

VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")


@dataclass
class LoadIssue:
    """One benchmark item a loader could not use (``skipped``) or cannot score (``unscorable``)."""

    id: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "reason": self.reason}


@dataclass
class BenchmarkData:
    """The loaded records of one benchmark split and everything about how they were loaded."""

    benchmark: str
    split: str
    records: list[QARecord] = field(default_factory=list)
    skipped: list[LoadIssue] = field(default_factory=list)
    unscorable: list[LoadIssue] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    breakdowns: list[str] = field(default_factory=list)
    #: Whether the split has ground truth (LongVideoBench's test file has none: predictions only).
    labelled: bool = True
    notes: list[str] = field(default_factory=list)

    def skip(self, item_id: str, reason: str) -> None:
        self.skipped.append(LoadIssue(str(item_id), reason))

    def mark_unscorable(self, item_id: str, reason: str) -> None:
        self.unscorable.append(LoadIssue(str(item_id), reason))

    def file_hashes(self) -> dict[str, str]:
        """``{path: sha256}`` of the annotation files read."""
        return {str(p): sha256_file(p) for p in self.files}

    def summary(self) -> dict[str, Any]:
        """Counts, and the skipped/unscorable items grouped by reason (reason -> count, first ids)."""
        def group(issues: Sequence[LoadIssue]) -> list[dict[str, Any]]:
            by_reason: dict[str, list[str]] = {}
            for issue in issues:
                by_reason.setdefault(issue.reason, []).append(issue.id)
            return [{"reason": reason, "count": len(ids), "ids": ids[:10]}
                    for reason, ids in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))]

        return {"benchmark": self.benchmark, "split": self.split, "records": len(self.records),
                "labelled": self.labelled, "skipped": len(self.skipped), "unscorable": len(self.unscorable),
                "skipped_by_reason": group(self.skipped), "unscorable_by_reason": group(self.unscorable),
                "settings": self.settings, "notes": self.notes,
                "files": {str(p): sha256_file(p) for p in self.files}}

    def check_unique_ids(self) -> None:
        counts = Counter(r.id for r in self.records)
        repeated = [i for i, n in counts.items() if n > 1]
        if repeated:
            raise ValueError(f"{self.benchmark}: record id(s) {repeated[:5]} appear more than once; ids key "
                             "resumable runs and must be unique")


Loader = Callable[..., BenchmarkData]


@dataclass(frozen=True)
class BenchmarkSpec:
    """A registered benchmark: its loader and what it needs to be found and reported."""

    name: str
    loader: Loader
    splits: tuple[str, ...]
    default_split: str
    breakdowns: tuple[str, ...]
    description: str
    #: How the headline accuracy is computed: "micro" (over questions) or "task_mean" (MLVU's
    #: M-Avg: the mean of per-task accuracies over the first breakdown key).
    headline: str = "micro"


BENCHMARKS: dict[str, BenchmarkSpec] = {}


def register_benchmark(name: str, *, splits: Sequence[str], default_split: str, breakdowns: Sequence[str],
                       description: str, headline: str = "micro") -> Callable[[Loader], Loader]:
    """Register ``loader(root: Path, split: str, **options) -> BenchmarkData`` under ``name``."""
    def decorator(loader: Loader) -> Loader:
        if name in BENCHMARKS and BENCHMARKS[name].loader is not loader:
            raise ValueError(f"a benchmark named {name!r} is already registered")
        BENCHMARKS[name] = BenchmarkSpec(name, loader, tuple(splits), default_split, tuple(breakdowns),
                                         description, headline)
        return loader
    return decorator


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path, what: str) -> Any:
    """A JSON file, with an error naming the file and what it should be."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON ({exc})") from None


def find_file(candidates: Iterable[Path]) -> Path | None:
    """The first existing file among ``candidates``."""
    for path in candidates:
        if path.is_file():
            return path
    return None


def video_candidates(folders: Iterable[Path], stem_or_name: str) -> list[Path]:
    """``folder/name`` as given, then ``folder/stem.<ext>`` for the usual video extensions."""
    out: list[Path] = []
    name = Path(stem_or_name)
    for folder in folders:
        out.append(folder / name)
        if not name.suffix or name.suffix not in VIDEO_EXTENSIONS:
            out += [folder / f"{stem_or_name}{ext}" for ext in VIDEO_EXTENSIONS]
        else:
            out += [folder / f"{name.stem}{ext}" for ext in VIDEO_EXTENSIONS if ext != name.suffix]
    return out


_LETTER_PREFIX = re.compile(r"^\s*[\(\[]?\s*([A-Z])\s*[\)\]\.:：、]\s*")


def strip_letter_prefix(option: str, expected_letter: str) -> str:
    """``"A. red"`` / ``"(A) red"`` / ``"A) red"`` -> ``"red"`` when the prefix is ``expected_letter``;
    text without such a prefix is returned stripped (options are re-lettered by the prompt)."""
    text = str(option).strip()
    m = _LETTER_PREFIX.match(text)
    if m and m.group(1) == expected_letter:
        return text[m.end():].strip()
    return text


def letter_for_index(index: int, num_choices: int) -> str | None:
    return OPTION_LETTERS[index] if 0 <= index < num_choices <= len(OPTION_LETTERS) else None


def clean_choices(raw: Any) -> list[str] | None:
    """A list of option texts, or ``None`` if ``raw`` is not a list of at least two strings."""
    if hasattr(raw, "tolist"):  # numpy arrays from parquet
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)) or len(raw) < 2:
        return None
    return [str(c).strip() for c in raw]


def is_missing(value: Any) -> bool:
    """``None``, NaN (pandas' missing value in a parquet column) or a blank string."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def clean_value(value: Any) -> Any:
    """A parquet/JSON scalar made plain for a record's ``meta``: missing -> ``None``, numpy
    scalars -> Python ones, strings stripped (breakdown categories must compare equal)."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if is_missing(value):
        return None
    return value.strip() if isinstance(value, str) else value


def as_index(value: Any) -> int | None:
    """An integer index from an int, a numpy integer (parquet) or a digit string; else ``None``
    (bools and non-integral floats are not indices)."""
    if isinstance(value, bool) or is_missing(value):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def as_seconds(value: Any) -> float | None:
    """A positive duration in seconds, or ``None`` (missing, NaN, zero, not a number)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


class VideoSearch:
    """Finds a video by file name anywhere under a benchmark root, for downloads unpacked into
    nested folders (``videos/videos/x.mp4``, ``MLVU_Test/video/x.mp4``) or with another extension.

    The tree is walked once, on the first lookup that the usual folders did not answer; how many
    videos were found this way is reported by :meth:`report`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._by_name: dict[str, list[Path]] | None = None
        self._by_stem: dict[str, list[Path]] = {}
        self.found: set[str] = set()
        self.ambiguous: set[str] = set()

    def _index(self) -> dict[str, list[Path]]:
        if self._by_name is None:
            self._by_name = {}
            suffixes = {e.lower() for e in VIDEO_EXTENSIONS}
            found: list[Path] = []
            seen: set[str] = set()
            # symlinked folders are followed (video folders are often links to other disks), each
            # real folder once, so a link loop cannot recurse forever
            for folder, dirs, names in os.walk(self.root, followlinks=True):
                real = os.path.realpath(folder)
                if real in seen:
                    dirs[:] = []
                    continue
                seen.add(real)
                found += [Path(folder) / n for n in names if Path(n).suffix.lower() in suffixes]
            for path in sorted(found):
                if path.is_file():
                    self._by_name.setdefault(path.name, []).append(path)
                    self._by_stem.setdefault(path.stem, []).append(path)
        return self._by_name

    def find(self, name: str, prefer: str | None = None) -> Path | None:
        """The file called ``name`` (or ``stem.<any video extension>`` when ``name`` has no video
        extension or is not found as given) under the root; with several, the one whose path
        contains ``prefer`` (e.g. the task folder), else the first in sorted order."""
        if not name:
            return None
        index = self._index()
        given = Path(name)
        hits = list(index.get(given.name, []))
        if not hits:
            stem = given.stem if given.suffix.lower() in {e.lower() for e in VIDEO_EXTENSIONS} else given.name
            hits = list(self._by_stem.get(stem, []))
        if not hits:
            return None
        # a relative path given by the annotation (``sub/x.mp4``) must match its tail
        if len(given.parts) > 1:
            tail = [p for p in hits if p.as_posix().endswith("/" + given.as_posix())]
            hits = tail or hits
        if len(hits) > 1 and prefer:
            preferred = [p for p in hits if prefer in p.relative_to(self.root).parts]
            hits = preferred or hits
        if len(hits) > 1:
            self.ambiguous.add(name)
        self.found.add(str(hits[0]))
        return hits[0]

    def report(self, data: BenchmarkData) -> None:
        """Note in ``data`` how many videos were found outside the usual folders."""
        if self.found:
            data.settings["videos_found_by_search"] = len(self.found)
        if self.ambiguous:
            data.notes.append(f"{len(self.ambiguous)} video name(s) match several files under {str(self.root)!r}; "
                              f"took the first in sorted order (e.g. {sorted(self.ambiguous)[:3]})")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if hasattr(value, "tolist"):
        value = value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else [value]
