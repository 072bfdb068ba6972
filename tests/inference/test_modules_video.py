"""Temporal modules, crops, make_result and argument errors (no models needed)."""

import numpy as np
import pytest

from inference.errors import ModuleArgumentError
from inference.toy.synthetic_video import corner_colour
from inference.types import Frame


@pytest.fixture
def rt(module_runtime):
    return module_runtime()


def _check_content(rt, video, frames):
    """Each frame's decoded pixels show what the synthetic video showed at its time."""
    for frame, arr in zip(frames, rt.store.load_frames(frames)):
        assert corner_colour(arr) == video.content_at(frame.video_time).background, frame


def test_extract_frames_uniform_and_from_clips(rt, synthetic_video):
    v = str(synthetic_video.video_path)
    frames = rt.extract_frames(v, num_frames=8)
    assert len(frames) == 8 and all(isinstance(f, Frame) for f in frames)
    times = [f.video_time for f in frames]
    assert times == sorted(times) and times[0] < 5.0 and times[-1] > 35.0
    _check_content(rt, synthetic_video, frames)
    clip = rt.store.split_clips(v)[2]
    clip_frames = rt.extract_frames(clip.path, 4)
    assert all(clip.start <= f.video_time < clip.end for f in clip_frames)
    _check_content(rt, synthetic_video, clip_frames)


@pytest.mark.parametrize("call,window", [
    (lambda rt, v: rt.trim_frames(v, 10.0, 14.0, num_frames=6), (10.0, 14.0)),
    (lambda rt, v: rt.trim_around(v, 20.0, intervals=6, num_frames=6), (17.0, 23.0)),
    (lambda rt, v: rt.trim_before(v, 20.0, intervals=6, num_frames=6), (14.0, 20.0)),
    (lambda rt, v: rt.trim_after(v, 20.0, intervals=6, num_frames=6), (20.0, 26.0)),
    # partly outside: clipped to the video
    (lambda rt, v: rt.trim_after(v, 36.0, intervals=30, num_frames=6), (36.0, 40.0)),
])
def test_trim_modules_return_frames_from_their_window(rt, synthetic_video, call, window):
    frames = call(rt, str(synthetic_video.video_path))
    assert 1 <= len(frames) <= 6
    assert all(window[0] - 1e-6 <= f.video_time <= window[1] + 1e-6 for f in frames), frames
    # spread over the window, not bunched at one end
    assert frames[-1].video_time - frames[0].video_time >= 0.5 * (window[1] - window[0]) - 0.5
    _check_content(rt, synthetic_video, frames)


def test_crops_compose_in_full_frame_coordinates(rt, synthetic_video):
    frame = rt.extract_frames(str(synthetic_video.video_path), 1)[0]
    w, h = synthetic_video.size
    left = rt.crop_left(frame)
    assert isinstance(left, Frame) and left.box == (0, 0, w // 2, h)
    quarter = rt.crop_bottom(left)
    assert quarter.box == (0, h // 2, w // 2, h)
    assert rt.crop_right(frame).box == (w // 2, 0, w, h) and rt.crop_top(frame).box == (0, 0, w, h // 2)
    # a box partly outside the current region is clipped to it
    sub = rt.crop(quarter, [10, 10, 100, h + 50])
    assert sub.box == (10, h // 2, 100, h)
    full = rt.store.load_frames([frame])[0]
    np.testing.assert_array_equal(rt.store.load_frames([sub])[0], full[h // 2:h, 10:100])


def test_make_result(rt):
    assert rt.make_result("B", 0.4, "B", source="ocr") == {
        "answer": "B", "confidence": 0.4, "raw_output": "B", "metadata": {"source": "ocr"}}
    # No default confidence: the confidence is the model's (Eq. 2), a program must pass one on.
    with pytest.raises(TypeError, match="confidence"):
        rt.make_result("C")
    with pytest.raises(ModuleArgumentError, match=r"\[0, 1\]"):
        rt.make_result("A", 1.5)
    with pytest.raises(ModuleArgumentError, match="letter"):
        rt.make_result(2, 0.5)


def test_bad_arguments_raise_actionable_errors(rt, synthetic_video, tmp_path):
    v = str(synthetic_video.video_path)
    frame = rt.extract_frames(v, 1)[0]
    with pytest.raises(ModuleArgumentError, match="unknown video .*get_informative_clips"):
        rt.extract_frames(str(tmp_path / "nope.mp4"))
    with pytest.raises(ModuleArgumentError, match="video or clip path, got a Frame"):
        rt.trim_frames(frame, 0, 1)
    with pytest.raises(ModuleArgumentError, match="empty: no frames"):
        rt.query_mc([], "What colour is it?", ["red", "blue"])
    with pytest.raises(ModuleArgumentError, match="empty: no frames"):
        rt.query_yn([], "Is it red?")
    with pytest.raises(ModuleArgumentError, match="outside the video"):
        rt.trim_frames(v, 100.0, 120.0)
    with pytest.raises(ModuleArgumentError, match="outside the video"):
        rt.trim_before(v, -5.0, intervals=3)
    with pytest.raises(ModuleArgumentError, match="start .* after end"):
        rt.trim_frames(v, 20.0, 10.0)
    with pytest.raises(ModuleArgumentError, match="must be positive"):
        rt.trim_around(v, 10.0, intervals=0)
    with pytest.raises(ModuleArgumentError, match="positive integer"):
        rt.extract_frames(v, 0)
    with pytest.raises(ModuleArgumentError, match="list of frames, got the path"):
        rt.query_mc(v, "q?", ["a", "b"])
    with pytest.raises(ModuleArgumentError, match="pick one"):
        rt.run_ocr([frame, frame])
    with pytest.raises(ModuleArgumentError, match=r"\[x0, y0, x1, y1\]"):
        rt.crop(frame, [1, 2, 3])
    with pytest.raises(ModuleArgumentError, match="does not overlap"):
        rt.crop(frame, [1000, 1000, 1100, 1100])
    with pytest.raises(ModuleArgumentError, match="at least two option"):
        rt.query_native(v, "q?", "A")
    with pytest.raises(ModuleArgumentError, match="non-empty string"):
        rt.get_informative_subtitles(v, "   ")
