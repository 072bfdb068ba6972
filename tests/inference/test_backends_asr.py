"""ASR: audio decoding and fingerprints, Whisper through transformers (tiny scripted Whisper on a
synthetic video with an audio track), SRT, the transcript cache and the path to
``get_subtitle_hints``. faster-whisper itself is optional and not installed here."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from inference.backends.asr import (
    SAMPLE_RATE,
    Segment,
    TransformersWhisperASR,
    audio_fingerprint,
    build_transcriber,
    decode_audio,
    segments_to_srt,
    transcribe_to_srt,
)
from inference.subtitles import load_subtitles
from inference.toy.checkpoints import TINY_WHISPER_SEGMENTS
from inference.toy.synthetic_video import generate_synthetic_video, write_audio_only


class FakeTranscriber:
    def __init__(self, segments):
        self.segments = segments
        self.calls = []

    def identity(self):
        return "fake-asr:v1"

    def transcribe(self, path):
        self.calls.append(path)
        return self.segments


def _expected_segments(duration: float) -> list[tuple[float, float, str]]:
    """The tiny Whisper's script, once per 30-s window."""
    return [(w + s, w + e, t) for w in np.arange(0.0, duration, 30.0) for s, e, t in TINY_WHISPER_SEGMENTS]


def test_srt_from_segments_round_trips_through_the_subtitle_reader(tmp_path):
    segs = [Segment(0.0, 1.5, " Hello   there. "), Segment(1.5, 1.5, "   "),
            Segment(3725.25, 3727.0, "An hour later.")]
    text = segments_to_srt(segs)
    assert text.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n")
    assert "2\n01:02:05,250 --> 01:02:07,000\nAn hour later." in text
    fake = FakeTranscriber(segs)
    out = transcribe_to_srt(fake, "video.mp4", tmp_path / "sub" / "asr.srt")
    assert fake.calls == ["video.mp4"]
    cues = load_subtitles(out)
    assert [(c.start, c.end, c.text) for c in cues] == [(0.0, 1.5, "Hello there."),
                                                         (3725.25, 3727.0, "An hour later.")]
    assert not list(out.parent.glob("*.tmp"))


