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

The Hugging Face download also holds ``validation-00000-of-00001.parquet`` and
``test-00000-of-00001.parquet`` (what lmms-eval reads): the same fields, but the options as
``option0`` ... ``option4`` with ``"N/A"`` padding instead of ``candidates``, and numpy integers.
They are read when the JSON file is absent. Known quirk (LongVideoBench issue #9): a few test
items have two identical options and ``@``-prefixed ids; the count of items with repeated
options is reported in ``settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.evaluation.benchmarks.base import (
    BenchmarkData,
    VideoSearch,
    as_index,
    as_seconds,
    clean_choices,
    clean_value,
    find_file,
    is_missing,
    letter_for_index,
    read_json,
    register_benchmark,
)
from inference.types import QARecord

SPLIT_FILES = {"val": ("lvb_val.json",), "test": ("lvb_test_wo_gt.json", "lvb_test.json")}
SPLIT_PARQUETS = {"val": ("validation-*.parquet", "data/validation-*.parquet"),
                  "test": ("test-*.parquet", "data/test-*.parquet")}
_PADDING = "N/A"


def _parquet_items(paths: list[Path]) -> list[dict[str, Any]]:
    """Rows of the Hugging Face parquet as items of the JSON schema (``candidates`` from
    ``option0`` ... with the trailing ``"N/A"`` padding removed)."""
    import pandas as pd

    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    items = []
    for row in frame.to_dict("records"):
        if "candidates" not in row:
            keys = sorted((k for k in row if k.startswith("option") and k[6:].isdigit()), key=lambda k: int(k[6:]))
            options = [row.pop(k) for k in keys]
            while options and (is_missing(options[-1]) or str(options[-1]).strip() == _PADDING):
                options.pop()
            row["candidates"] = options
        items.append(row)
    return items


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
    if path is not None:
        files = [path]
        items = read_json(path, "LongVideoBench annotations")
        if not isinstance(items, list):
            raise ValueError(f"LongVideoBench annotations {str(path)!r}: expected a JSON list of questions")
    else:
        files = sorted({p for g in SPLIT_PARQUETS[split] for p in root.glob(g)})
        if not files:
            raise FileNotFoundError(
                f"LongVideoBench: {' or '.join(SPLIT_FILES[split])} (or {' / '.join(SPLIT_PARQUETS[split])}) not "
                f"found under {str(root)!r}; download longvideobench/LongVideoBench and untar videos/ and subtitles/")
        items = _parquet_items(files)
    data = BenchmarkData("longvideobench", split, files=files, labelled=split == "val",
                         breakdowns=["duration_group", "question_category", "topic_category", "level"])
    search = VideoSearch(root)
    repeated_options = 0
    for n, item in enumerate(items):
        raw_id = clean_value(item.get("id")) if isinstance(item, dict) else None
        item_id = f"longvideobench-{raw_id}" if raw_id is not None else f"longvideobench-item{n}"
        if not isinstance(item, dict) or raw_id is None:
            data.skip(item_id, "item without 'id'")
            continue
        choices = clean_choices(item.get("candidates"))
        if choices is None:
            data.skip(item_id, "'candidates' is not a list of at least two texts")
            continue
        video_name = clean_value(item.get("video_path"))
        if video_name is None:
            data.skip(item_id, "item without 'video_path'")
            continue
        video = root / "videos" / str(video_name)
        if not video.is_file():
            video = find_file([root / str(video_name)]) or search.find(str(video_name)) or video
        if require_video and not video.is_file():
            data.skip(item_id, "video file not found under videos/")
            continue
        subtitle = None
        subtitle_name = clean_value(item.get("subtitle_path"))
        if subtitle_name is not None:
            subtitle = find_file([root / "subtitles" / str(subtitle_name), root / str(subtitle_name)])
        answer = None
        if split == "val":
            choice = as_index(item.get("correct_choice"))
            answer = letter_for_index(choice, len(choices)) if choice is not None else None
        duration = as_seconds(item.get("duration"))
        record = QARecord(
            id=item_id, video=str(video), question=str(item.get("question", "")).strip(), choices=choices,
            answer=answer, duration=duration,
            subtitles=str(subtitle) if subtitle else None, source="longvideobench",
            meta={"duration_group": clean_value(item.get("duration_group")),
                  "question_category": clean_value(item.get("question_category")),
                  "topic_category": clean_value(item.get("topic_category")), "level": clean_value(item.get("level")),
                  "video_id": clean_value(item.get("video_id")), "question_id": raw_id,
                  "subtitle_offset_s": float(clean_value(item.get("starting_timestamp_for_subtitles")) or 0.0)})
        if split == "val" and answer is None:
            data.mark_unscorable(item_id, f"correct_choice {item.get('correct_choice')!r} is not an index into "
                                          f"{len(choices)} candidates")
            continue
        repeated_options += len(set(choices)) < len(choices)
        data.records.append(record)
    search.report(data)
    data.settings["records_with_repeated_options"] = repeated_options
    if split == "test":
        data.notes.append("the test file has no answers: predictions only (submit them to the leaderboard)")
    return data
