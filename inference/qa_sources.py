"""Question sources: a registry of loaders that turn a dataset's own format into QA records.

``load_qa_records(path_or_name, split, ...)`` is the one entry point synthesis and benchmark
evaluation share. A path to a ``.jsonl``/``.json`` file is read as generic QA records
(DESIGN.md §2); any other string names a registered source. A benchmark adds itself with::

    @register_source("lvbench")
    def load_lvbench(root: Path, split: str, **options) -> Iterator[QARecord]: ...

Every evaluation benchmark of :mod:`inference.evaluation.benchmarks` (LVBench, Video-MME,
LongVideoBench, MLVU, CG-Bench) is a source too, read by the same loader evaluation uses.
CG-Bench (the paper's training source) is registered here with its synthesis splits: ``train``
(full minus mini), ``full``, ``mini``; videos need not be downloaded for synthesis.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from inference.types import QARecord

SourceLoader = Callable[..., Iterator[QARecord]]
_SOURCES: dict[str, SourceLoader] = {}


def register_source(name: str) -> Callable[[SourceLoader], SourceLoader]:
    """Register ``loader(root: Path, split: str, **options) -> Iterator[QARecord]`` under ``name``."""
    def decorator(loader: SourceLoader) -> SourceLoader:
        if name in _SOURCES and _SOURCES[name] is not loader:
            raise ValueError(f"a QA source named {name!r} is already registered")
        _SOURCES[name] = loader
        return loader
    return decorator


def registered_sources() -> list[str]:
    from inference.evaluation.benchmarks import BENCHMARKS

    return sorted(set(_SOURCES) | set(BENCHMARKS))


def load_qa_records(path_or_name: str | Path, split: str = "train", *, root: str | Path | None = None,
                    limit: int | None = None, **options: Any) -> Iterator[QARecord]:
    """QA records of a JSONL file or of a registered source's ``split``.

    Ids must be unique (they key resumable runs); a repeated id is an error.
    """
    text = str(path_or_name)
    if not text:
        raise ValueError("no QA source given: pass a QA JSONL path or one of " + ", ".join(registered_sources()))
    if text.endswith((".jsonl", ".json")) or Path(text).is_file():
        records = load_qa_jsonl(text)
    elif text in _SOURCES or _benchmark_source(text) is not None:
        if root is None or not str(root):
            raise ValueError(f"QA source {text!r} needs the root folder of its download (source_root / root=)")
        loader = _SOURCES.get(text) or _benchmark_source(text)
        records = loader(Path(root), split, **options)  # type: ignore[misc]
    else:
        raise ValueError(f"unknown QA source {text!r}: not a .jsonl/.json path and not a registered "
                         f"source ({', '.join(registered_sources())})")
    seen: set[str] = set()
    for count, record in enumerate(records):
        if limit and count >= limit:
            return
        if record.id in seen:
            raise ValueError(f"QA source {text!r}: id {record.id!r} appears twice; ids must be unique")
        seen.add(record.id)
        yield record


def load_qa_jsonl(path: str | Path) -> Iterator[QARecord]:
    """Generic QA records, one JSON object per line (a ``.json`` file may hold a list).

    Relative ``video`` and ``subtitles`` paths are resolved against the file's folder, so a
    dataset folder can move as a whole.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"QA file {str(path)!r} does not exist")
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data if isinstance(data, list) else [data]
    else:
        items = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_no}: not valid JSON ({exc})") from None
    for item in items:
        record = QARecord.from_dict(item)
        record.video = _resolve(path.parent, record.video)
        if record.subtitles:
            record.subtitles = _resolve(path.parent, record.subtitles)
        yield record


def _resolve(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


# ------------------------------------------------------------------ benchmarks (CG-Bench, ...)

@register_source("cgbench")
def load_cgbench(root: Path, split: str = "train", *, require_video: bool = False) -> Iterator[QARecord]:
    """CG-Bench questions for synthesis (the loader is
    :func:`inference.evaluation.benchmarks.cgbench.load_cgbench`). Splits: ``full`` (cgbench.json),
    ``mini`` (cgbench_mini.json, the usual evaluation subset) and ``train`` (full minus mini, so
    training never sees an evaluation question). Unlike evaluation, videos need not be there
    unless ``require_video``; a record that cannot be used is an error, never dropped."""
    from inference.evaluation.benchmarks import load_benchmark

    data = load_benchmark("cgbench", root, split, require_video=require_video)
    problems = data.skipped + data.unscorable
    if problems:
        first = problems[0]
        raise ValueError(f"CG-Bench ({root}, split {split}): {len(problems)} question(s) cannot be used, e.g. "
                         f"{first.id}: {first.reason}")
    yield from data.records


def _benchmark_source(name: str) -> SourceLoader | None:
    """A registered evaluation benchmark (inference.evaluation.benchmarks) as a QA source."""
    from inference.evaluation.benchmarks import BENCHMARKS, load_benchmark

    if name not in BENCHMARKS:
        return None

    def loader(root: Path, split: str, **options: Any) -> Iterator[QARecord]:
        data = load_benchmark(name, root, split or None, **options)
        for kind, issues in (("skipped", data.skipped), ("unscorable", data.unscorable)):
            if issues:  # reported, never silently dropped (`videopro-eval records` lists them all)
                reasons = sorted({i.reason for i in issues})
                logging.getLogger(__name__).warning("%s/%s: %d question(s) %s: %s", name, data.split, len(issues),
                                                    kind, "; ".join(reasons[:5]))
        yield from data.records

    return loader
