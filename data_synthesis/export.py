"""Export: SFT and GRPO JSONL datasets, a ``datasets``-loadable layout, and the statistics report.

Row formats (DESIGN.md §2), the messages format ms-swift and TRL read without conversion. ms-swift
(docs: Customization/Custom-dataset) takes multimodal rows as ``messages`` plus ``videos`` (a list
of paths), with one ``<video>`` tag in the text for each entry of ``videos``, at the place the
video goes::

    SFT:  {"messages": [{"role": "user", "content": "<video>" + prompt},
                        {"role": "assistant", "content": output}],
           "videos": [path], "id": ..., "question_id": ..., "kind": "R2", "refine_type": null}
    GRPO: the SFT row plus the columns the reward reads: "solution" (letter), "choices",
          "mode_label" (m*), "kind", "duration", "subtitles", "question". "duration" is the
          video length the trajectory's program ran with (the record's, else the probed one),
          so the reward re-runs programs with the same ``duration`` global.

(ms-swift's GRPO drops the assistant turn and passes the extra columns to reward functions as
keyword arguments, so the same row serves both.)

Layout of ``<output_dir>/dataset/``::

    README.md          dataset card whose YAML header declares the configs
    sft/train.jsonl    -> datasets.load_dataset("<output_dir>/dataset", "sft")
    grpo/train.jsonl   -> datasets.load_dataset("<output_dir>/dataset", "grpo")
    provenance.jsonl   one line per exported trajectory: id, question, teacher, execution

The statistics (``stats.json`` and ``stats.md``) follow the release's breakdown: reasoning
samples (R1 native, R2 program) and refine samples (low-confidence native, buggy program,
low-confidence program), plus the pass rate of every stage and the teacher cost.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from data_synthesis.sharding import read_jsonl, shard_name, write_jsonl_atomic, write_text_atomic
from data_synthesis.trajectories import BUGGY_PROGRAM, LOW_CONF_NATIVE, LOW_CONF_PROGRAM
from inference.modules import module_library_version
from inference.prompts import PROMPT_VERSION
from inference.types import QARecord

VIDEO_TAG = "<video>"
TRAJECTORY_STAGES = ("r1", "r2", "r3", "r4")
ALL_STAGES = ("label", "programs") + TRAJECTORY_STAGES


def collect_stage_rows(out_dir: Path, stage: str, num_shards: int) -> list[dict[str, Any]]:
    """All shards' finished rows of one stage, shard by shard. Every shard must have finished."""
    missing = [i for i in range(num_shards) if not (out_dir / stage / f"{shard_name((i, num_shards))}.jsonl").is_file()]
    if missing:
        raise RuntimeError(f"cannot export: stage {stage!r} has not finished for shard(s) "
                           f"{', '.join(f'{i}/{num_shards}' for i in missing)} in {out_dir}; run them first")
    rows: list[dict[str, Any]] = []
    for i in range(num_shards):
        rows.extend(read_jsonl(out_dir / stage / f"{shard_name((i, num_shards))}.jsonl"))
    return rows


def video_for_row(record: QARecord, mode: str = "absolute", root: str = "") -> str:
    path = Path(record.video)
    if mode == "relative":
        return str(path.resolve().relative_to(Path(root).resolve()))
    return str(path.resolve())


def sft_row(traj: dict[str, Any], record: QARecord, video: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": VIDEO_TAG + traj["prompt"]},
                         {"role": "assistant", "content": traj["output"]}],
            "videos": [video], "id": traj["id"], "question_id": record.id, "kind": traj["kind"],
            "refine_type": traj["refine_type"]}


def row_duration(traj: dict[str, Any], record: QARecord,
                 duration_for: Callable[[str], float] | None = None) -> float:
    """The video length for a GRPO row: what the stage ran the program with (recorded in the
    row), else - only for rows written without one - :func:`data_synthesis.runtime.video_duration`
    (the record's, else probed). A row without one would make the reward's re-run differ."""
    from data_synthesis.runtime import video_duration

    if traj.get("duration") is not None:
        return float(traj["duration"])
    value = video_duration(record, duration_for)
    if value is not None:
        return value
    raise RuntimeError(f"trajectory {traj['id']!r}: no video duration (the record has none and no probe "
                       "was given); export through run_pipeline, which probes the video")


def grpo_row(traj: dict[str, Any], record: QARecord, video: str,
             duration_for: Callable[[str], float] | None = None) -> dict[str, Any]:
    row = sft_row(traj, record, video)
    row.update({"solution": record.answer, "choices": list(record.choices), "mode_label": traj["mode_label"],
                "duration": row_duration(traj, record, duration_for), "subtitles": record.subtitles,
                "question": record.question})
    return row


def dataset_card(sft_count: int, grpo_count: int, stats_md: str) -> str:
    return f"""---
configs:
- config_name: sft
  data_files:
  - split: train
    path: sft/train.jsonl
- config_name: grpo
  data_files:
  - split: train
    path: grpo/train.jsonl
---
# VideoPro synthesized trajectories

Written by `python -m data_synthesis` (VideoPro). {sft_count} SFT rows, {grpo_count} GRPO rows.
Rows use the messages format with one `<video>` tag per entry of `videos` (ms-swift / TRL).
Load with `datasets.load_dataset("<this folder>", "sft")` or `"grpo"`.

{stats_md}
"""


