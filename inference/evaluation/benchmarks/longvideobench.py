"""LongVideoBench (longvideobench/LongVideoBench): ``lvb_val.json`` and ``lvb_test_wo_gt.json``.

Published format (a JSON list; the official dataloader is ``longvideobench_dataset.py``)::

    {"id": "86CxyhFV9MI_0", "video_id": "86CxyhFV9MI", "question": "...", "candidates": ["...", ...],
     "correct_choice": 2, "video_path": "86CxyhFV9MI.mp4", "subtitle_path": "86CxyhFV9MI_en.json",
     "starting_timestamp_for_subtitles": 0, "duration": 1247.2, "duration_group": 3600,
     "question_category": "T3E", "topic_category": "NP-News-Programs", "level": "L2-Relation", ...}

``correct_choice`` is a 0-based index (absent in the test file: predictions only); videos are
``videos/<video_path>``, subtitles ``subtitles/<subtitle_path>`` in either of the two published
JSON schemas (``{"start": "HH:MM:SS.mmm", "end": ..., "line": ...}`` or ``{"timestamp": [s, e],
"text": ...}``, read by :mod:`inference.subtitles`). Subtitle times are on the original video's
timeline: ``starting_timestamp_for_subtitles`` is subtracted (``meta["subtitle_offset_s"]``, passed to
the module runtime by the evaluator), as the official loader does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.evaluation.benchmarks.base import (
    BenchmarkData,
    clean_choices,
    find_file,
    letter_for_index,
    read_json,
    register_benchmark,
)
from inference.types import QARecord

SPLIT_FILES = {"val": ("lvb_val.json",), "test": ("lvb_test_wo_gt.json", "lvb_test.json")}


@register_benchmark("longvideobench", splits=("val", "test"), default_split="val",
                    breakdowns=("duration_group", "question_category", "topic_category", "level"),
                    description="LongVideoBench; the paper reports the validation set")
def load_longvideobench(root: Path, split: str = "val", *, require_video: bool = True,
                        **unknown: Any) -> BenchmarkData:
    if unknown:
        raise TypeError(f"longvideobench: unknown option(s) {sorted(unknown)}; known: require_video")
    root = Path(root)
    if split not in SPLIT_FILES:
        raise ValueError(f"LongVideoBench split {split!r}: choose val or test")
    path = find_file(root / n for n in SPLIT_FILES[split])
    if path is None:
        raise FileNotFoundError(f"LongVideoBench: {' or '.join(SPLIT_FILES[split])} not found under {str(root)!r}; "
                                "download longvideobench/LongVideoBench and untar videos/ and subtitles/")
    items = read_json(path, "LongVideoBench annotations")
    if not isinstance(items, list):
        raise ValueError(f"LongVideoBench annotations {str(path)!r}: expected a JSON list of questions")
    data = BenchmarkData("longvideobench", split, files=[path], labelled=split == "val",
                         breakdowns=["duration_group", "question_category", "topic_category", "level"])
    for n, item in enumerate(items):
        raw_id = item.get("id") if isinstance(item, dict) else None
        item_id = f"longvideobench-{raw_id}" if raw_id is not None else f"longvideobench-item{n}"
        if not isinstance(item, dict) or raw_id is None:
            data.skip(item_id, "item without 'id'")
            continue
        choices = clean_choices(item.get("candidates"))
        if choices is None:
            data.skip(item_id, "'candidates' is not a list of at least two texts")
            continue
        video = root / "videos" / str(item.get("video_path", ""))
        if require_video and not video.is_file():
            data.skip(item_id, "video file not found under videos/")
            continue
        subtitle = None
        if item.get("subtitle_path"):
            subtitle = find_file([root / "subtitles" / str(item["subtitle_path"]), root / str(item["subtitle_path"])])
        answer = None
        if split == "val":
            choice = item.get("correct_choice")
            answer = letter_for_index(choice, len(choices)) if isinstance(choice, int) and not isinstance(
                choice, bool) else None
        record = QARecord(
            id=item_id, video=str(video), question=str(item.get("question", "")).strip(), choices=choices,
            answer=answer, duration=float(item["duration"]) if item.get("duration") else None,
            subtitles=str(subtitle) if subtitle else None, source="longvideobench",
            meta={"duration_group": item.get("duration_group"), "question_category": item.get("question_category"),
                  "topic_category": item.get("topic_category"), "level": item.get("level"),
                  "video_id": item.get("video_id"), "question_id": raw_id,
                  "subtitle_offset_s": float(item.get("starting_timestamp_for_subtitles") or 0.0)})
        if split == "val" and answer is None:
            data.mark_unscorable(item_id, f"correct_choice {item.get('correct_choice')!r} is not an index into "
                                          f"{len(choices)} candidates")
            continue
        data.records.append(record)
    if split == "test":
        data.notes.append("the test file has no answers: predictions only (submit them to the leaderboard)")
    return data
