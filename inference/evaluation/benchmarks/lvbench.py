"""LVBench (THUDM/LVBench): ``video_info.meta.jsonl``, one video per line.

Published format (huggingface.co/datasets/THUDM/LVBench; github.com/THUDM/LVBench)::

    {"key": "<YouTube id>", "type": "cartoon", "video_info": {"duration_minutes": 61.6, "fps": 25, ...},
     "qa": [{"uid": 1, "question": "What year ...?\\n(A) 1636\\n(B) 1366\\n(C) 1363\\n(D) 1633",
             "answer": "A", "question_type": ["key information retrieval"], "time_reference": "00:15-00:19"}]}

Quirks handled: the options live inside the question text as ``(A) ...`` markers (split off
here, re-lettered by our prompt); ``uid`` is an int in some releases and a string in others
(the official scorer compares ``str(uid)``); ``question_type`` is a list and a question counts
under each of its types (as ``compute_accuracy.py`` does); videos are not necessarily named by
``key`` — the official download script (video2dataset) writes ``videos/00000/00000000.mp4``
with a ``.json`` sidecar holding the YouTube ``url`` (and a ``00000.parquet`` index), so the
loader accepts a key -> file map (``video_map``: JSON object or two-column CSV/TSV), finds
``<key>.mp4`` in the usual folders, and reads video2dataset's sidecars.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from inference.evaluation.benchmarks.base import (
    BenchmarkData,
    VideoSearch,
    as_list,
    find_file,
    register_benchmark,
    video_candidates,
)
from inference.types import OPTION_LETTERS, QARecord

META_NAMES = ("video_info.meta.jsonl", "data/video_info.meta.jsonl")
VIDEO_DIRS = ("videos", "all_videos", "video", "data/videos", ".")
_OPTION_MARK = re.compile(r"(?:^|(?<=\s))\(([A-Z])\)\s*")
#: The fallback for options on their own lines written ``A. x`` / ``A) x`` / ``A: x``.
_LINE_MARK = re.compile(r"(?:^|(?<=\n))[ \t]*([A-Z])[\.\):：][ \t]*")
_ANSWER = re.compile(r"^\s*[\(\[]?\s*([A-Za-z])\s*[\)\]\.:]?(?:\s|$)")
_YOUTUBE_ID = re.compile(r"(?:v=|youtu\.be/|/shorts/)([A-Za-z0-9_-]{6,})")


def split_question_options(text: str) -> tuple[str, list[str]] | None:
    """``"Q?\\n(A) x\\n(B) y"`` -> ``("Q?", ["x", "y"])``; ``None`` unless the markers run A, B, ...

    The published markers are ``(A)``; options on their own lines as ``A. x`` are accepted when
    no ``(A)`` sequence is found."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _split_at(text, _OPTION_MARK) or _split_at(text, _LINE_MARK)


def answer_letter(raw: object) -> str:
    """``"A"``, ``"(A)"``, ``"a"``, ``"A. 1636"`` -> ``"A"``; anything else -> ``""``."""
    m = _ANSWER.match(str(raw if raw is not None else ""))
    return m.group(1).upper() if m else ""


def _split_at(text: str, pattern: re.Pattern[str]) -> tuple[str, list[str]] | None:
    marks = []
    expected = 0
    for m in pattern.finditer(text):
        if m.group(1) == OPTION_LETTERS[expected]:
            marks.append(m)
            expected += 1
    if len(marks) < 2:
        return None
    question = text[: marks[0].start()].strip()
    options = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        options.append(text[m.end(): end].strip())
    if not question or any(not o for o in options):
        return None
    return question, options


def read_video_map(path: Path) -> dict[str, str]:
    """A key -> video file map: a JSON object, or a CSV/TSV with two columns (key, path; header optional)."""
    if not path.is_file():
        raise FileNotFoundError(f"LVBench video_map {str(path)!r} not found; pass a JSON object "
                                "{key: path} or a CSV/TSV of key,path lines")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        pairs = {str(k): str(v) for k, v in data.items()}
    else:
        dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
        pairs = {}
        for row in csv.reader(text.splitlines(), dialect=dialect):
            if len(row) >= 2 and row[0].strip() and row[0].strip().lower() not in ("key", "video", "id"):
                pairs[row[0].strip()] = row[1].strip()
    base = path.parent
    return {k: str(Path(v) if Path(v).is_absolute() else (base / v)) for k, v in pairs.items()}


