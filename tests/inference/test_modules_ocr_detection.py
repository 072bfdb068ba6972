"""run_ocr with the packaged EasyOCR weights; detect_object + crop with a tiny random Grounding DINO."""

import numpy as np
import pytest

from inference.errors import ModuleArgumentError
from inference.types import Frame


@pytest.fixture
def rt(module_runtime):
    return module_runtime()


def test_run_ocr_reads_burned_in_words_and_needle_code(rt, synthetic_video):
    v = str(synthetic_video.video_path)
    needle = synthetic_video.needles[0]
    checked = 0
    for scene in synthetic_video.scenes[:3]:
        t = scene.start + 0.25 * (scene.end - scene.start)  # before any needle in the scene
        frame = rt.trim_frames(v, t, t + 0.5, num_frames=1)[0]
        assert synthetic_video.content_at(frame.video_time).needle is None
        text = rt.run_ocr(frame)
        assert isinstance(text, str) and scene.text in text.upper(), (scene, text)
        # The word sits in the bottom band: a bottom crop still holds it, the top half does not.
        assert scene.text in rt.run_ocr(rt.crop_bottom(frame)).upper()
        assert scene.text not in rt.run_ocr(rt.crop_top(frame)).upper()
        checked += 1
    assert checked == 3
    mid = (needle.start + needle.end) / 2
    flash = rt.trim_frames(v, mid, mid + 0.5, num_frames=1)[0]
    digits = "".join(ch for ch in rt.run_ocr(flash) if ch.isdigit())
    # The synthetic bitmap font's 8 and 9 are near-identical to EasyOCR; the code is read as a
    # four-digit number with at most one such confusion.
    assert len(digits) == 4 and sum(a != b for a, b in zip(digits, needle.code)) <= 1, (digits, needle)


def test_detect_object_returns_int_boxes_in_full_frame_coordinates(rt, synthetic_video):
    frame = rt.extract_frames(str(synthetic_video.video_path), 1)[0]
    w, h = synthetic_video.size
    boxes = rt.detect_object(frame, "ball", box_threshold=0.0, text_threshold=0.0)
    assert isinstance(boxes, list) and boxes
    for box in boxes:
        assert isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
    # On a crop, boxes come back in full-frame pixels inside the crop's region.
    right = rt.crop_right(frame)
    for x0, y0, x1, y1 in rt.detect_object(right, "ball. box", box_threshold=0.0, text_threshold=0.0):
        assert right.box[0] <= x0 < x1 <= right.box[2] and right.box[1] <= y0 < y1 <= right.box[3]
    crop = rt.crop(frame, boxes[0])
    assert isinstance(crop, Frame) and crop.box == tuple(boxes[0])
    pixels = rt.store.load_frames([crop])[0]
    assert pixels.shape == (boxes[0][3] - boxes[0][1], boxes[0][2] - boxes[0][0], 3)
    # Default thresholds still give a (possibly empty) list: programs test it with `if`.
    assert isinstance(rt.detect_object(frame, "book"), list)
    with pytest.raises(ModuleArgumentError, match=r"box_threshold must be a number in \[0, 1\]"):
        rt.detect_object(frame, "book", box_threshold=5)
    with pytest.raises(ModuleArgumentError, match="non-empty string"):
        rt.detect_object(frame, "")


def test_backends_load_once_per_process(module_runtime, synthetic_video):
    a, b = module_runtime(), module_runtime()
    frame = a.extract_frames(str(synthetic_video.video_path), 1)[0]
    a.run_ocr(frame), b.run_ocr(frame)
    a.detect_object(frame, "ball"), b.detect_object(frame, "ball")
    assert a.ocr._reader() is b.ocr._reader()
    assert a.detector._load()[1] is b.detector._load()[1]
    assert np.array_equal(a.store.load_frames([frame])[0], b.store.load_frames([frame])[0])
