"""Benchmark loaders by name (docs/evaluation.md has each download layout and its quirks).

    data = load_benchmark("lvbench", "/data/LVBench", video_map="/data/LVBench/keys.json")
    data.records      # QA records (DESIGN.md §2)
    data.summary()    # counts, skipped / unscorable items by reason, settings, file hashes

Registered: ``lvbench``, ``videomme``, ``longvideobench``, ``mlvu``, ``cgbench``. The same
loaders serve data synthesis through :func:`inference.qa_sources.load_qa_records`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.evaluation.benchmarks import cgbench, longvideobench, lvbench, mlvu, videomme  # noqa: F401  (register)
from inference.evaluation.benchmarks.base import BENCHMARKS, BenchmarkData, BenchmarkSpec, LoadIssue

__all__ = ["BENCHMARKS", "BenchmarkData", "BenchmarkSpec", "LoadIssue", "benchmark_spec", "load_benchmark"]


def benchmark_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


def load_benchmark(name: str, root: str | Path, split: str | None = None, **options: Any) -> BenchmarkData:
    """Load ``split`` (default: the one the paper reports) of benchmark ``name`` from its download at ``root``.

    ``options`` are the benchmark's own (e.g. ``video_map`` for LVBench, ``subset`` /
    ``min_duration_s`` for Video-MME, ``require_video`` for all); ``None`` values are dropped.
    """
    spec = benchmark_spec(name)
    split = split or spec.default_split
    if split not in spec.splits:
        raise ValueError(f"{name}: split {split!r} unknown; choose one of {', '.join(spec.splits)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: root folder {str(root)!r} does not exist; pass the folder of the "
                                "benchmark's download (docs/evaluation.md shows each layout)")
    data = spec.loader(root, split, **{k: v for k, v in options.items() if v is not None})
    data.check_unique_ids()
    return data
