"""Video store: clips partition the video and are cached; damaged or stale caches are
repaired; sampled frames come from the right times; bad input gets a clear error."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from inference.errors import ModuleArgumentError, VideoInputError
from inference.toy.synthetic_video import (
    SyntheticVideo,
    corner_colour,
    generate_synthetic_video,
    read_frame_index,
    write_audio_only,
)
from inference.types import Frame
from inference.video_store import ClipInfo, VideoStore, probe_video

Store = Callable[..., VideoStore]


def _clip_frame_indices(clips: list[ClipInfo], fps: float) -> list[int]:
    """Source frame index of every frame of every clip, read from its barcode, checking that
    each clip's own timestamps map onto the original timeline via the manifest start."""
    seen = []
    for clip in clips:
        with av.open(clip.path) as c:
            for f in c.decode(video=0):
                idx = read_frame_index(f.to_ndarray(format="rgb24"))
                assert idx == round((clip.start + float(f.time)) * fps), (clip, f.time)
                seen.append(idx)
    return seen


def test_probe_reports_the_known_geometry(synthetic_video: SyntheticVideo) -> None:
    info = probe_video(synthetic_video.video_path)
    assert (info.duration, info.fps, info.num_frames) == (40.0, 4.0, 160)
    assert (info.width, info.height, info.codec, info.has_audio) == (320, 240, "h264", False)


def test_clips_partition_the_video_and_a_second_call_hits_the_cache(
        synthetic_video: SyntheticVideo, video_store: Store) -> None:
    store = video_store()
    clips = store.split_clips(synthetic_video.video_path)
    assert store.last_split["mode"] == "copy" and store.last_split["written"] == 4
    assert [(c.start, c.end) for c in clips] == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert all(Path(c.path).parent == store.clip_folder(synthetic_video.video_path) for c in clips)
    assert _clip_frame_indices(clips, synthetic_video.fps) == list(range(160))
    mtimes = [os.stat(c.path).st_mtime_ns for c in clips]
    assert store.split_clips(synthetic_video.video_path) == clips
    assert store.last_split["written"] == 0 and store.last_split["reused"] == 4
    assert [os.stat(c.path).st_mtime_ns for c in clips] == mtimes
    # A fresh store over the same folder trusts the manifest too.
    again = VideoStore(store.clip_dir)
    assert again.split_clips(synthetic_video.video_path) == clips and again.last_split["written"] == 0


def test_parallel_workers_unaligned_clip_length_and_reencode_keep_exact_coverage(
        synthetic_video: SyntheticVideo, video_store: Store) -> None:
    # 3 s clips do not line up with the 2 s keyframes: stream copy cuts at the next keyframe.
    store = video_store(clip_duration=3.0, workers=3)
    clips = store.split_clips(synthetic_video.video_path)
    assert store.last_split["mode"] == "copy"
    assert [c.start for c in clips][:4] == [0, 4, 6, 10]
    assert all(a.end == b.start for a, b in zip(clips, clips[1:])) and clips[-1].end == 40
    assert _clip_frame_indices(clips, synthetic_video.fps) == list(range(160))
    exact = video_store(clip_duration=3.0, split_mode="reencode", workers=3)
    clips = exact.split_clips(synthetic_video.video_path)
    assert [c.start for c in clips][:4] == [0, 3, 6, 9] and clips[-1].end == 40
    assert sum(c.num_frames for c in clips) == 160
    assert _clip_frame_indices(clips, synthetic_video.fps) == list(range(160))


def test_sparse_keyframes_fall_back_to_reencoding(tmp_path: Path, video_store: Store) -> None:
    v = generate_synthetic_video(tmp_path, duration_s=12.0, fps=4.0, size=(96, 64), scene_len_s=4.0,
                                 num_needles=0, keyframe_interval_s=100.0)
    store = video_store(clip_duration=5.0)
    clips = store.split_clips(v.video_path)
    assert store.last_split["mode"] == "reencode"
    assert [(c.start, c.end) for c in clips] == [(0, 5), (5, 10), (10, 12)]
    assert _clip_frame_indices(clips, v.fps) == list(range(48))


