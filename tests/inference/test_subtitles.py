"""Subtitle parsing: every supported format yields the same cues; bad input is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.errors import SubtitleError, VideoInputError
from inference.subtitles import Cue, cues_to_text, load_subtitles, parse_timestamp, subtitles_in_window

EXPECTED = [
    Cue(1.0, 4.5, "The red ball rolls left."),
    Cue(3.0, 6.25, "A man opens the door."),        # overlaps the first cue
    Cue(70.5, 73.0, "Code 4821 is on the wall.\nLook closely."),
]


def _srt(blocks: list[tuple[str, str, str]], nl: str = "\n") -> str:
    return nl.join(f"{i}{nl}{a} --> {b}{nl}{t.replace(chr(10), nl)}{nl}"
                   for i, (a, b, t) in enumerate(blocks, start=1))


def write_all_formats(tmp: Path) -> dict[str, Path]:
    plain = [("00:00:01,000", "00:00:04,500", "The red ball rolls left."),
             ("00:00:03,000", "00:00:06,250", "A man opens the door."),
             ("00:01:10,500", "00:01:13,000", "Code 4821 is on the wall.\nLook closely.")]
    # Video-MME: <font> markup, CRLF line ends, UTF-8 BOM; cues listed out of order.
    vmme = [("00:01:10,500", "00:01:13,000",
             '<font face="Serif" size="18">Code 4821 is on the wall.</font>\n'
             '<font face="Serif" size="18"><i>Look closely.</i></font>'),
            ("00:00:01,000", "00:00:04,500", '<font color="#ffffff">The red ball rolls left.</font>'),
            ("00:00:03,000", "00:00:06,250", "<b>A man</b> opens the door.")]
    paths = {"srt": tmp / "plain.srt", "videomme": tmp / "vmme.srt", "lvb_line": tmp / "lvb1.json",
             "lvb_timestamp": tmp / "lvb2.json", "whisper": tmp / "whisper.json"}
    paths["srt"].write_text(_srt(plain), encoding="utf-8")
    paths["videomme"].write_bytes(b"\xef\xbb\xbf" + _srt(vmme, nl="\r\n").encode("utf-8"))
    paths["lvb_line"].write_text(json.dumps([
        {"start": "00:00:01.000", "end": "00:00:04.500", "line": "The red ball rolls left."},
        {"start": "00:00:03.000", "end": "00:00:06.250", "line": "A man opens the door."},
        {"start": "00:01:10.500", "end": "00:01:13.000",
         "line": "Code 4821 is on the wall.\nLook closely."}]))
    paths["lvb_timestamp"].write_text(json.dumps([
        {"timestamp": [1.0, 4.5], "text": " The red ball rolls left."},
        {"timestamp": [3.0, 6.25], "text": " A man opens the door."},
        {"timestamp": [70.5, 73.0], "text": "Code 4821 is on the wall.\nLook closely."}]))
    paths["whisper"].write_text(json.dumps({"text": "...", "segments": [
        {"id": 0, "start": 1.0, "end": 4.5, "text": "The red ball rolls left."},
        {"id": 1, "start": 3.0, "end": 6.25, "text": "A man opens the door."},
        {"id": 2, "start": 70.5, "end": 73.0, "text": "Code 4821 is on the wall.\nLook closely."}]}))
    return paths


@pytest.mark.parametrize("fmt", ["srt", "videomme", "lvb_line", "lvb_timestamp", "whisper"])
def test_every_format_parses_to_the_same_cues(tmp_path: Path, fmt: str) -> None:
    path = write_all_formats(tmp_path)[fmt]
    assert load_subtitles(path) == EXPECTED


def test_offset_shifts_and_drops_cues_before_zero(tmp_path: Path) -> None:
    path = write_all_formats(tmp_path)["lvb_timestamp"]
    cues = load_subtitles(path, offset_s=5.0)
    assert cues == [Cue(0.0, 1.25, "A man opens the door."),
                    Cue(65.5, 68.0, "Code 4821 is on the wall.\nLook closely.")]
    assert load_subtitles(path, offset_s=-2.0)[0] == Cue(3.0, 6.5, "The red ball rolls left.")


def test_open_ended_json_cue_runs_to_next_cue_or_duration(tmp_path: Path) -> None:
    path = tmp_path / "open.json"
    path.write_text(json.dumps([{"timestamp": [0.0, None], "text": "one"},
                                {"timestamp": [2.5, None], "text": "two"}]))
    assert load_subtitles(path, duration=10.0) == [Cue(0.0, 2.5, "one"), Cue(2.5, 10.0, "two")]


def test_srt_without_blank_lines_vtt_timings_and_entities(tmp_path: Path) -> None:
    path = tmp_path / "odd.srt"
    path.write_text("WEBVTT\n\n00:01.000 --> 00:02.500\nTom &amp; Jerry {\\an8}run\n"
                    "2\n00:00:03,000 --> 00:00:04,000\nnext\n")
    assert load_subtitles(path) == [Cue(1.0, 2.5, "Tom & Jerry run"), Cue(3.0, 4.0, "next")]


def test_window_and_text_helpers_handle_overlaps_and_rolling_captions() -> None:
    rolling = [Cue(0.0, 3.0, "hello there"), Cue(2.0, 5.0, "hello there\ngeneral kenobi"),
               Cue(4.0, 7.0, "general kenobi\nyou are bold")]
    assert cues_to_text(rolling) == "hello there\ngeneral kenobi\nyou are bold"
    assert cues_to_text(rolling[:1], with_timestamps=True) == "[00:00-00:03] hello there"
    assert subtitles_in_window(EXPECTED, 4.0, 5.0) == EXPECTED[:2]
    assert subtitles_in_window(EXPECTED, 6.5, 70.0) == []
    assert subtitles_in_window(EXPECTED, 72.0, 100.0) == EXPECTED[2:]


def test_parse_timestamp_forms() -> None:
    assert parse_timestamp("01:02:03,500") == pytest.approx(3723.5)
    assert parse_timestamp("02:03.25") == pytest.approx(123.25)
    assert parse_timestamp(7) == 7.0
    with pytest.raises(ValueError):
        parse_timestamp("soon")


@pytest.mark.parametrize("name,content", [
    ("missing.srt", None),
    ("empty.srt", ""),
    ("blank.srt", "\n \n"),
    ("prose.srt", "this is not a subtitle file at all\n"),
    ("bad.json", "[{\"start\": 1, \"end\": 2, "),
    ("nolist.json", "{\"foo\": 1}"),
    ("nofield.json", "[{\"start\": 1, \"end\": 2}]"),
    ("badtime.json", "[{\"start\": \"later\", \"end\": 2, \"line\": \"x\"}]"),
    ("badts.json", "[{\"timestamp\": [1], \"text\": \"x\"}]"),
])
def test_bad_subtitle_files_raise_an_error_naming_the_file(tmp_path: Path, name: str,
                                                           content: str | None) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(SubtitleError) as err:
        load_subtitles(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, VideoInputError)
