"""Video-MME (lmms-lab/Video-MME): ``videomme/test-00000-of-00001.parquet``.

Published format (one row per question)::

    video_id "001", duration "short"|"medium"|"long", domain "Knowledge", sub_category "Humanity & History",
    url, videoID "fFjv93ACGo8", question_id "001-1", task_type "Counting Problem",
    question "...", options ["A. ...", "B. ...", "C. ...", "D. ..."], answer "C"

Videos are ``data/<videoID>.mp4`` (the unzipped ``videos_chunked_*.zip``; a few are ``.MP4`` or
``.mkv``; VLMEvalKit flattens them into ``video/``; elsewhere under the root they are searched
for), subtitles ``subtitle/<videoID>.srt`` (``<font color="white" size=".72c">`` markup and
overlapping cues, read by :mod:`inference.subtitles`); a video without a subtitle file has no
subtitles (not an error). Options arrive already lettered (``"A. ..."``): the prefix is
stripped before our prompt re-letters them. pandas reads ``options`` as a numpy array and empty
cells as NaN; both are normalised (NaN categories become ``None``, not a category of their own).

The paper evaluates the **long** subset. By default it is chosen by the published ``duration``
label (``subset="long"``, what lmms-eval's ``videomme_long`` does); ``min_duration_s`` selects
by the probed length of each video instead (e.g. ``min_duration_s=600`` for "> 600 s"). The rule
used is recorded in ``settings`` and thus in the results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.evaluation.benchmarks.base import (
    BenchmarkData,
    VideoSearch,
    clean_choices,
    clean_value,
    find_file,
    register_benchmark,
    strip_letter_prefix,
    video_candidates,
)
from inference.types import OPTION_LETTERS, QARecord

DURATION_LABELS = ("short", "medium", "long")
PARQUET_GLOBS = ("videomme/test-*.parquet", "test-*.parquet", "videomme/*.parquet")
#: ``data/`` is where the published zips unpack; VLMEvalKit flattens them into ``video/``.
VIDEO_DIRS = ("data", "video", "videos", ".")
SUBTITLE_DIRS = ("subtitle", "subtitles", "data/subtitle")


def _probe_duration(path: str) -> float:
    from inference.video_store import probe_video

    return float(probe_video(path).duration)


@register_benchmark("videomme", splits=("test",), default_split="test",
                    breakdowns=("duration_label", "domain", "sub_category", "task_type"),
                    description="Video-MME; the paper's VideoMME-L is the long subset (subset=long)")
def load_videomme(root: Path, split: str = "test", *, subset: str = "long", min_duration_s: float | None = None,
                  require_video: bool = True, **unknown: Any) -> BenchmarkData:
    if unknown:
        raise TypeError(f"videomme: unknown option(s) {sorted(unknown)}; known: subset, min_duration_s, require_video")
    import pandas as pd

    root = Path(root)
    if subset not in (*DURATION_LABELS, "all"):
        raise ValueError(f"videomme subset {subset!r}: choose one of {', '.join(DURATION_LABELS)} or all")
    parquets = sorted({p for g in PARQUET_GLOBS for p in root.glob(g)})
    if not parquets:
        raise FileNotFoundError(f"Video-MME: no parquet under {str(root)!r} (looked for {', '.join(PARQUET_GLOBS)}); "
                                "download lmms-lab/Video-MME and keep its videomme/ folder")
    rule = (f"probed video duration >= {min_duration_s:g} s" if min_duration_s is not None
            else f"duration label == {subset!r}" if subset != "all" else "all questions")
    data = BenchmarkData("videomme", split, files=list(parquets),
                         breakdowns=["duration_label", "domain", "sub_category", "task_type"],
                         settings={"subset": subset, "min_duration_s": min_duration_s, "subset_rule": rule})
    frame = pd.concat([pd.read_parquet(p) for p in parquets], ignore_index=True)
    missing = [c for c in ("videoID", "question_id", "question", "options", "answer") if c not in frame.columns]
    if missing:
        raise ValueError(f"Video-MME parquet {[str(p) for p in parquets]} lacks column(s) {missing}; "
                         f"found {list(frame.columns)}")
    durations: dict[str, float | None] = {}
    search = VideoSearch(root)
    for n, raw_row in enumerate(frame.to_dict("records")):
        # NaN / None cells (pandas' missing values) become None; numpy scalars plain Python
        row = {k: (v if k == "options" else clean_value(v)) for k, v in raw_row.items()}
        item_id = f"videomme-{row['question_id']}" if row["question_id"] is not None else f"videomme-row{n}"
        label = str(row.get("duration") or "").strip().lower() or None
        if min_duration_s is None and subset != "all" and label != subset:
            continue  # outside the chosen subset: not a failure, not reported per item
        if row["question_id"] is None or row["videoID"] is None:
            data.skip(item_id, "row without question_id or videoID")
            continue
        video_id = str(row["videoID"]).strip()
        video = (find_file(video_candidates([root / d for d in VIDEO_DIRS], video_id))
                 or search.find(video_id))
        if video is None:
            if require_video or min_duration_s is not None:
                data.skip(item_id, "video file not found under data/")
                continue
            video = root / "data" / f"{video_id}.mp4"
        if min_duration_s is not None:
            if video_id not in durations:
                try:
                    durations[video_id] = _probe_duration(str(video))
                except Exception as exc:  # reported per item: a video we cannot read
                    durations[video_id] = None
                    data.notes.append(f"{video}: cannot probe duration ({exc})")
            seconds = durations[video_id]
            if seconds is None:
                data.skip(item_id, "video duration cannot be probed (needed by min_duration_s)")
                continue
            if seconds < min_duration_s:
                continue
        raw = clean_choices(row["options"])
        if raw is None:
            data.skip(item_id, "options is not a list of at least two texts")
            continue
        choices = [strip_letter_prefix(o, OPTION_LETTERS[i]) for i, o in enumerate(raw)]
        answer = str(row["answer"]).strip().upper()
        if answer not in OPTION_LETTERS[: len(choices)]:
            data.mark_unscorable(item_id, f"answer {row['answer']!r} is not one of {OPTION_LETTERS[: len(choices)]}")
            continue
        subtitle = find_file(root / d / f"{video_id}{ext}" for d in SUBTITLE_DIRS for ext in (".srt", ".SRT"))
        record = QARecord(
            id=item_id, video=str(video), question=str(row["question"]).strip(), choices=choices,
            answer=answer, subtitles=str(subtitle) if subtitle else None,
            source="videomme",
            meta={"duration_label": label, "domain": row.get("domain"), "sub_category": row.get("sub_category"),
                  "task_type": row.get("task_type"), "video_id": str(row.get("video_id") or ""), "videoID": video_id,
                  "question_id": str(row["question_id"])})
        data.records.append(record)
    search.report(data)
    data.settings["videos_without_subtitles"] = len({r.meta["videoID"] for r in data.records if not r.subtitles})
    return data