def test_deleted_truncated_and_crashed_clips_are_repaired_alone(
        synthetic_video: SyntheticVideo, video_store: Store) -> None:
    store = video_store()
    clips = store.split_clips(synthetic_video.video_path)
    keep = os.stat(clips[0].path).st_mtime_ns
    os.unlink(clips[1].path)
    with open(clips[3].path, "r+b") as f:
        f.truncate(100)
    assert store.split_clips(synthetic_video.video_path) == clips
    assert store.last_split["written"] == 2 and not store.last_split["resplit"]
    assert os.stat(clips[0].path).st_mtime_ns == keep
    assert _clip_frame_indices(clips, synthetic_video.fps) == list(range(160))
    Path(clips[2].path).write_bytes(b"")            # zero-length
    store.split_clips(synthetic_video.video_path)
    assert store.last_split["written"] == 1
    # A run that died after writing clips but before recording them adopts the whole files.
    manifest_path = Path(clips[0].path).parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["clips"][0]["size"] = None
    manifest_path.write_text(json.dumps(manifest))
    store.split_clips(synthetic_video.video_path)
    assert store.last_split["written"] == 0
    assert json.loads(manifest_path.read_text())["clips"][0]["size"] == os.path.getsize(clips[0].path)
    manifest_path.write_text("{not json")           # corrupt manifest: start over
    store.split_clips(synthetic_video.video_path)
    assert store.last_split["resplit"] and store.last_split["written"] == 4


def test_changed_source_video_is_detected_and_resplit(tmp_path: Path, video_store: Store) -> None:
    kw = dict(duration_s=8.0, fps=4.0, size=(96, 64), scene_len_s=2.0, num_needles=0,
              video_id="clip_me")
    first = generate_synthetic_video(tmp_path / "a", seed=1, **kw)
    second = generate_synthetic_video(tmp_path / "b", seed=2, **kw)
    path = tmp_path / "video.mp4"
    shutil.copy(first.video_path, path)
    store = video_store(clip_duration=4.0)
    clips = store.split_clips(path)
    assert store.video_id(path) == store.video_id(str(path))
    os.utime(path)                                  # touched, same bytes: still valid
    store.split_clips(path)
    assert store.last_split["written"] == 0
    shutil.copy(second.video_path, path)            # new content under the same name
    clips2 = store.split_clips(path)
    assert store.last_split["resplit"] and store.last_split["reason"] == "source video changed"
    assert [c.path for c in clips2] == [c.path for c in clips]
    frames = store.sample_frames(clips2[1].path, 2)
    for fr, img in zip(frames, store.load_frames(frames)):
        assert corner_colour(img) == second.content_at(fr.video_time).background
    assert video_store(clip_duration=2.0, clip_dir=store.clip_dir).split_clips(path)
    assert [c.end for c in store.split_clips(path)] == [4.0, 8.0]  # back to 4 s: re-split


