"""MLVU (MLVU/MVLU dev, MLVU/MLVU_Test): per-task dev files and the test ground truth.

Dev (``split="dev"``): ``json/<n>_<task>.json`` (``1_plotQA.json`` ... ``9_summary.json``), each a
list of ``{"video": "movie101_66.mp4", "duration": 246, "question": "...", "candidates": [...],
"answer": "<option text>", "question_type": "plotQA"}``; videos ``video/<n>_<task>/<video>``.
The generation tasks (``8_sub_scene``, ``9_summary``: no ``candidates``) are skipped and reported.
The answer is given as option *text*; the official scorer (``choice_bench.py``) takes the
**last** candidate equal to it, which is the rule here when candidates repeat; an answer that is
no candidate is reported as unscorable (the official scorer silently counts it wrong).

Test (``split="test"``): ``test-ground-truth/test_mcq_gt.json`` with ``question_id``,
``question_type``, ``video``, ``question``, ``candidates`` (up to six: E and F are scored) and
the answer text; videos ``video/<video>``. The paper reports MLVU on the test set.

The headline is M-Avg: the mean of the per-task accuracies (breakdown ``task``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from inference.evaluation.benchmarks.base import (
    BenchmarkData,
    VideoSearch,
    as_seconds,
    clean_choices,
    find_file,
    read_json,
    register_benchmark,
    video_candidates,
)
from inference.types import OPTION_LETTERS, QARecord

TEST_GT_NAMES = ("test-ground-truth/test_mcq_gt.json", "test_mcq_gt.json", "gt/test_mcq_gt.json",
                 "MLVU_Test/test-ground-truth/test_mcq_gt.json")
_TASK_FILE = re.compile(r"^(\d+)_(.+)\.json$")


def answer_letter(candidates: list[str], answer: str) -> tuple[str | None, bool]:
    """The official rule: the letter of the **last** candidate equal to ``answer`` (None if none),
    and whether the answer text appears more than once among the candidates."""
    matches = [i for i, c in enumerate(candidates) if c == answer]
    if not matches:
        return None, False
    return OPTION_LETTERS[matches[-1]], len(matches) > 1


def _dev_base(root: Path) -> Path:
    """The dev set's folder: ``root`` itself, or the ``MLVU/`` folder of the Hugging Face
    download (``MLVU/json/...``, ``MLVU/video/...``) when ``root`` is the snapshot above it."""
    if not (root / "json").is_dir() and (root / "MLVU" / "json").is_dir():
        return root / "MLVU"
    return root


def _dev_files(base: Path) -> list[Path]:
    folder = base / "json" if (base / "json").is_dir() else base
    files = [p for p in folder.glob("*.json") if _TASK_FILE.match(p.name)]
    return sorted(files, key=lambda p: int(_TASK_FILE.match(p.name).group(1)))  # type: ignore[union-attr]


@register_benchmark("mlvu", splits=("test", "dev"), default_split="test", breakdowns=("task",),
                    description="MLVU multi-task long videos; M-Avg = mean of per-task accuracies",
                    headline="task_mean")
def load_mlvu(root: Path, split: str = "test", *, require_video: bool = True, **unknown: Any) -> BenchmarkData:
    if unknown:
        raise TypeError(f"mlvu: unknown option(s) {sorted(unknown)}; known: require_video")
    root = Path(root)
    if split == "dev":
        root = _dev_base(root)
        files = _dev_files(root)
        if not files:
            raise FileNotFoundError(f"MLVU dev: no json/<n>_<task>.json files under {str(root)!r} (nor under its "
                                    "MLVU/ folder); download the MLVU dev set and keep its json/ and video/ folders")
        sources = [(p, _TASK_FILE.match(p.name).group(2), [root / "video" / p.stem]) for p in files]  # type: ignore[union-attr]
    elif split == "test":
        gt = find_file(root / n for n in TEST_GT_NAMES)
        if gt is None:
            raise FileNotFoundError(f"MLVU test: no ground-truth file under {str(root)!r} (looked for "
                                    f"{', '.join(TEST_GT_NAMES)}); download MLVU_Test with test-ground-truth/")
        sources = [(gt, None, [])]
    else:
        raise ValueError(f"MLVU split {split!r}: choose test or dev")
    data = BenchmarkData("mlvu", split, files=[s[0] for s in sources], breakdowns=["task"])
    search = VideoSearch(root)
    duplicates = 0
    empty_options = 0
    for path, file_task, folders in sources:
        items = read_json(path, "MLVU annotations")
        if not isinstance(items, list):
            raise ValueError(f"MLVU annotations {str(path)!r}: expected a JSON list")
        for n, item in enumerate(items):
            task = file_task or str(item.get("question_type", "")) or "unknown"
            qid = item.get("question_id")
            item_id = f"mlvu-{split}-{qid}" if qid is not None else f"mlvu-{split}-{Path(path).stem}-{n}"
            if "candidates" not in item:
                data.skip(item_id, f"generation task without candidates ({Path(path).name}); not multiple choice")
                continue
            choices = clean_choices(item.get("candidates"))
            if choices is None:
                data.skip(item_id, "'candidates' is not a list of at least two texts")
                continue
            if not str(item.get("question") or "").strip():
                data.skip(item_id, "empty question text")
                continue
            name = str(item.get("video", ""))
            qtype = str(item.get("question_type", ""))
            video_dirs = folders + [root / "video" / task, root / "video" / qtype, root / "video", root / "videos"]
            video = find_file(video_candidates(video_dirs, name)) or search.find(
                name, prefer=Path(path).stem if file_task else qtype)
            if video is None:
                if require_video:
                    data.skip(item_id, "video file not found under video/")
                    continue
                video = video_dirs[0] / name
            answer_text = str(item.get("answer") or "").strip()
            letter, duplicated = answer_letter(choices, answer_text)
            record = QARecord(
                id=item_id, video=str(video), question=str(item.get("question", "")).strip(), choices=choices,
                answer=letter, duration=as_seconds(item.get("duration")), source="mlvu",
                meta={"task": task, "question_type": qtype or None, "question_id": qid,
                      "answer_text": answer_text, "duplicate_candidates": duplicated or None})
            if not answer_text:
                # e.g. a dev topic_reasoning item whose answer and four candidates are all "":
                # the official scorer would call the last empty option right
                data.mark_unscorable(item_id, "answer text is empty")
                continue
            if letter is None:
                data.mark_unscorable(item_id, "answer text is not among the candidates")
                continue
            duplicates += duplicated
            empty_options += any(not c for c in choices)
            data.records.append(record)
    search.report(data)
    data.settings["duplicate_candidate_rule"] = "last matching candidate (official choice_bench.py)"
    data.settings["records_with_duplicate_answer_candidates"] = duplicates
    data.settings["records_with_empty_candidates"] = empty_options
    return data
