"""Assemble and run the synthesis stages for one shard (the library behind ``python -m data_synthesis``).

``run_pipeline(cfg)`` builds what the requested stages need - the teacher client, the program
runner (module library + sandbox), the native answerer - and runs the stages in order. Tests and
notebooks pass their own components instead (``teacher=``, ``run_program=``, ``native=``,
``duration_for=``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_synthesis.config import SynthesisConfig
from data_synthesis.export import export_dataset
from data_synthesis.labeling import ExecutorNativeAnswerer, ModuleLibraryNativeAnswerer, NativeAnswerer
from data_synthesis.sharding import in_shard, parse_shard, read_jsonl, shard_name, write_text_atomic
from data_synthesis.teacher import TeacherClient, TeacherSettings
from data_synthesis.trajectories import STAGE_FUNCTIONS, ProgramRunner, SynthesisContext
from inference.config import config_to_dict
from inference.qa_sources import load_qa_records
from inference.types import QARecord

log = logging.getLogger(__name__)

TEACHER_STAGES = {"programs", "r3", "r4"}
EXECUTION_STAGES = {"programs", "r1", "r3", "r4"}


def load_records(cfg: SynthesisConfig) -> list[QARecord]:
    """Every question of the configured source (all shards), in source order."""
    records = list(load_qa_records(cfg.source, cfg.split, root=cfg.source_root or None, limit=cfg.limit or None))
    if not records:
        raise ValueError(f"QA source {cfg.source!r} (split {cfg.split!r}) gave no questions")
    unlabelled = [r.id for r in records if r.answer is None]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} question(s) have no ground-truth answer (e.g. {unlabelled[0]!r}); "
                         "synthesis judges correctness and needs labelled questions")
    return records


def build_program_runner(cfg: SynthesisConfig) -> ProgramRunner:
    """The module library (configured backends) behind the sandboxed executor."""
    from data_synthesis.runtime import build_program_runner as build

    return build(cfg)


def build_native_answerer(cfg: SynthesisConfig, run_program: Callable[[], ProgramRunner]) -> NativeAnswerer:
    if cfg.native_backend == "executor":
        return ExecutorNativeAnswerer(run_program(), trust_program_confidence=cfg.trust_program_confidence)
    from data_synthesis.runtime import build_query_native

    return ModuleLibraryNativeAnswerer(build_query_native(cfg))


def native_description(cfg: SynthesisConfig) -> str:
    """The native backend as named in labelling errors."""
    if cfg.native_backend == "executor":
        how = "the Fig. 10 native program in the sandbox"
    else:
        how = "the module library's query_native"
    return (f"the native model ({how}; endpoint {cfg.native_api_base or 'module default / $VIDEOPRO_API_BASE'}, "
            f"model {cfg.native_model or 'module default / $VIDEOPRO_MODEL'})")


def all_shards_done(out_dir: Path, num_shards: int) -> bool:
    return all((out_dir / stage / f"{shard_name((i, num_shards))}.jsonl").is_file()
               for stage in STAGE_FUNCTIONS for i in range(num_shards))


def skip_unreadable_videos(records: list[QARecord], out_dir: Path, shard_tag: str,
                           video_check: Callable[[str], Any]) -> list[QARecord]:
    """The records whose video ``video_check`` accepts. The others (missing, corrupt, empty or
    audio-only files: ``VideoInputError``) are bad input, not a transient failure: retrying
    them would keep the shard from ever finishing. They are listed with the reason in
    ``<out_dir>/skipped/<shard>.jsonl`` and left out of every stage.

    The decision is made once per shard: when that file exists it is reused as it is (no
    probing; the ids it lists stay out), so every stage of every rerun sees the same questions
    and a stage-by-stage or resumed run never meets a question an earlier stage left out. A
    video that breaks after that is an ordinary per-question failure (``max_item_attempts``).
    To retry a skipped question, fix the file and delete ``skipped/<shard>.jsonl`` and the
    stage outputs of the shard."""
    from inference.errors import VideoInputError

    report = out_dir / "skipped" / f"{shard_tag}.jsonl"
    if report.is_file():
        skipped = list(read_jsonl(report))
        excluded = {row["id"] for row in skipped}
        if skipped:
            log.warning("skipping %d question(s) listed in %s (decided by an earlier run; delete it and "
                        "the stage outputs to probe again)", len(skipped), report)
        return [r for r in records if r.id not in excluded]

    verdicts: dict[str, str | None] = {}
    kept, skipped = [], []
    for record in records:
        if record.video not in verdicts:
            try:
                video_check(record.video)
                verdicts[record.video] = None
            except VideoInputError as exc:
                verdicts[record.video] = str(exc)
        reason = verdicts[record.video]
        if reason is None:
            kept.append(record)
        else:
            skipped.append({"id": record.id, "video": record.video, "reason": reason})
    report.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report, "".join(json.dumps(row) + "\n" for row in skipped))
    if skipped:
        log.warning("skipping %d question(s) whose video cannot be read (listed in %s); first: %s",
                    len(skipped), report, skipped[0]["reason"])
    return kept


def run_pipeline(cfg: SynthesisConfig, *, records: list[QARecord] | None = None,
                 teacher: TeacherClient | None = None, run_program: ProgramRunner | None = None,
                 native: NativeAnswerer | None = None,
                 duration_for: Callable[[str], float] | None = None,
                 video_check: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Run the configured stages for the configured shard; returns a summary (and the export
    statistics when ``export`` ran). ``video_check`` (default: probing the file with the video
    store's decoder) decides which questions have a readable video; see
    :func:`skip_unreadable_videos`."""
    stages = cfg.stage_list()
    shard = parse_shard(cfg.shard)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_records = records if records is not None else load_records(cfg)
    mine = [r for r in all_records if in_shard(r.id, shard)]
    log.info("shard %s: %d of %d questions; stages %s", cfg.shard, len(mine), len(all_records), ",".join(stages))

    # Components are built only when a stage needs them (a resumed run that only exports needs
    # no model, no sandbox and no API key).
    work = [s for s in stages if s != "export"]
    if work:
        if video_check is None:
            from inference.video_store import probe_video as video_check
        readable = skip_unreadable_videos(mine, out_dir, shard_name(shard), video_check)
        skipped_videos, mine = len(mine) - len(readable), readable
    else:
        skipped_videos = 0
    runner_cache: list[ProgramRunner] = []

    def get_runner() -> ProgramRunner:
        if not runner_cache:
            runner_cache.append(run_program or build_program_runner(cfg))
        return runner_cache[0]

    if teacher is None and TEACHER_STAGES & set(work):
        teacher = TeacherClient(TeacherSettings.from_config(cfg))
    if native is None and "label" in work:
        native = build_native_answerer(cfg, get_runner)
    if duration_for is None:
        # Records without a duration (e.g. CG-Bench) are probed like the inference runner does.
        # The program runner's own probe when it has one (its duration_of is what the stage rows
        # record anyway); export probes only for rows that lack a duration.
        duration_for = getattr(run_program, "duration_for", None)
    if duration_for is None:
        from data_synthesis.runtime import build_duration_probe

        duration_for = build_duration_probe(cfg)
    ctx = SynthesisContext(
        records=mine, out_dir=out_dir, shard=shard, config=cfg, teacher=teacher,
        run_program=get_runner() if EXECUTION_STAGES & set(work) else None, native=native,
        duration_for=duration_for, native_description=native_description(cfg))

    summary: dict[str, Any] = {"shard": cfg.shard, "questions": len(mine), "skipped_videos": skipped_videos,
                               "stages": {}}
    started = time.time()
    for stage in work:
        t0 = time.time()
        rows = STAGE_FUNCTIONS[stage](ctx)
        kept = sum(1 for r in rows if r.get("verified")) if stage.startswith("r") else None
        summary["stages"][stage] = {"rows": len(rows), "kept": kept, "seconds": round(time.time() - t0, 2)}
        log.info("stage %s: %d rows%s", stage, len(rows), "" if kept is None else f", {kept} kept")
    if teacher is not None:
        summary["teacher_usage"] = teacher.meter.snapshot()
    # One record per invocation of what this run spent (cache hits cost nothing).
    run_log = out_dir / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{shard_name(shard)}-{os.getpid()}.json"
    write_text_atomic(run_log, json.dumps({"config": config_to_dict(cfg), "summary": summary,
                                           "seconds": round(time.time() - started, 2)}, indent=2))
    if "export" in stages and shard[1] > 1 and cfg.stages.strip() == "all" and not all_shards_done(out_dir, shard[1]):
        log.warning("export skipped: not every shard has finished yet; run stages=export once they have")
    elif "export" in stages:
        summary["stats"] = export_dataset(
            out_dir, all_records, num_shards=shard[1], sft_kinds=cfg.kind_list(cfg.sft_kinds),
            grpo_kinds=cfg.kind_list(cfg.grpo_kinds), video_path_mode=cfg.video_path_mode,
            video_root=cfg.video_root, teacher_model=cfg.teacher_model, duration_for=duration_for)
    return summary
