"""``python -m data_synthesis`` (``launch/synthesize.sh``): regenerate the VideoPro datasets.

    python -m data_synthesis --config configs/synthesis/cgbench_gpt5.yaml --shard 0/8
    python -m data_synthesis --config configs/synthesis/cgbench_gpt5.yaml --stages export
    python -m data_synthesis --help      # every option, with its help text
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

from data_synthesis.config import SynthesisConfig
from data_synthesis.pipeline import run_pipeline
from data_synthesis.teacher import TeacherCacheMiss, TeacherError
from inference.config import parse_config


def main(argv: Sequence[str] | None = None) -> int:
    # Phase 1: configuration (dataclass defaults < --config YAML < flags).
    cfg = parse_config(SynthesisConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Phase 2: run the stages of this shard (label -> programs -> r1..r4) and, when asked and
    # every shard has finished, export the datasets and the statistics report.
    try:
        summary = run_pipeline(cfg)
    except TeacherCacheMiss as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except TeacherError as exc:
        print(f"error: teacher: {exc}", file=sys.stderr)
        return 2

    # Phase 3: report what was done and where it is.
    stats = summary.pop("stats", None)
    print(json.dumps(summary, indent=2))
    if stats is not None:
        print(f"datasets: {cfg.output_dir}/dataset (sft/train.jsonl, grpo/train.jsonl); "
              f"report: {cfg.output_dir}/stats.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
