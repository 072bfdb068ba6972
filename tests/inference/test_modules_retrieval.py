"""Subtitle retrieval and hints (packaged MiniLM), clip retrieval and its on-disk cache."""

from pathlib import Path

import numpy as np
import pytest

from inference.backends.retrieval import ClipEmbeddingCache
from inference.errors import ModuleArgumentError


def test_subtitle_retrieval_finds_the_needle_window(module_runtime, synthetic_video):
    rt = module_runtime()
    v = str(synthetic_video.video_path)
    needle = synthetic_video.needles[0]
    (start, end), = rt.get_informative_subtitles(v, "a secret number flashes on a white screen")
    assert start <= needle.start and needle.end <= end, ((start, end), needle)
    assert end - start <= rt.config.subtitle_window_s + 1e-6
    # A scene's own description finds that scene.
    scene = synthetic_video.scenes[2]
    intervals = rt.get_informative_subtitles(v, f"the word {scene.text} is written below", top_k=2)
    assert len(intervals) == 2 and intervals[0][0] <= scene.start + 1.0 and intervals[0][1] > scene.start
    # A video without subtitles: nothing to retrieve, no error.
    rt.register_subtitles(v, None)
    bare = Path(rt.config.clip_dir).parent / "bare.mp4"
    bare.write_bytes(Path(v).read_bytes())
    assert rt.get_informative_subtitles(str(bare), "secret number") == []
    assert rt.get_subtitle_hints(str(bare), "What number?", ["1", "2"]) == ""


def test_subtitle_hints_verbatim_and_summarised(module_runtime, synthetic_video, tiny_qwen3_vl):
    v = str(synthetic_video.video_path)
    word = synthetic_video.scenes[synthetic_video.needles[0].scene_index].text
    raw = module_runtime(hints_summarize=False).get_subtitle_hints(
        v, "Which number flashes on the white screen?", ["1234", "8290"], word_number=40)
    assert "secret number" in raw and word in raw and len(raw.split()) <= 60
    rt = module_runtime(vlm_backend="transformers", vlm_checkpoint=str(tiny_qwen3_vl))
    hints = rt.get_subtitle_hints(v, "Which number flashes?", ["1234", "8290"], duration=40.0, word_number=12)
    assert isinstance(hints, str) and 0 < len(hints.split()) <= 12


def test_clip_retrieval_aligned_with_clip_cache_and_reuses_embeddings(module_runtime, synthetic_video):
    rt = module_runtime()
    v = str(synthetic_video.video_path)
    intervals, paths = rt.get_informative_clips(v, "a green screen with a diamond", top_k=3)
    clips = {c.path: c for c in rt.store.split_clips(v)}
    assert len(intervals) == len(paths) == 3 and len(set(paths)) == 3
    for (start, end), path in zip(intervals, paths):
        assert isinstance(path, str) and Path(path).is_file() and path in clips
        assert (start, end) == (round(clips[path].start, 3), round(clips[path].end, 3))
    # Best first: scores recomputed from the cached embeddings decrease.
    cache_file = rt.embedding_cache.path_for(rt.store.video_id(v), rt.retriever, rt.config.frames_per_clip)
    assert cache_file.is_file() and cache_file.parent.parent == rt.store.clip_folder(v)
    with np.load(cache_file) as data:
        names, emb = list(data["names"]), data["embeddings"]
    q = rt.retriever.embed_texts(["a green screen with a diamond"])[0]
    scores = [float(emb[names.index(Path(p).name)] @ q) for p in paths]
    assert scores == sorted(scores, reverse=True)
    assert rt.embedding_cache.computed == 1
    # Fig. 7 spells the count k: accepted as well (the prompt keeps showing top_k).
    assert rt.get_informative_clips(v, "a green screen with a diamond", k=1) == (intervals[:1], paths[:1])
    assert rt.get_informative_subtitles(v, "a green screen", k=1) == rt.get_informative_subtitles(v, "a green screen")
    with pytest.raises(ModuleArgumentError, match="either top_k or k"):
        rt.get_informative_clips(v, "a ball", top_k=2, k=1)
    # Second call (same runtime) and a fresh runtime over the same clip folder: read from disk.
    assert rt.get_informative_clips(v, "a ball moving", top_k=2)[1][0] in clips
    assert rt.embedding_cache.computed == 1
    again = module_runtime(clip_dir=rt.config.clip_dir)
    calls = []
    original = again.retriever.embed_clips
    again.retriever.embed_clips = lambda frames: calls.append(len(frames)) or original(frames)
    assert again.get_informative_clips(v, "a green screen with a diamond", top_k=3) == (intervals, paths)
    assert calls == [] and again.embedding_cache.computed == 0
    # A different sampling setting is a different cache entry.
    other = module_runtime(clip_dir=rt.config.clip_dir, frames_per_clip=2)
    other.get_informative_clips(v, "ball", top_k=1)
    assert other.embedding_cache.computed == 1
    # total_duration clamps interval ends; top_k larger than the clip count returns every clip.
    ints, _ = rt.get_informative_clips(v, "ball", top_k=50, total_duration=25.0)
    assert len(ints) == len(clips) and all(e <= 25.0 or s >= 25.0 for s, e in ints)


def test_clip_cache_recomputes_when_clips_change(tmp_path):
    class Retriever:
        name = "fake"

        def identity(self):
            return "fake:v1"

        def embed_clips(self, clips):
            return np.stack([np.full(4, float(len(c))) for c in clips])

    class C:
        def __init__(self, i):
            self.path, self.start, self.end = f"/x/clip_{i:04d}.mp4", 10.0 * i, 10.0 * i + 10

    cache = ClipEmbeddingCache(tmp_path)
    clips = [C(0), C(1)]
    cache.get("vid", clips, Retriever(), 8, lambda c: np.zeros((3, 2, 2, 3)))
    cache.get("vid", clips, Retriever(), 8, lambda c: np.zeros((3, 2, 2, 3)))
    assert cache.computed == 1
    cache.get("vid", clips + [C(2)], Retriever(), 8, lambda c: np.zeros((3, 2, 2, 3)))
    assert cache.computed == 2