def export_dataset(out_dir: Path, records: Iterable[QARecord], *, num_shards: int, sft_kinds: list[str],
                   grpo_kinds: list[str], video_path_mode: str = "absolute", video_root: str = "",
                   teacher_model: str = "", duration_for: Callable[[str], float] | None = None) -> dict[str, Any]:
    """Merge every shard's trajectories into the SFT/GRPO datasets and write the report."""
    by_id = {r.id: r for r in records}
    stage_rows = {stage: collect_stage_rows(out_dir, stage, num_shards) for stage in ALL_STAGES}
    trajectories = [row for stage in TRAJECTORY_STAGES for row in stage_rows[stage] if row["verified"]]
    unknown = [t["question_id"] for t in trajectories if t["question_id"] not in by_id]
    if unknown:
        raise RuntimeError(f"trajectories for questions not in the source: {unknown[:5]}; export with the "
                           "same source, split and limit as the stages")
    # Stable order: by question in source order, then R1..R4 (stage order).
    position = {qid: i for i, qid in enumerate(by_id)}
    trajectories.sort(key=lambda t: (position[t["question_id"]], t["id"]))
    # Two refinement chains can end in the same (prompt, revision) pair (e.g. a native
    # refinement that reproduces the first program, then the same program refinement); one
    # copy is enough.
    seen: set[tuple[str, str]] = set()
    unique = []
    for traj in trajectories:
        pair = (traj["prompt"], traj["output"])
        if pair not in seen:
            seen.add(pair)
            unique.append(traj)
    duplicates = len(trajectories) - len(unique)
    trajectories = unique
    write_jsonl_atomic(out_dir / "trajectories.jsonl", trajectories)

    dataset = out_dir / "dataset"
    sft, grpo, provenance = [], [], []
    for traj in trajectories:
        record = by_id[traj["question_id"]]
        video = video_for_row(record, video_path_mode, video_root)
        if traj["kind"] in sft_kinds:
            sft.append(sft_row(traj, record, video))
        if traj["kind"] in grpo_kinds:
            grpo.append(grpo_row(traj, record, video, duration_for))
        provenance.append({"id": traj["id"], **traj["provenance"], "attempts": traj["attempts"]})
    write_jsonl_atomic(dataset / "sft" / "train.jsonl", sft)
    write_jsonl_atomic(dataset / "grpo" / "train.jsonl", grpo)
    write_jsonl_atomic(dataset / "provenance.jsonl", provenance)

    stats = synthesis_stats(stage_rows, trajectories, sft_count=len(sft), grpo_count=len(grpo),
                            teacher_model=teacher_model)
    stats["duplicates_dropped"] = duplicates
    # The prompt wording and module API the trajectories were written against (a model trained
    # on them should be run with the same; training.release puts them on the model card).
    stats["versions"] = {"prompt_version": PROMPT_VERSION, "module_library_version": module_library_version()}
    stats_md = stats_markdown(stats)
    write_text_atomic(out_dir / "stats.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
    write_text_atomic(out_dir / "stats.md", stats_md)
    write_text_atomic(dataset / "README.md", dataset_card(len(sft), len(grpo), stats_md))
    return stats


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def synthesis_stats(stage_rows: dict[str, list[dict[str, Any]]], trajectories: list[dict[str, Any]], *,
                    sft_count: int, grpo_count: int, teacher_model: str = "") -> dict[str, Any]:
    kinds = Counter(t["kind"] for t in trajectories)
    refine = Counter(t["refine_type"] for t in trajectories if t["refine_type"])
    labels = stage_rows.get("label", [])
    programs = stage_rows.get("programs", [])
    status = Counter(p["status"] for p in programs)
    teacher_errors = {"programs": status.get("teacher_error", 0)}
    for stage in ("r3", "r4"):
        teacher_errors[stage] = sum(1 for r in stage_rows.get(stage, []) if r.get("teacher_error"))
    # Items that failed outside the program in max_item_attempts runs (recorded, in no dataset).
    host_errors = {stage: sum(1 for r in stage_rows.get(stage, []) if r.get("status") == "host_error")
                   for stage in ALL_STAGES}

    def stage_pass(rows: list[dict[str, Any]]) -> dict[str, Any]:
        kept = sum(1 for r in rows if r["verified"])
        return {"candidates": len(rows), "kept": kept, "pass_rate": _rate(kept, len(rows))}

    r4 = stage_rows.get("r4", [])
    r4_by_type = {t: stage_pass([r for r in r4 if r["id"].endswith(suffix)])
                  for t, suffix in ((LOW_CONF_NATIVE, "#R4-native"), (LOW_CONF_PROGRAM, "#R4-program"))}

    cost: dict[str, float] = Counter()
    requests: dict[str, int] = Counter()
    for p in programs:
        cost["programs"] += p["teacher"]["cost_usd"]
        requests["programs"] += 1
    for stage in ("r3", "r4"):
        for row in stage_rows.get(stage, []):
            for a in row["attempts"]:
                cost[stage] += a["teacher_cost_usd"]
                requests[stage] += 1
    return {
        "questions": len(labels),
        "reasoning_samples": {"native_R1": kinds.get("R1", 0), "program_R2": kinds.get("R2", 0),
                              "total": kinds.get("R1", 0) + kinds.get("R2", 0)},
        "refine_samples": {LOW_CONF_NATIVE: refine.get(LOW_CONF_NATIVE, 0), BUGGY_PROGRAM: refine.get(BUGGY_PROGRAM, 0),
                           LOW_CONF_PROGRAM: refine.get(LOW_CONF_PROGRAM, 0),
                           "total": sum(refine.values())},
        "by_kind": dict(sorted(kinds.items())),
        "datasets": {"sft_rows": sft_count, "grpo_rows": grpo_count},
        "stages": {
            "label": {"questions": len(labels), "host_error": host_errors["label"],
                      "native_correct": sum(1 for r in labels if r["correct"]),
                      "mode_label_native": sum(1 for r in labels if r["mode_label"] == "native"),
                      "native_accuracy": _rate(sum(1 for r in labels if r["correct"]), len(labels)),
                      "native_label_rate": _rate(sum(1 for r in labels if r["mode_label"] == "native"), len(labels))},
            "programs": {"requested": len(programs),
                         **{k: status.get(k, 0) for k in ("correct", "wrong", "failed", "unparsable", "teacher_error",
                                                            "host_error")},
                         "executed_rate": _rate(status.get("correct", 0) + status.get("wrong", 0), len(programs)),
                         "correct_rate": _rate(status.get("correct", 0), len(programs))},
            "r1": stage_pass(stage_rows.get("r1", [])),
            "r2": stage_pass(stage_rows.get("r2", [])),
            "r3": stage_pass(stage_rows.get("r3", [])),
            "r4": {**stage_pass(r4), **r4_by_type},
        },
        "host_errors": {**host_errors, "total": sum(host_errors.values())},
        "teacher": {"model": teacher_model, "requests": dict(requests),
                    # Requests the API refused for their content (e.g. a 400 content filter):
                    # recorded as those questions' outcome, not retried.
                    "errors": {**teacher_errors, "total": sum(teacher_errors.values())},
                    "cost_usd": {k: round(v, 6) for k, v in cost.items()},
                    "total_cost_usd": round(sum(cost.values()), 6)},
    }


def stats_markdown(stats: dict[str, Any]) -> str:
    rs, rf, st = stats["reasoning_samples"], stats["refine_samples"], stats["stages"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    lines = [
        "## Synthesis statistics", "",
        f"Questions: {stats['questions']}. SFT rows: {stats['datasets']['sft_rows']}, "
        f"GRPO rows: {stats['datasets']['grpo_rows']}.", "",
        "| samples | count |", "|---|---|",
        f"| reasoning: native (R1) | {rs['native_R1']} |",
        f"| reasoning: program (R2) | {rs['program_R2']} |",
        f"| **reasoning total** | {rs['total']} |",
        f"| refine: low-confidence native | {rf[LOW_CONF_NATIVE]} |",
        f"| refine: buggy program | {rf[BUGGY_PROGRAM]} |",
        f"| refine: low-confidence program | {rf[LOW_CONF_PROGRAM]} |",
        f"| **refine total** | {rf['total']} |", "",
        "| stage | candidates | kept | pass rate |", "|---|---|---|---|",
        f"| label (m* = native) | {st['label']['questions']} | {st['label']['mode_label_native']} | "
        f"{pct(st['label']['native_label_rate'])} |",
        f"| programs (correct) | {st['programs']['requested']} | {st['programs']['correct']} | "
        f"{pct(st['programs']['correct_rate'])} |",
    ]
    for name in ("r1", "r2", "r3", "r4"):
        s = st[name]
        lines.append(f"| {name.upper()} | {s['candidates']} | {s['kept']} | {pct(s['pass_rate'])} |")
    for t in (LOW_CONF_NATIVE, LOW_CONF_PROGRAM):
        s = st["r4"][t]
        lines.append(f"| R4 {t.replace('_', ' ')} | {s['candidates']} | {s['kept']} | {pct(s['pass_rate'])} |")
    teacher = stats["teacher"]
    lines += ["", f"Teacher `{teacher['model']}`: {sum(teacher['requests'].values())} requests, "
                  f"${teacher['total_cost_usd']:.4f} recorded cost "
                  f"({', '.join(f'{k} ${v:.4f}' for k, v in sorted(teacher['cost_usd'].items())) or 'none'}); "
                  f"{teacher['errors']['total']} refused for their content (teacher_error: "
                  f"programs {teacher['errors']['programs']}, r3 {teacher['errors']['r3']}, "
                  f"r4 {teacher['errors']['r4']}).", "",
              f"{stats['host_errors']['total']} item(s) recorded as host_error after failing outside the "
              "program in max_item_attempts runs (" + ", ".join(
                  f"{k} {v}" for k, v in stats["host_errors"].items() if k != "total") + ").", ""]
    return "\n".join(lines)