def _remux_audio(src: Path, dst: Path) -> Path:
    """``dst``: only ``src``'s audio stream, packets copied (no re-encoding)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux(inp.streams.audio[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return dst


def test_audio_decoding_and_content_fingerprint(speech_video, synthetic_video, tmp_path):
    audio = decode_audio(speech_video.video_path)
    assert audio.dtype == np.float32 and abs(len(audio) / SAMPLE_RATE - 40.0) < 0.2
    assert 0.05 < float(np.sqrt(np.mean(audio[SAMPLE_RATE:-SAMPLE_RATE] ** 2))) < 0.09  # the 0.1-amplitude tone
    assert decode_audio(synthetic_video.video_path) is None  # no audio stream
    assert audio_fingerprint(synthetic_video.video_path) is None
    key = audio_fingerprint(speech_video.video_path)
    # Keyed by the audio, not the file: the same audio packets in another container match ...
    assert audio_fingerprint(_remux_audio(speech_video.video_path, tmp_path / "audio_only.mp4")) == key
    # ... and other audio does not.
    assert audio_fingerprint(write_audio_only(tmp_path / "short.mp4", duration_s=3.0)) != key


def test_whisper_through_transformers_gives_timestamped_segments(tiny_whisper, speech_video):
    asr = build_transcriber("transformers", str(tiny_whisper), device="cpu")
    assert isinstance(asr, TransformersWhisperASR) and asr.identity().startswith(f"whisper:{tiny_whisper}:")
    segments = asr.transcribe(str(speech_video.video_path))
    # 40 s of audio: long-form, two 30-s windows; the second window's times are offset by 30 s.
    assert [(s.start, s.end, s.text) for s in segments] == _expected_segments(40.0)
    short = asr.transcribe_array(decode_audio(speech_video.video_path)[: 5 * SAMPLE_RATE])  # short-form
    assert [(s.start, s.end, s.text) for s in short] == _expected_segments(5.0)
    assert asr.transcribe_array(np.zeros(0, np.float32)) == []


def test_asr_subtitles_end_to_end_cached_by_audio(module_runtime, tiny_whisper, speech_video, synthetic_video,
                                                  tmp_path):
    v = str(speech_video.video_path)
    rt = module_runtime(asr_enabled=True, asr_model=str(tiny_whisper), hints_summarize=False)
    hints = rt.get_subtitle_hints(v, "What sound plays?", ["a tone", "a song"], word_number=40)
    assert "a quiet tone" in hints and "plays on" in hints
    (start, end), = rt.get_informative_subtitles(v, "a quiet tone plays on", top_k=1)
    assert start == 0.0 and end <= 10.0
    srts = list((rt.store.clip_folder(v) / "asr").glob("*.srt"))
    assert len(srts) == 1 and audio_fingerprint(v) in srts[0].name
    cues = load_subtitles(srts[0])
    assert [(c.start, c.end, c.text) for c in cues] == _expected_segments(40.0)
    assert rt.transcript_cache.computed == 1
    assert rt.identity()["asr"] == rt.asr.identity() and rt.identity()["asr"].startswith("whisper:")

    # A fresh runtime over the same clip folder reads the transcript: no ASR runs.
    again = module_runtime(clip_dir=rt.config.clip_dir, asr_enabled=True, asr_model=str(tiny_whisper),
                           hints_summarize=False)
    again.asr.transcribe = lambda path: pytest.fail("transcribed again instead of reading the cache")
    assert "a quiet tone" in again.get_subtitle_hints(v, "What sound plays?", ["a tone", "a song"])
    assert again.transcript_cache.computed == 0

    # Keyed by the audio: the file replaced by a different video with the same audio track keeps its
    # transcript; changed audio is transcribed anew.
    other = generate_synthetic_video(tmp_path / "other", duration_s=40.0, seed=6, audio=True, video_id="speech")
    assert audio_fingerprint(other.video_path) == audio_fingerprint(v)
    moving = tmp_path / "moving.mp4"
    shutil.copy(v, moving)
    rt.get_subtitle_hints(str(moving), "What sound plays?", ["a tone", "a song"])
    assert rt.transcript_cache.computed == 2
    shutil.copy(other.video_path, moving)
    rt.get_subtitle_hints(str(moving), "What sound plays?", ["a tone", "a song"])
    assert rt.transcript_cache.computed == 2
    shorter = generate_synthetic_video(tmp_path / "short", duration_s=20.0, seed=6, audio=True, video_id="speech")
    shutil.copy(shorter.video_path, moving)
    assert rt.get_informative_subtitles(str(moving), "a quiet tone", top_k=5) == [(0.0, 2.5)]
    assert rt.transcript_cache.computed == 3
    assert len(list((rt.store.clip_folder(str(moving)) / "asr").glob("*.srt"))) == 2

    # No audio stream: no subtitles, no error, nothing written.
    bare = tmp_path / "bare.mp4"
    shutil.copy(synthetic_video.video_path, bare)
    assert rt.get_subtitle_hints(str(bare), "What number?", ["1", "2"]) == ""
    assert rt.get_informative_subtitles(str(bare), "anything") == []
    assert not (rt.store.clip_folder(str(bare)) / "asr").exists()


def test_nothing_recognised_is_cached_as_no_subtitles(module_runtime, speech_video):
    silent = FakeTranscriber([])
    rt = module_runtime(asr_enabled=True, asr=silent, hints_summarize=False)
    v = str(speech_video.video_path)
    assert rt.get_subtitle_hints(v, "What sound plays?", ["a tone", "a song"]) == ""
    assert rt.get_informative_subtitles(v, "tone") == []
    assert len(silent.calls) == 1  # the empty transcript is cached, not retried
    srt, = (rt.store.clip_folder(v) / "asr").glob("fake-asr_v1-*.srt")
    assert srt.read_text() == ""


def test_asr_backend_choice_and_missing_faster_whisper(module_runtime, speech_video):
    with pytest.raises(ValueError, match="asr_backend 'whisperx'"):
        build_transcriber("whisperx", "x")
    rt = module_runtime(asr_enabled=True, asr_backend="faster-whisper", asr_model="large-v3")
    assert rt.identity()["asr"] == "faster-whisper:large-v3:auto"
    try:  # faster-whisper is not installed in the CPU environment
        import faster_whisper  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="asr_backend='faster-whisper' needs the faster-whisper package"):
            rt.get_subtitle_hints(str(speech_video.video_path), "What sound?", ["a", "b"])
