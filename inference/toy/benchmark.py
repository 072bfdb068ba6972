"""A synthetic benchmark in LongVideoBench's published format, for the quickstart and the tests.

``write_synthetic_longvideobench(videos, root)`` writes ``root/lvb_val.json`` (the fields of the
real ``lvb_val.json``: ``candidates``, 0-based ``correct_choice``, ``video_path``,
``subtitle_path``, ``starting_timestamp_for_subtitles``, ``duration_group``,
``question_category``, ...), links the videos under ``root/videos/`` and converts their SRT
subtitles to LongVideoBench's JSON schema under ``root/subtitles/``. The questions are the
synthetic videos' own QA records (known answers), so ``videopro-eval`` reads this folder exactly
as it reads a LongVideoBench download.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.toy.synthetic_video import SyntheticVideo


def _hms(seconds: float) -> str:
    h, rem = divmod(float(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # filesystems without symlinks
        shutil.copyfile(src, dst)


def write_synthetic_longvideobench(videos: Sequence[SyntheticVideo], root: str | Path,
                                   limit: int | None = None) -> Path:
    """Write the LongVideoBench-style folder for ``videos`` under ``root``; returns ``root``."""
    from inference.subtitles import load_subtitles

    root = Path(root)
    items: list[dict[str, Any]] = []
    for video in videos:
        _link(video.video_path, root / "videos" / video.video_path.name)
        subtitle_name = f"{video.video_id}_en.json"
        cues = load_subtitles(video.subtitle_path)
        (root / "subtitles").mkdir(parents=True, exist_ok=True)
        (root / "subtitles" / subtitle_name).write_text(json.dumps(
            [{"start": _hms(c.start), "end": _hms(c.end), "line": c.text} for c in cues], indent=1))
        for record in video.qa_records:
            kind = str((record.meta or {}).get("kind", "synthetic"))
            items.append({
                "video_id": video.video_id, "id": record.id, "question": record.question,
                "question_wo_referring_query": record.question, "candidates": list(record.choices),
                "correct_choice": record.letters.index(record.answer) if record.answer else None,
                "position": [], "topic_category": "SY-Synthetic", "question_category": kind,
                "level": "L1-Perception", "video_path": video.video_path.name, "subtitle_path": subtitle_name,
                "duration_group": 60 if video.duration <= 60 else 600, "starting_timestamp_for_subtitles": 0,
                "duration": float(video.duration), "view_count": 0})
    if limit is not None:
        items = items[:limit]
    root.mkdir(parents=True, exist_ok=True)
    (root / "lvb_val.json").write_text(json.dumps(items, indent=1))
    return root
