"""Benchmark: sandbox overhead per program and module calls saved by the call cache.

Compares :class:`inference.sandbox.ProgramExecutor` with the original release's executor, which
``exec``-ed the generated code in the host process with the runtime API in its globals and no
cache (reproduced here as :func:`original_execute`; it exists only as this baseline).

1. Overhead: median wall time of one trivial program (``return "A"``), warm workers, and of a
   program making 6 module calls to instant fake modules (the cost of the boundary per call).
2. Cache: a GRPO-style group of 8 programs for one question that share many calls, with fake
   modules that sleep a fixed time per call (retrieval 30 ms, detection 10 ms, VQA 40 ms, frame
   sampling 5 ms): module calls computed, and group wall time, with and without the cache.

Run: ``python bench/bench_sandbox.py [--repeats 200] [--json out.json]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.call_cache import CallCache  # noqa: E402
from inference.sandbox import ProgramExecutor, SandboxLimits  # noqa: E402
from inference.types import Frame  # noqa: E402

CHOICES = ["pumpkins", "beans", "corn", "carrots"]
QUESTION = "What vegetables were on the book?"

TRIVIAL = "def execute_command(video, question):\n    return {'answer': 'A', 'confidence': 1.0}\n"
SIX_CALLS = ("def execute_command(video, question):\n"
             "    intervals, clips = get_informative_clips(video, 'book', top_k=1)\n"
             "    frames = extract_frames(clips[0], 4)\n"
             "    boxes = [detect_object(f, 'book') for f in frames[:3]]\n"
             "    return query_mc(frames, question, choices)\n")

# Eight samples of one GRPO group (temperature 1): Fig. 8-style programs with variations.
GROUP = [
    "def execute_command(video, question):\n    return query_native(video, question, choices)\n",
    ("def execute_command(video, question):\n"
     "    intervals, clips = get_informative_clips(video, 'woman folding the book', top_k=1)\n"
     "    frames = []\n    for clip in clips:\n        frames.extend(extract_frames(clip))\n"
     "    book = [f for f in frames if detect_object(f, 'book')] or frames\n"
     "    return query_mc(book, 'What vegetables were on the book?', choices)\n"),
    ("def execute_command(video, question):\n"
     "    intervals, clips = get_informative_clips(video, 'woman folding the book', top_k=1)\n"
     "    frames = [f for c in clips for f in extract_frames(c)]\n"
     "    book = [f for f in frames if detect_object(f, 'book')]\n"
     "    return query_mc(book or frames, question, choices)\n"),
    ("def execute_command(video, question):\n"
     "    intervals, clips = get_informative_clips(video, 'book with vegetables', top_k=2)\n"
     "    frames = [f for c in clips for f in extract_frames(c)]\n"
     "    return query_mc(frames, question, choices)\n"),
    ("def execute_command(video, question):\n"
     "    r = query_native(video, question, choices)\n"
     "    if r['confidence'] >= 0.75:\n        return r\n"
     "    intervals, clips = get_informative_clips(video, 'woman folding the book', top_k=1)\n"
     "    return query_mc(extract_frames(clips[0]), question, choices)\n"),
    ("def execute_command(video, question):\n"
     "    intervals, clips = get_informative_clips(video, 'woman folding the book', 1)\n"
     "    frames = extract_frames(clips[0], num_frames=8)\n"
     "    crops = [crop(f, detect_object(f, 'book')[0]) for f in frames if detect_object(f, 'book')]\n"
     "    return query_mc(crops or frames, question, choices)\n"),
    ("def execute_command(video, question):\n"
     "    intervals, clips = get_informative_clips(video, 'woman folding the book', top_k=1)\n"
     "    start, end = intervals[0]\n"
     "    frames = trim_frames(video, start, end, 8)\n"
     "    return query_mc(frames, question, choices)\n"),
    ("def execute_command(video, question):\n"
     "    intervals, clips = get_informative_clips(video, 'book with vegetables', top_k=2)\n"
     "    frames = [f for c in clips for f in extract_frames(c)]\n"
     "    book = [f for f in frames if detect_object(f, 'book')] or frames\n"
     "    return query_mc(book, question, choices)\n"),
]

COSTS_S = {"get_informative_clips": 0.030, "extract_frames": 0.005, "trim_frames": 0.005,
           "detect_object": 0.010, "crop": 0.0, "query_mc": 0.040, "query_native": 0.040}


class FakeLibrary:
    """Module functions with the library's signatures, a fixed cost per call and a call log."""

    def __init__(self, clip_dir: Path, costs: Mapping[str, float]):
        self.clip_dir = clip_dir
        self.costs = costs
        self.calls: Counter[str] = Counter()

    def _cost(self, name: str) -> None:
        self.calls[name] += 1
        if self.costs.get(name):
            time.sleep(self.costs[name])

    def get_informative_clips(self, video: str, query: str, top_k: int = 3, total_duration: float | None = None):
        self._cost("get_informative_clips")
        offset = 3 if "vegetables" in query else 0
        clips = [str(self.clip_dir / f"clip_{offset + i:03d}.mp4") for i in range(top_k)]
        return [(10.0 * (offset + i), 10.0 * (offset + i + 1)) for i in range(top_k)], clips

    def extract_frames(self, video: str, num_frames: int = 8) -> list[Frame]:
        self._cost("extract_frames")
        return [Frame(video, i * 10.0 / num_frames, i * 10.0 / num_frames) for i in range(num_frames)]

    def trim_frames(self, video: str, start: float, end: float, num_frames: int = 64) -> list[Frame]:
        self._cost("trim_frames")
        step = (end - start) / num_frames
        return [Frame(video, start + i * step, start + i * step) for i in range(num_frames)]

    def detect_object(self, frame: Frame, text: str, box_threshold: float = 0.5, text_threshold: float = 0.25):
        self._cost("detect_object")
        return [[0, 0, 16, 16]] if frame.time < 5 else []

    def crop(self, frame: Frame, box: list[int]) -> Frame:
        self._cost("crop")
        return Frame(frame.source, frame.time, frame.video_time, tuple(box))

    def query_mc(self, frames: list[Frame], question: str, choices: list[str]) -> dict[str, Any]:
        self._cost("query_mc")
        return {"answer": "B", "confidence": 0.6, "raw_output": "B", "metadata": {"frames": len(frames)}}

    def query_native(self, video: str, question: str, choices: list[str]) -> dict[str, Any]:
        self._cost("query_native")
        return {"answer": "A", "confidence": 0.5, "raw_output": "A", "metadata": {}}

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {name: getattr(self, name) for name in COSTS_S}