def test_concurrent_splitters_share_one_cache(synthetic_video: SyntheticVideo, video_store: Store) -> None:
    store = video_store()
    results: list[list[ClipInfo]] = []
    threads = [threading.Thread(target=lambda: results.append(store.split_clips(synthetic_video.video_path)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and results[0] == results[1] == results[2]
    assert _clip_frame_indices(results[0], synthetic_video.fps) == list(range(160))


@pytest.mark.parametrize("window", [(None, None), (12.0, 20.0), (28.2, 31.1), (39.9, 40.0)])
def test_sampled_frames_come_from_the_right_times(synthetic_video: SyntheticVideo,
                                                  video_store: Store, window) -> None:
    v = synthetic_video
    store = video_store()
    start, end = window
    frames = store.sample_frames(v.video_path, 8, start, end)
    lo, hi = (start or 0.0), (end if end is not None else v.duration)
    assert 1 <= len(frames) <= 8 and len({f.time for f in frames}) == len(frames)
    assert all(lo - 0.25 <= f.time < hi for f in frames)
    if hi - lo >= 2:   # spread evenly: gaps differ by at most one frame
        gaps = np.diff([f.time for f in frames])
        assert gaps.max() - gaps.min() <= 1 / v.fps + 1e-6
    for fr, img in zip(frames, store.load_frames(frames)):
        assert fr.video_time == fr.time
        assert read_frame_index(img) == round(fr.time * v.fps)
        assert corner_colour(img) == v.content_at(fr.time).background


def test_needle_window_sampling_finds_the_flash(synthetic_video: SyntheticVideo, video_store: Store) -> None:
    n = synthetic_video.needles[0]
    array, times = video_store().decode_window(synthetic_video.video_path, 4, n.start, n.end)
    assert array.shape == (4, 240, 320, 3) and array.dtype == np.uint8
    assert all(n.start <= t < n.end for t in times)
    assert all(corner_colour(img) == "white" for img in array)


def test_frames_sampled_from_a_clip_carry_original_video_time(
        synthetic_video: SyntheticVideo, video_store: Store) -> None:
    store = video_store()
    clip = store.split_clips(synthetic_video.video_path)[2]
    frames = store.sample_frames(clip.path, 5, 2.0, 8.0)
    assert [f.source for f in frames] == [clip.path] * 5
    for fr, img in zip(frames, store.load_frames(frames)):
        assert fr.video_time == pytest.approx(clip.start + fr.time)
        assert read_frame_index(img) == round(fr.video_time * synthetic_video.fps)
    array, times = store.decode_window(clip.path, 3)
    assert array.shape[0] == 3 and all(clip.start <= t < clip.end for t in times)
    # Any store maps a clip through the manifest next to it.
    other = video_store().sample_frames(clip.path, 1, 1.0, 1.1)
    assert other[0].video_time == pytest.approx(clip.start + 1.0)


def test_load_frames_crops_keeps_order_and_caches(synthetic_video: SyntheticVideo, video_store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = video_store()
    path = str(synthetic_video.video_path)
    frames = [Frame(path, 30.0, 30.0), Frame(path, 1.0, 1.0), Frame(path, 30.0, 30.0, (0, 0, 40, 20))]
    full_late, full_early, crop = store.load_frames(frames)
    assert read_frame_index(full_late) == 120 and read_frame_index(full_early) == 4
    assert crop.shape == (20, 40, 3) and np.array_equal(crop, full_late[:20, :40])
    # A time between two frames gives the frame on screen then.
    (between,) = store.load_frames([Frame(path, 30.2, 30.2)])
    assert read_frame_index(between) == 120
    calls = []
    monkeypatch.setattr(store, "_decode_times", lambda *a: calls.append(a) or [])
    assert len(store.load_frames(frames)) == 3 and calls == []
    with pytest.raises(ModuleArgumentError, match="empty"):
        store.load_frames([Frame(path, 1.0, 1.0, (50, 50, 50, 60))])
    with pytest.raises(ModuleArgumentError, match="empty frame list"):
        store.load_frames([])


@pytest.mark.parametrize("args,match", [
    ((8, 41.0, 50.0), r"valid range is \[0, 40.000\]"),
    ((8, -20.0, -1.0), r"valid range is \[0, 40.000\]"),
    ((8, 20.0, 10.0), "after its end"),
    ((0, None, None), "positive integer"),
    ((8, float("nan"), 3.0), "not finite"),
])
def test_bad_windows_raise_module_argument_errors(synthetic_video: SyntheticVideo, video_store: Store,
                                                  args, match: str) -> None:
    with pytest.raises(ModuleArgumentError, match=match):
        video_store().sample_frames(synthetic_video.video_path, *args)


def test_partial_window_is_clipped_to_the_video(synthetic_video: SyntheticVideo, video_store: Store) -> None:
    frames = video_store().sample_frames(synthetic_video.video_path, 4, -5.0, 2.0)
    assert frames[0].time >= 0 and frames[-1].time < 2.0


def _bad_inputs(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    missing = tmp / "missing.mp4"
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    audio = write_audio_only(tmp / "audio_only.m4a", 1.0)
    folder = tmp / "a_folder.mp4"
    folder.mkdir()
    return {"missing": (missing, "does not exist"), "zero-length": (empty, "empty"),
            "corrupt": (garbage, "corrupt"), "truncated": (truncated, "corrupt"),
            "audio-only": (audio, "no video stream"), "folder": (folder, "not a regular file")}


@pytest.mark.parametrize("kind", ["missing", "zero-length", "corrupt", "truncated", "audio-only", "folder"])
def test_bad_video_files_raise_a_clear_error_naming_the_file(
        tmp_path: Path, synthetic_video: SyntheticVideo, video_store: Store, kind: str) -> None:
    path, match = _bad_inputs(tmp_path, synthetic_video.video_path)[kind]
    store = video_store()
    for call in (lambda: probe_video(path), lambda: store.split_clips(path),
                 lambda: store.sample_frames(path, 4), lambda: store.decode_window(path, 4),
                 lambda: store.load_frames([Frame(str(path), 0.0, 0.0)])):
        with pytest.raises(VideoInputError, match=match) as err:
            call()
        assert str(path) in str(err.value)
