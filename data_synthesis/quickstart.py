"""Quickstart: synthesise a small dataset from a synthetic video, offline, on CPU.

    python -m data_synthesis.quickstart [OUT_DIR] [--any SynthesisConfig flag ...]
    bash launch/synthesize.sh --quickstart [OUT_DIR]

What it does:

1. writes the default synthetic video (``inference.toy``, 40 s, seed 0) with its
   subtitles and seven QA records of known answers;
2. builds tiny random checkpoints (Qwen3-VL for query_native/query_mc, CLIP for retrieval,
   Grounding DINO for detection) and a module config that uses them with the packaged MiniLM
   and EasyOCR weights - nothing is downloaded;
3. runs every synthesis stage with ``configs/synthesis/quickstart.yaml``: the teacher is in
   **replay** mode and answers from ``data_synthesis/fixtures/teacher_cache_synthetic``, a
   recorded cache of hand-written stand-ins for GPT-5 replies to these questions
   (``data_synthesis/record_fixture_cache.py`` writes it).

The tiny models answer at random, so which trajectories survive verification says nothing
about quality; the run shows every stage, the files and the report end to end.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART_CONFIG = REPO / "configs" / "synthesis" / "quickstart.yaml"
FIXTURE_CACHE = REPO / "data_synthesis" / "fixtures" / "teacher_cache_synthetic"


def prepare_quickstart(out_dir: str | Path) -> dict[str, Path]:
    """Synthetic video + QA records, tiny checkpoints and their module config (idempotent)."""
    from inference.toy import build_toy_assets

    out = Path(out_dir)
    assets = build_toy_assets(out)  # the default synthetic video: 40 s, seed 0
    module_yaml = out / "modules.yaml"
    fields = assets.module_fields(
        hints_summarize=False,
        # the same whole-video sampling as configs/sft/tiny.yaml, which trains on these rows
        video_max_frames=8, video_min_pixels=1024, video_max_pixels=4096, max_query_frames=8)
    fields.pop("clip_dir")  # synthesis keeps its clips under its own output_dir
    fields.pop("ocr_model_dir")  # None: the packaged EasyOCR weights (the default)
    module_yaml.write_text(yaml.safe_dump(fields, sort_keys=True))
    return {"qa": Path(assets.video.qa_path), "module_config": module_yaml, "run_dir": out / "run"}


def quickstart_argv(paths: dict[str, Path], extra: Sequence[str] = ()) -> list[str]:
    return ["--config", str(QUICKSTART_CONFIG), "--source", str(paths["qa"]),
            "--output_dir", str(paths["run_dir"]), "--module_config", str(paths["module_config"]),
            "--teacher_cache_dir", str(FIXTURE_CACHE), *extra]


def main(argv: Sequence[str] | None = None) -> int:
    from data_synthesis.config import SynthesisConfig
    from data_synthesis.pipeline import run_pipeline
    from inference.config import parse_config

    argv = list(sys.argv[1:] if argv is None else argv)
    out_dir = argv.pop(0) if argv and not argv[0].startswith("--") else "outputs/quickstart/synthesis"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Phase 1: inputs - synthetic video and questions, tiny models, module config.
    paths = prepare_quickstart(out_dir)
    # Phase 2: every stage, teacher replayed from the shipped cache.
    cfg = parse_config(SynthesisConfig, quickstart_argv(paths, argv))
    summary = run_pipeline(cfg)
    # Phase 3: where the results are.
    stats: dict[str, Any] = summary.pop("stats", {}) or {}
    print(json.dumps({"summary": summary, "reasoning_samples": stats.get("reasoning_samples"),
                      "refine_samples": stats.get("refine_samples")}, indent=2))
    print(f"datasets: {cfg.output_dir}/dataset; report: {cfg.output_dir}/stats.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