def original_execute(code: str, api: Mapping[str, Callable[..., Any]], video: str, question: str,
                     choices: list[str], duration: float | None) -> Any:
    """The original release's executor: exec in the host process, runtime API as globals,
    no isolation, no limits, no cache. Kept only as the benchmark baseline."""
    namespace: dict[str, Any] = dict(api)
    namespace.update(choices=choices, duration=duration)
    exec(code, namespace)  # noqa: S102 - the baseline being measured
    fn = namespace["execute_command"]
    if fn.__code__.co_argcount == 4:
        return fn(video, question, choices, duration)
    return fn(video, question)


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(repeats: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="videopro-bench-sandbox-"))
    video = work / "video.mp4"
    video.write_bytes(b"benchmark video")
    clip_dir = work / "clips"
    clip_dir.mkdir()
    kwargs = {"video": str(video), "question": QUESTION, "choices": CHOICES, "duration": 600.0,
              "allowed_roots": [str(clip_dir)]}
    results: dict[str, Any] = {}

    # 1. overhead, instant modules
    instant = FakeLibrary(clip_dir, {})
    api = instant.functions()
    with ProgramExecutor(api, limits=SandboxLimits()) as executor:
        executor.warm()
        for _ in range(10):  # warm caches on both sides
            executor.execute(TRIVIAL, **kwargs)
        assert executor.execute(SIX_CALLS, **kwargs).success
        results["trivial_sandbox_s"] = median_s(lambda: executor.execute(TRIVIAL, **kwargs), repeats)
        results["six_calls_sandbox_s"] = median_s(lambda: executor.execute(SIX_CALLS, **kwargs), repeats)
        results["workers_started"] = executor.workers_started
    orig = {k: v for k, v in kwargs.items() if k != "allowed_roots"}
    results["trivial_inprocess_s"] = median_s(lambda: original_execute(TRIVIAL, api, **orig), repeats)
    results["six_calls_inprocess_s"] = median_s(lambda: original_execute(SIX_CALLS, api, **orig), repeats)

    # 2. group of 8 programs sharing calls, modelled module costs
    baseline = FakeLibrary(clip_dir, COSTS_S)
    start = time.perf_counter()
    for code in GROUP:
        original_execute(code, baseline.functions(), **orig)
    results["group_inprocess_s"] = time.perf_counter() - start
    results["group_calls_inprocess"] = sum(baseline.calls.values())

    cached = FakeLibrary(clip_dir, COSTS_S)
    with ProgramExecutor(cached.functions(), cache=CallCache(), cache_identity="bench@1", workers=1) as executor:
        executor.warm()
        start = time.perf_counter()
        records = [executor.execute(code, **kwargs) for code in GROUP]
        results["group_sandbox_cache_s"] = time.perf_counter() - start
    assert all(r.success for r in records), [r.error_log() for r in records]
    results["group_calls_requested"] = sum(len(r.module_calls) for r in records)
    results["group_calls_computed"] = sum(cached.calls.values())
    results["group_cache_hits"] = sum(r.cache_hits for r in records)
    assert results["group_calls_requested"] == results["group_calls_inprocess"]
    results["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    results["python"] = platform.python_version()
    return results


def table(r: dict[str, Any]) -> str:
    ms = lambda s: f"{s * 1000:.2f} ms"  # noqa: E731
    return "\n".join([
        "| measure | sandbox (warm worker, cache) | in-process exec, no cache (original) | ratio |",
        "|---|---|---|---|",
        f"| trivial program, median | {ms(r['trivial_sandbox_s'])} | {ms(r['trivial_inprocess_s'])} | "
        f"{r['trivial_sandbox_s'] / r['trivial_inprocess_s']:.0f}x slower |",
        f"| program with 6 instant module calls, median | {ms(r['six_calls_sandbox_s'])} | "
        f"{ms(r['six_calls_inprocess_s'])} | {r['six_calls_sandbox_s'] / r['six_calls_inprocess_s']:.0f}x slower |",
        f"| group of 8 programs: module calls computed | {r['group_calls_computed']} of "
        f"{r['group_calls_requested']} | {r['group_calls_inprocess']} | "
        f"{r['group_calls_inprocess'] / r['group_calls_computed']:.1f}x fewer |",
        f"| group of 8 programs: wall time (modelled module costs) | {r['group_sandbox_cache_s']:.2f} s | "
        f"{r['group_inprocess_s']:.2f} s | {r['group_inprocess_s'] / r['group_sandbox_cache_s']:.1f}x faster |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="executions per median")
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    results = run(args.repeats)
    print(table(results))
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