def video2dataset_map(root: Path) -> dict[str, str]:
    """key -> mp4 from video2dataset's output (``<shard>/<n>.json`` sidecars with the ``url``)."""
    found: dict[str, str] = {}
    for folder in (root / d for d in VIDEO_DIRS if d != "."):
        if not folder.is_dir():
            continue
        for sidecar in folder.rglob("*.json"):
            mp4 = next((sidecar.with_suffix(ext) for ext in (".mp4", ".webm", ".mkv")
                        if sidecar.with_suffix(ext).is_file()), None)
            if mp4 is None:
                continue
            try:
                info = json.loads(sidecar.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            m = _YOUTUBE_ID.search(str(info.get("url", ""))) if isinstance(info, dict) else None
            if m:
                found.setdefault(m.group(1), str(mp4))
    return found


@register_benchmark("lvbench", splits=("test",), default_split="test", breakdowns=("question_type", "video_type"),
                    description="LVBench: extreme-long videos (avg. 68 min), 6 question types")
def load_lvbench(root: Path, split: str = "test", *, video_map: str | None = None, require_video: bool = True,
                 **unknown: Any) -> BenchmarkData:
    if unknown:
        raise TypeError(f"lvbench: unknown option(s) {sorted(unknown)}; known: video_map, require_video")
    root = Path(root)
    meta_path = find_file(root / n for n in META_NAMES)
    if meta_path is None:
        raise FileNotFoundError(f"LVBench: no video_info.meta.jsonl under {str(root)!r} (looked for "
                                f"{', '.join(META_NAMES)}); download it from huggingface.co/datasets/THUDM/LVBench")
    data = BenchmarkData("lvbench", split, files=[meta_path], breakdowns=["question_type", "video_type"],
                         settings={"video_map": video_map})
    mapping = read_video_map(Path(video_map)) if video_map else {}
    if video_map:
        data.files.append(Path(video_map))
    sidecar_map: dict[str, str] | None = None
    search = VideoSearch(root)
    seen: set[str] = set()
    for line_no, line in enumerate(meta_path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            video = json.loads(line)
        except json.JSONDecodeError as exc:
            data.skip(f"line {line_no}", f"not valid JSON ({exc.msg})")
            continue
        key = str(video.get("key", "")).strip()
        qas = video.get("qa")
        if not key or not isinstance(qas, list):
            data.skip(f"line {line_no}", "video line without 'key' or 'qa' list")
            continue
        path = mapping.get(key)
        if path is None:
            found = find_file(video_candidates([root / d for d in VIDEO_DIRS], key))
            if found is None and require_video:
                if sidecar_map is None:
                    sidecar_map = video2dataset_map(root)
                path = sidecar_map.get(key)
                if path is None:
                    hit = search.find(key)
                    path = str(hit) if hit else None
            else:
                path = str(found) if found else None
        if path is None:
            path = str(root / "videos" / f"{key}.mp4")
        info = video.get("video_info") or {}
        minutes = info.get("duration_minutes") if isinstance(info, dict) else None
        for qa in qas:
            uid = str(qa.get("uid", "")).strip()
            item_id = f"lvbench-{uid}" if uid else f"lvbench-{key}-line{line_no}"
            if not uid:
                data.skip(item_id, "question without 'uid'")
                continue
            if item_id in seen:
                data.skip(item_id, "uid repeated (kept the first)")
                continue
            parsed = split_question_options(str(qa.get("question", "")))
            if parsed is None:
                data.skip(item_id, "no '(A) ... (B) ...' options found in the question text")
                continue
            question, choices = parsed
            answer = answer_letter(qa.get("answer"))
            if require_video and not Path(path).is_file():
                data.skip(item_id, "video file not found (pass video_map= for video2dataset names)")
                continue
            seen.add(item_id)
            if not answer or answer not in OPTION_LETTERS[: len(choices)]:
                data.mark_unscorable(item_id, f"answer {qa.get('answer')!r} is not one of "
                                              f"{OPTION_LETTERS[: len(choices)]}")
                continue
            record = QARecord(
                id=item_id, video=str(path), question=question, choices=choices,
                answer=answer,
                duration=float(minutes) * 60.0 if isinstance(minutes, (int, float)) else None,
                source="lvbench",
                meta={"question_type": [str(t) for t in as_list(qa.get("question_type"))],
                      "video_type": str(video.get("type", "")) or None, "video_key": key,
                      "uid": uid, "time_reference": qa.get("time_reference")})
            data.records.append(record)
    search.report(data)
    return data
