"""Synthetic videos: decoded pixels match the known content; QA answers and subtitles agree
with it; generation is deterministic and cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from inference.subtitles import load_subtitles, subtitles_in_window
from inference.toy.synthetic_video import (
    ALL_COLOURS,
    PALETTE,
    SyntheticVideo,
    corner_colour,
    generate_synthetic_video,
    main,
    read_frame_index,
    write_audio_only,
)


def _decode_all(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def test_every_decoded_frame_shows_the_known_content(synthetic_video: SyntheticVideo) -> None:
    v = synthetic_video
    frames = _decode_all(v.video_path)
    assert len(frames) == v.num_frames == 160
    for i, (t, img) in enumerate(frames):
        assert t == pytest.approx(v.frame_time(i))
        assert img.shape == (v.size[1], v.size[0], 3)
        assert read_frame_index(img) == i
        assert corner_colour(img) == v.content_at(t).background


def test_palette_is_well_separated_and_scenes_differ_from_neighbours(
        synthetic_video: SyntheticVideo) -> None:
    rgb = np.array(list(ALL_COLOURS.values()), dtype=float)
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=2)
    assert dist[~np.eye(len(rgb), dtype=bool)].min() > 100
    scenes = synthetic_video.scenes
    assert all(a.colour != b.colour for a, b in zip(scenes, scenes[1:]))
    assert scenes[0].start == 0 and scenes[-1].end == synthetic_video.duration
    assert len({s.text for s in scenes}) == len(scenes)


def test_needle_is_a_short_white_flash_with_its_code_announced_by_a_subtitle(
        synthetic_video: SyntheticVideo) -> None:
    v = synthetic_video
    assert len(v.needles) == 1
    n = v.needles[0]
    assert n.end - n.start == pytest.approx(3.0)
    assert v.content_at(n.start).background == "white" and v.content_at(n.start).text == n.code
    assert v.content_at(n.start - 0.3).background != "white"
    assert v.content_at(n.end).background != "white"
    cues = load_subtitles(v.subtitle_path)
    hits = [c for c in cues if "secret number" in c.text]
    assert len(hits) == 1 and (hits[0].start, hits[0].end) == (n.start, n.end)
    assert v.scenes[n.scene_index].text in hits[0].text
    assert n.code not in " ".join(c.text for c in cues)    # only the pixels give it away


def test_subtitles_describe_each_scene(synthetic_video: SyntheticVideo) -> None:
    cues = load_subtitles(synthetic_video.subtitle_path)
    for s in synthetic_video.scenes:
        text = " ".join(c.text for c in subtitles_in_window(cues, s.start + 0.5, s.start + 1.0))
        assert s.text in text and s.colour in text and s.mover in text


def test_qa_records_are_valid_and_their_answers_match_the_content(
        synthetic_video: SyntheticVideo) -> None:
    v = synthetic_video
    # The file names the video and subtitles relative to itself; the loader resolves them.
    from inference.qa_sources import load_qa_records

    raw = [json.loads(line) for line in v.qa_path.read_text().splitlines()]
    assert {(r["video"], r["subtitles"]) for r in raw} == {(v.video_path.name, v.subtitle_path.name)}
    records = list(load_qa_records(str(v.qa_path), "test"))
    assert [r.to_dict() for r in records] == [r.to_dict() for r in v.qa_records]
    kinds = {r.meta["kind"] for r in records}
    assert kinds >= {"colour_at_time", "text_in_window", "moving_object", "motion_direction",
                     "event_order", "needle_code", "needle_context"}
    for r in records:
        assert r.video == str(v.video_path.resolve()) and r.subtitles == str(v.subtitle_path.resolve())
        assert len(set(r.choices)) == len(r.choices) == 4
        answer = r.choices[r.letters.index(r.answer)]
        (s0, s1), *_ = r.meta["evidence"]
        scene = v.content_at(s0).scene
        kind = r.meta["kind"]
        if kind == "colour_at_time":
            mm, ss = r.question.rsplit(" ", 1)[1].rstrip("?").split(":")
            assert answer == v.content_at(int(mm) * 60 + int(ss)).background
        elif kind == "text_in_window":
            assert answer == scene.text
        elif kind == "moving_object":
            assert answer == f"a {scene.mover_colour} {scene.mover}"
        elif kind == "motion_direction":
            assert answer == scene.direction
        elif kind == "event_order":
            starts = [next(s.start for s in v.scenes if s.text == w) for w in answer.split(", ")]
            assert starts == sorted(starts)
        elif kind == "needle_code":
            assert r.meta["needle"] and s1 - s0 == pytest.approx(3.0)
            assert v.content_at(s0).background == "white" and answer == v.content_at(s0).text
        elif kind == "needle_context":
            assert answer == scene.text and r.meta["needle"]


def test_generation_is_deterministic_and_reuses_matching_files(tmp_path: Path) -> None:
    kw = dict(duration_s=6.0, fps=2.0, size=(96, 64), scene_len_s=2.0, num_needles=1,
              needle_len_s=1.0)
    a = generate_synthetic_video(tmp_path / "a", **kw)
    b = generate_synthetic_video(tmp_path / "b", **kw)
    assert a.scenes == b.scenes and a.needles == b.needles
    assert [r.to_dict()["choices"] for r in a.qa_records] == [r.to_dict()["choices"] for r in b.qa_records]
    assert a.subtitle_path.read_text() == b.subtitle_path.read_text()
    c = generate_synthetic_video(tmp_path / "c", seed=1, **kw)
    assert [s.colour for s in c.scenes] != [s.colour for s in a.scenes] or \
        [s.text for s in c.scenes] != [s.text for s in a.scenes]
    mtime = a.video_path.stat().st_mtime_ns
    again = generate_synthetic_video(tmp_path / "a", **kw)
    assert again.video_path.stat().st_mtime_ns == mtime
    changed = generate_synthetic_video(tmp_path / "a", **{**kw, "size": (128, 64)})
    with av.open(str(changed.video_path)) as cont:
        assert cont.streams.video[0].codec_context.width == 128


def test_audio_track_keyframe_interval_and_audio_only_helper(tmp_path: Path) -> None:
    v = generate_synthetic_video(tmp_path, duration_s=4.0, fps=4.0, size=(96, 64), scene_len_s=2.0,
                                 num_needles=0, needle_len_s=1.0, keyframe_interval_s=1.0, audio=True)
    with av.open(str(v.video_path)) as c:
        assert len(c.streams.audio) == 1
        keys = [float(p.pts * p.time_base) for p in c.demux(video=0) if p.is_keyframe and p.pts is not None]
    assert keys == [0.0, 1.0, 2.0, 3.0]
    audio = write_audio_only(tmp_path / "tone.m4a", 1.0)
    with av.open(str(audio)) as c:
        assert not c.streams.video and len(c.streams.audio) == 1


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        generate_synthetic_video(tmp_path, size=(101, 64))
    with pytest.raises(ValueError, match="half"):
        generate_synthetic_video(tmp_path, scene_len_s=4.0, needle_len_s=3.0)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--duration" in capsys.readouterr().out
    assert main([str(tmp_path), "--duration", "4", "--fps", "2", "--size", "96x64",
                 "--scene-len", "2", "--needles", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert os.path.exists(out["video"]) and out["scenes"] == 2 and out["needles"] == 0
    assert set(PALETTE) >= {s["colour"] for s in json.loads(Path(out["content"]).read_text())["scenes"]}


@pytest.mark.slow   # ~20 s on 2 cores, nearly all of it loading torch and the OCR models
def test_easyocr_reads_the_burned_in_words_and_needle_code(synthetic_video: SyntheticVideo) -> None:
    easyocr = pytest.importorskip("easyocr")
    models = pytest.importorskip("easyocr_en_models")
    reader = easyocr.Reader(["en"], gpu=False, download_enabled=False, verbose=False,
                            model_storage_directory=os.path.join(os.path.dirname(models.__file__), "models"))
    v = synthetic_video
    times = [v.scenes[0].start + 1.0, v.scenes[-1].start + 1.0, v.needles[0].start + 1.0]
    frames = {round(t, 6): img for t, img in _decode_all(v.video_path)}
    for t in times:
        read = " ".join(r[1] for r in reader.readtext(frames[t]))
        assert read.replace(" ", "") == v.content_at(t).text.replace(" ", "")
