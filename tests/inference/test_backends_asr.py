"""ASR -> SRT (faster-whisper itself is optional and not installed in the CPU environment)."""

from inference.backends.asr import Segment, segments_to_srt, transcribe_to_srt
from inference.subtitles import load_subtitles


class FakeTranscriber:
    def __init__(self, segments):
        self.segments = segments
        self.calls = []

    def transcribe(self, path):
        self.calls.append(path)
        return self.segments


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
