"""Question sources: a registry of loaders that turn a dataset's own format into QA records.

``load_qa_records(path_or_name, split, ...)`` is the one entry point synthesis and benchmark
evaluation share. A path to a ``.jsonl``/``.json`` file is read as generic QA records
(DESIGN.md §2); any other string names a registered source. A benchmark adds itself with::

    @register_source("lvbench")
    def load_lvbench(root: Path, split: str, **options) -> Iterator[QARecord]: ...

CG-Bench (the paper's training source) is registered here. Its download
(huggingface.co/datasets/CG-Bench/CG-Bench, unzipped) is a folder with ``cgbench.json`` (all
questions), ``cgbench_mini.json`` (the mini evaluation subset), ``cg_videos_720p/<video_uid>.mp4``
and ``cg_subtitles/<video_uid>.srt``. Each question has ``qid``, ``video_uid``, ``question``,
``choices``, ``right_answer`` (a letter), ``clue_intervals``, ``duration`` and category fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from inference.types import OPTION_LETTERS, QARecord

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
    return sorted(_SOURCES)


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
    elif text in _SOURCES:
        if root is None or not str(root):
            raise ValueError(f"QA source {text!r} needs the root folder of its download (source_root / root=)")
        records = _SOURCES[text](Path(root), split, **options)
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


# ---------------------------------------------------------------------------------- CG-Bench

CGBENCH_VIDEO_DIRS = ("cg_videos_720p", "videos")
CGBENCH_SUBTITLE_DIRS = ("cg_subtitles", "subtitles")


@register_source("cgbench")
def load_cgbench(root: Path, split: str = "train", *, require_video: bool = False) -> Iterator[QARecord]:
    """CG-Bench questions. Splits: ``full`` (cgbench.json), ``mini`` (cgbench_mini.json, the
    usual evaluation subset) and ``train`` (full minus mini, so training never sees an
    evaluation question)."""
    full_path, mini_path = root / "cgbench.json", root / "cgbench_mini.json"
    if split not in ("train", "full", "mini"):
        raise ValueError(f"CG-Bench split {split!r}: choose train, full or mini")
    wanted = mini_path if split == "mini" else full_path
    if not wanted.is_file():
        raise FileNotFoundError(f"CG-Bench annotations {str(wanted)!r} not found; download "
                                "CG-Bench/CG-Bench from the Hugging Face Hub and unzip it under source_root")
    items = json.loads(wanted.read_text(encoding="utf-8"))
    excluded: set[str] = set()
    if split == "train":
        if not mini_path.is_file():
            raise FileNotFoundError(f"CG-Bench split 'train' is full minus mini and needs {str(mini_path)!r}")
        excluded = {str(it["qid"]) for it in json.loads(mini_path.read_text(encoding="utf-8"))}
    video_meta = {}
    meta_path = root / "video_meta_info.json"
    if meta_path.is_file():
        video_meta = json.loads(meta_path.read_text(encoding="utf-8"))
    for item in items:
        if str(item["qid"]) in excluded:
            continue
        record = cgbench_record(item, root, video_meta.get(item["video_uid"]) or {})
        if require_video and not Path(record.video).is_file():
            raise FileNotFoundError(f"CG-Bench video for question {record.id} not found at {record.video}")
        yield record


def cgbench_record(item: dict[str, Any], root: Path, video_meta: dict[str, Any] | None = None) -> QARecord:
    """One CG-Bench annotation as a QA record."""
    uid = str(item["video_uid"])
    choices = [str(c) for c in item["choices"]]
    answer = item.get("right_answer")
    if not answer and item.get("answer") in choices:
        answer = OPTION_LETTERS[choices.index(item["answer"])]
    video = next((root / d / f"{uid}.mp4" for d in CGBENCH_VIDEO_DIRS if (root / d / f"{uid}.mp4").is_file()),
                 root / CGBENCH_VIDEO_DIRS[0] / f"{uid}.mp4")
    subtitles = next((root / d / f"{uid}.srt" for d in CGBENCH_SUBTITLE_DIRS if (root / d / f"{uid}.srt").is_file()),
                     None)
    duration = item.get("duration") or (video_meta or {}).get("duration")
    meta = {k: item[k] for k in ("domain", "sub_category", "task_type", "clue_intervals", "video_uid")
            if k in item}
    return QARecord(id=f"cgbench-{item['qid']}", video=str(video), question=str(item["question"]).strip(),
                    choices=choices, answer=answer, duration=float(duration) if duration else None,
                    subtitles=str(subtitles) if subtitles else None, source="cgbench", meta=meta)
