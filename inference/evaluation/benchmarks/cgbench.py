"""CG-Bench (CG-Bench/CG-Bench): ``cgbench.json`` / ``cgbench_mini.json``.

The paper's synthesis source and a benchmark. The download (huggingface.co/datasets/CG-Bench/CG-Bench,
unzipped) holds ``cgbench.json`` (all questions), ``cgbench_mini.json`` (the 3,000-question
evaluation subset), ``cg_videos_720p/<video_uid>.mp4``, ``cg_subtitles/<video_uid>.srt`` and
``video_meta_info.json``. Each question::

    {"qid": 14, "video_uid": "3ZpmN3-2-Zo", "question": "...", "answer": "White",
     "choices": ["Light gray", ..., "White", ...], "right_answer": "E", "clue_intervals": [[8, 11]],
     "domain": "Art & Culture", "sub_category": "Entity Perception", "duration": 2741}

Up to 8 options (``right_answer`` up to ``H``). Splits: ``mini`` (evaluation), ``full``, and
``train`` (full minus mini — what synthesis reads, so no evaluation *question* is trained on).

**Training-overlap guard.** full minus mini is disjoint by question, not by video: most mini
videos also carry training questions. :func:`training_overlap` reports, by ``video_uid``, how
many evaluated questions share a video with the synthesis training set (the ``train`` split, or
given synthesis output files), so a CG-Bench number is never read as a held-out one unknowingly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from inference.evaluation.benchmarks.base import (
    BenchmarkData,
    VideoSearch,
    as_seconds,
    find_file,
    read_json,
    register_benchmark,
    video_candidates,
)
from inference.types import OPTION_LETTERS, QARecord

CGBENCH_VIDEO_DIRS = ("cg_videos_720p", "videos")


CGBENCH_SUBTITLE_DIRS = ("cg_subtitles", "subtitles")
#: ``video_meta_info.json`` ({uid: {duration, fps, max_frame}}) sits in ``run/`` in the GitHub repo.
VIDEO_META_NAMES = ("video_meta_info.json", "run/video_meta_info.json")


class InvalidAnswer(ValueError):
    """An annotation whose answer letter is not one of its options."""


def cgbench_record(item: dict[str, Any], root: Path, video_meta: dict[str, Any] | None = None,
                   search: VideoSearch | None = None) -> QARecord:
    """One CG-Bench annotation as a QA record (raises KeyError/TypeError on a malformed item).

    The video is ``cg_videos_720p/<video_uid>.mp4`` (or another video extension, or, with
    ``search``, anywhere under ``root``); a missing one keeps the expected path."""
    uid = str(item["video_uid"]).strip()
    if not uid:
        raise KeyError("video_uid")
    choices = [str(c) for c in item["choices"]]
    answer = item.get("right_answer")
    if not answer and item.get("answer") in choices:
        answer = OPTION_LETTERS[choices.index(item["answer"])]
    answer = str(answer).strip().upper() if answer else None
    if answer is not None and answer not in OPTION_LETTERS[: len(choices)]:
        raise InvalidAnswer(f"right_answer {item.get('right_answer')!r} is not one of "
                            f"{OPTION_LETTERS[: len(choices)]}")
    video = (find_file(video_candidates([root / d for d in CGBENCH_VIDEO_DIRS], uid))
             or (search.find(uid) if search else None) or root / CGBENCH_VIDEO_DIRS[0] / f"{uid}.mp4")
    subtitles = next((root / d / f"{uid}.srt" for d in CGBENCH_SUBTITLE_DIRS if (root / d / f"{uid}.srt").is_file()),
                     None)
    duration = as_seconds(item.get("duration")) or as_seconds((video_meta or {}).get("duration"))
    meta = {k: item[k] for k in ("domain", "sub_category", "task_type", "clue_intervals", "video_uid")
            if k in item}
    meta["qid"] = item["qid"]
    return QARecord(id=f"cgbench-{item['qid']}", video=str(video), question=str(item["question"]).strip(),
                    choices=choices, answer=answer,
                    duration=duration,
                    subtitles=str(subtitles) if subtitles else None, source="cgbench", meta=meta)


@register_benchmark("cgbench", splits=("mini", "full", "train"), default_split="mini",
                    breakdowns=("domain", "sub_category"),
                    description="CG-Bench (the paper's synthesis source); mini is the evaluation subset")
def load_cgbench(root: Path, split: str = "mini", *, require_video: bool = True,
                 training_files: Iterable[str] | None = None, **unknown: Any) -> BenchmarkData:
    if unknown:
        raise TypeError(f"cgbench: unknown option(s) {sorted(unknown)}; known: require_video, training_files")
    root = Path(root)
    full_path, mini_path = root / "cgbench.json", root / "cgbench_mini.json"
    if split not in ("train", "full", "mini"):
        raise ValueError(f"CG-Bench split {split!r}: choose mini, full or train")
    wanted = mini_path if split == "mini" else full_path
    if not wanted.is_file():
        raise FileNotFoundError(f"CG-Bench annotations {str(wanted)!r} not found; download CG-Bench/CG-Bench from "
                                "the Hugging Face Hub and unzip it there")
    items = read_json(wanted, "CG-Bench annotations")
    data = BenchmarkData("cgbench", split, files=[wanted], breakdowns=["domain", "sub_category"])
    excluded: set[str] = set()
    if split == "train":
        if not mini_path.is_file():
            raise FileNotFoundError(f"CG-Bench split 'train' is full minus mini and needs {str(mini_path)!r}")
        excluded = {str(it["qid"]) for it in read_json(mini_path, "CG-Bench mini annotations")}
        data.files.append(mini_path)
    meta_path = find_file(root / n for n in VIDEO_META_NAMES)
    video_meta = read_json(meta_path, "CG-Bench video_meta_info") if meta_path else {}
    if not isinstance(video_meta, dict):
        video_meta = {}
    if not isinstance(items, list):
        raise ValueError(f"CG-Bench annotations {str(wanted)!r}: expected a JSON list of questions")
    search = VideoSearch(root)
    for n, item in enumerate(items):
        qid = item.get("qid") if isinstance(item, dict) else None
        item_id = f"cgbench-{qid}" if qid is not None else f"cgbench-item{n}"
        if str(qid) in excluded:
            continue
        try:
            record = cgbench_record(item, root, video_meta.get(str(item.get("video_uid"))) or {}, search)
        except InvalidAnswer as exc:
            data.mark_unscorable(item_id, str(exc))
            continue
        except (KeyError, TypeError, ValueError) as exc:
            data.skip(item_id, f"malformed item ({type(exc).__name__}: {exc})")
            continue
        if require_video and not Path(record.video).is_file():
            data.skip(item_id, "video file not found under cg_videos_720p/")
            continue
        if record.answer is None:
            data.mark_unscorable(item_id, "no right_answer")
            continue
        data.records.append(record)
    search.report(data)
    if split != "train":
        data.settings["training_overlap"] = training_overlap(data.records, root, training_files)
    return data


def _uids_in_training_file(path: Path) -> set[str]:
    """video_uids named by a synthesis output / QA file (JSON list or JSONL): the stems of
    ``video``/``videos`` paths and ``meta.video_uid``."""
    uids: set[str] = set()
    text = path.read_text(encoding="utf-8-sig")
    rows: list[Any]
    if path.suffix == ".json":
        loaded = json.loads(text)
        rows = loaded if isinstance(loaded, list) else [loaded]
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for row in rows:
        if not isinstance(row, dict):
            continue
        for value in [row.get("video"), *(row.get("videos") or [])]:
            if isinstance(value, str) and value:
                uids.add(Path(value).stem)
        meta = row.get("meta") or {}
        if isinstance(meta, dict) and meta.get("video_uid"):
            uids.add(str(meta["video_uid"]))
    return uids


def training_overlap(records: list[QARecord], root: Path,
                     training_files: Iterable[str] | None = None) -> dict[str, Any]:
    """How many evaluated questions share a video (by ``video_uid``) with the training set:
    the ``train`` split (full minus mini) when ``cgbench.json`` is there, and every given
    synthesis output file (SFT/GRPO rows or QA JSONL)."""
    eval_uids = {str(r.meta.get("video_uid")) for r in records}
    report: dict[str, Any] = {"evaluated_videos": len(eval_uids)}
    sources: dict[str, set[str]] = {}
    full_path, mini_path = root / "cgbench.json", root / "cgbench_mini.json"
    if full_path.is_file() and mini_path.is_file():
        mini_q = {str(it.get("qid")) for it in read_json(mini_path, "CG-Bench mini annotations")}
        sources["cgbench train split (full minus mini)"] = {
            str(it.get("video_uid")) for it in read_json(full_path, "CG-Bench annotations")
            if str(it.get("qid")) not in mini_q}
    for f in training_files or []:
        path = Path(f)
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        sources[str(path)] = set().union(*(_uids_in_training_file(p) for p in files)) if files else set()
    report["sources"] = {}
    for name, uids in sources.items():
        shared = eval_uids & uids
        report["sources"][name] = {
            "shared_videos": len(shared),
            "questions_on_shared_videos": sum(str(r.meta.get("video_uid")) in shared for r in records),
            "example_video_uids": sorted(shared)[:10]}
    if not sources:
        report["note"] = "not checked: no cgbench.json beside the split and no training_files given"
    return report
