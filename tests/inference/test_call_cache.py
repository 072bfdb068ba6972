"""The content-addressed module-call cache (inference/call_cache.py), alone and in the executor."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from inference.call_cache import CallCache, UncacheableValue, from_portable, path_identity, to_portable
from inference.sandbox import ProgramExecutor, SandboxLimits
from inference.types import AnswerResult, Frame


@pytest.fixture()
def video(tmp_path: Path) -> str:
    path = tmp_path / "video.mp4"
    path.write_bytes(b"video bytes")
    return str(path)


def test_portable_round_trip():
    value = ([(0.0, 10.0)], ["a.mp4"], {"frames": [Frame("a.mp4", 1.0, 11.0, (1, 2, 3, 4))]},
             AnswerResult("B", 0.5, "B", {"k": (1, 2)}), {1: "int key", "$x": "dollar key"}, float("inf"))
    assert from_portable(to_portable(value)) == value
    with pytest.raises(UncacheableValue):
        to_portable(object())


def test_key_depends_on_content_not_spelling(video, tmp_path):
    key = CallCache.make_key
    base = key("extract_frames", {"video": video, "num_frames": 8}, identity="vlm@1", video=video,
               path_arguments={"video"})
    assert base == key("extract_frames", {"num_frames": 8, "video": video}, identity="vlm@1", video=video,
                       path_arguments={"video"})
    link = tmp_path / "link.mp4"
    os.symlink(video, link)
    assert base == key("extract_frames", {"video": str(link), "num_frames": 8}, identity="vlm@1", video=str(link),
                       path_arguments={"video"})
    assert base != key("extract_frames", {"video": video, "num_frames": 8}, identity="vlm@2", video=video,
                       path_arguments={"video"})
    assert base != key("extract_frames", {"video": video, "num_frames": 4}, identity="vlm@1", video=video,
                       path_arguments={"video"})
    assert base != key("trim_frames", {"video": video, "num_frames": 8}, identity="vlm@1", video=video,
                       path_arguments={"video"})
    # Rewriting the video changes its identity, so stale results are never served.
    Path(video).write_bytes(b"another video, re-encoded")
    assert base != key("extract_frames", {"video": video, "num_frames": 8}, identity="vlm@1", video=video,
                       path_arguments={"video"})
    assert path_identity(video).startswith(os.path.realpath(video) + "|")


def test_frames_are_keyed_by_source_identity(video):
    a = CallCache.make_key("run_ocr", {"frame": Frame(video, 1.0, 1.0)}, identity="", video=video)
    b = CallCache.make_key("run_ocr", {"frame": Frame(video, 2.0, 2.0)}, identity="", video=video)
    assert a != b
    os.utime(video, ns=(1, 1))
    assert a != CallCache.make_key("run_ocr", {"frame": Frame(video, 1.0, 1.0)}, identity="", video=video)


def test_hits_misses_and_failures_are_not_cached():
    cache = CallCache()
    calls = Counter()

    def compute():
        calls["n"] += 1
        return {"answer": "A", "frames": [Frame("v.mp4", 0.0, 0.0)]}

    first, hit1 = cache.get_or_compute("k", compute)
    first["answer"] = "mutated by the caller"
    second, hit2 = cache.get_or_compute("k", compute)
    assert (hit1, hit2, calls["n"]) == (False, True, 1)
    assert second["answer"] == "A" and second["frames"] == [Frame("v.mp4", 0.0, 0.0)]
    with pytest.raises(RuntimeError):
        cache.get_or_compute("bad", lambda: (_ for _ in ()).throw(RuntimeError("backend down")))
    assert cache.get_or_compute("bad", lambda: 7) == (7, False)
    assert cache.stats() == {"hits": 1, "misses": 3, "memory_entries": 2, "memory_bytes": cache.stats()["memory_bytes"],
                             "evicted": 0}
    assert cache.stats()["memory_bytes"] > 0


def test_disk_layer_survives_a_new_process(tmp_path):
    CallCache(tmp_path / "cache").get_or_compute("key1", lambda: AnswerResult("C", 0.7), module="query_mc")
    fresh = CallCache(tmp_path / "cache")
    value, hit = fresh.get_or_compute("key1", lambda: pytest.fail("should not recompute"))
    assert hit and value == AnswerResult("C", 0.7)
    # A corrupt file (e.g. from a killed writer) is recomputed, not fatal.
    path = next((tmp_path / "cache").rglob("key1.json"))
    path.write_text("{truncated")
    assert CallCache(tmp_path / "cache").get_or_compute("key1", lambda: 5) == (5, False)


def test_lru_bound():
    cache = CallCache(max_memory_entries=2)
    for key in "abc":
        cache.get_or_compute(key, lambda key=key: key)
    assert len(cache) == 2
    assert cache.get_or_compute("a", lambda: "recomputed") == ("recomputed", False)


def test_concurrent_identical_calls_compute_once():
    cache = CallCache()
    calls = Counter()
    start = threading.Barrier(6)

    def compute():
        calls["n"] += 1
        time.sleep(0.2)
        return [1, 2, 3]

    results = []

    def worker():
        start.wait()
        results.append(cache.get_or_compute("same", compute))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls["n"] == 1
    assert sorted(hit for _, hit in results) == [False] + [True] * 5


# -------------------------------------------------------------------------- in the executor
class CountingModules:
    def __init__(self):
        self.calls: Counter = Counter()
        self.lock = threading.Lock()

    def _count(self, name, *key):
        with self.lock:
            self.calls[(name, *key)] += 1
        time.sleep(0.01)  # a module call costs something

    def get_informative_clips(self, video, query, top_k=3, total_duration=None):
        """Retrieve clips."""
        self._count("clips", query, top_k)
        return [(0.0, 10.0)] * top_k, [video] * top_k

    def extract_frames(self, video, num_frames=8):
        """Sample frames."""
        self._count("frames", num_frames)
        return [Frame(video, float(i), float(i)) for i in range(num_frames)]

    def detect_object(self, frame, text, box_threshold=0.5, text_threshold=0.25):
        """Detect."""
        self._count("detect", frame.time, text)
        return [[0, 0, 4, 4]] if frame.time < 2 else []

    def query_mc(self, frames, question, choices):
        """Answer."""
        self._count("mc", len(frames))
        return {"answer": "C", "confidence": 0.6, "raw_output": "C", "metadata": {}}

    def query_native(self, video, question, choices):
        """Native."""
        self._count("native")
        return {"answer": "A", "confidence": 0.4, "raw_output": "A", "metadata": {}}

    def make_result(self, answer, confidence=1.0, raw_output="", **metadata):
        """Result."""
        self._count("make_result")
        return {"answer": answer, "confidence": confidence, "raw_output": raw_output, "metadata": metadata}

    def functions(self):
        return {n: getattr(self, n) for n in ("get_informative_clips", "extract_frames", "detect_object",
                                              "query_mc", "query_native", "make_result")}


def group_programs() -> list[str]:
    """Eight programs of one GRPO group: different code, many identical calls."""
    head = "def execute_command(video, question):\n"
    return [
        head + "    return query_native(video, question, choices)\n",
        head + "    r = query_native(video, question, choices)\n    return make_result(r['answer'], 0.9)\n",
        head + "    frames = extract_frames(video, 4)\n    return query_mc(frames, question, choices)\n",
        head + "    frames = extract_frames(video)[:4]\n    return query_mc(frames, question, choices)\n",
        head + "    frames = extract_frames(video, num_frames=4)\n"
               "    hits = [f for f in frames if detect_object(f, 'book')]\n"
               "    return query_mc(hits or frames, question, choices)\n",
        head + "    _, clips = get_informative_clips(video, 'book', top_k=1)\n"
               "    frames = [f for c in clips for f in extract_frames(c, 4)]\n"
               "    return query_mc(frames, question, choices)\n",
        head + "    _, clips = get_informative_clips(video, 'book', 1)\n"
               "    frames = extract_frames(clips[0], 4)\n"
               "    boxes = list(map(lambda f: detect_object(f, 'book'), frames))\n"
               "    return query_mc(frames, question, choices)\n",
        head + "    frames = extract_frames(video, 4)\n"
               "    try:\n        detect_object(frames[0], 'book')\n    except ValueError:\n        pass\n"
               "    return query_mc(frames, question, choices)\n",
    ]


def test_identical_calls_across_eight_programs_are_computed_once(video):
    modules = CountingModules()
    cache = CallCache()
    programs = group_programs()
    limits = SandboxLimits(wall_time_s=20)
    with ProgramExecutor(modules.functions(), workers=2, cache=cache, cache_identity="fake@v1",
                         limits=limits) as executor:
        records = executor.execute_many(programs, video=video, question="q?", choices=["a", "b", "c"])
    assert all(r.success for r in records), [r.error_log() for r in records]
    # Every distinct call (make_result is never cached) ran exactly once across the group.
    assert {k: v for k, v in modules.calls.items() if k[0] != "make_result"} == {
        k: 1 for k in modules.calls if k[0] != "make_result"}
    total = sum(len(r.module_calls) for r in records)
    cached_calls = sum(1 for r in records for c in r.module_calls if c.name != "make_result")
    assert sum(r.cache_hits for r in records) + sum(r.cache_misses for r in records) == cached_calls
    assert sum(r.cache_misses for r in records) == sum(v for k, v in modules.calls.items() if k[0] != "make_result")
    assert total > sum(modules.calls.values())
    assert not any(c.cache_hit for r in records for c in r.module_calls if c.name == "make_result")
    # besides make_result: native, frames x2, clips, detect x4, mc x2 (distinct contents)
    assert len(modules.calls) - 1 == 10

    # A second round (refinement, threshold sweep) reuses everything.
    before = sum(modules.calls.values())
    with ProgramExecutor(modules.functions(), cache=cache, cache_identity="fake@v1") as executor:
        again = executor.execute(programs[4], video=video, question="q?", choices=["a", "b", "c"])
    assert again.success and again.cache_misses == 0 and again.cache_hits == len(again.module_calls)
    assert sum(modules.calls.values()) == before
    # A different backend identity shares nothing.
    with ProgramExecutor(modules.functions(), cache=cache, cache_identity="fake@v2") as executor:
        other = executor.execute(programs[0], video=video, question="q?", choices=["a", "b", "c"])
    assert other.cache_hits == 0 and other.cache_misses == 1


def test_byte_bounds_in_memory_and_on_disk(tmp_path):
    """Both layers are bounded in bytes; an entry larger than max_entry_bytes is returned, not kept."""
    cache = CallCache(tmp_path / "c", max_memory_bytes=2_000, max_disk_bytes=3_000, max_entry_bytes=1_500)
    for i in range(40):
        value, hit = cache.get_or_compute(f"k{i:02d}", lambda i=i: {"i": i, "pad": "x" * 200})
        assert value["i"] == i and not hit
    files = list((tmp_path / "c").glob("*/*.json"))
    assert sum(f.stat().st_size for f in files) <= 3_000 and len(files) < 40
    assert cache.stats()["memory_bytes"] <= 2_000 and cache.stats()["evicted"] > 0
    assert cache.get_or_compute("k39", lambda: pytest.fail("the newest entry was evicted"))[1] is True
    big, hit = cache.get_or_compute("big", lambda: {"pad": "y" * 5_000})
    assert big["pad"] == "y" * 5_000 and not hit
    assert cache.get_or_compute("big", lambda: "recomputed") == ("recomputed", False)  # never stored
    # A second cache on the same directory (another process) finds and keeps within the bound.
    other = CallCache(tmp_path / "c", max_disk_bytes=3_000)
    assert other.disk_bytes() == sum(f.stat().st_size for f in (tmp_path / "c").glob("*/*.json")) <= 3_000
