"""ASR for videos without subtitles: faster-whisper (optional dependency) -> SRT.

The paper pairs clips with subtitles "extracted by FFmpeg and Whisper". ``transcribe_to_srt``
writes an SRT next to the clip cache that ``load_subtitles`` reads like any other subtitle
file. faster-whisper is imported only when a transcription is requested, so the rest of the
runtime works without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from inference.backends import load_once, torch_device


@dataclass(frozen=True)
class Segment:
    """One transcribed span (seconds in the video)."""

    start: float
    end: float
    text: str


def _srt_time(seconds: float) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def segments_to_srt(segments: Iterable[Segment]) -> str:
    """SRT text for ``segments``; empty segments are dropped and numbering is contiguous."""
    blocks = []
    for seg in segments:
        text = " ".join(seg.text.split())
        if not text:
            continue
        end = max(seg.end, seg.start + 0.001)
        blocks.append(f"{len(blocks) + 1}\n{_srt_time(seg.start)} --> {_srt_time(end)}\n{text}\n")
    return "\n".join(blocks)


class Transcriber(Protocol):
    def transcribe(self, path: str) -> list[Segment]: ...


class FasterWhisperASR:
    """faster-whisper transcription (``model``: size name such as ``large-v3`` or a local
    CTranslate2 folder)."""

    name = "faster-whisper"

    def __init__(self, model: str = "large-v3", device: str = "auto", compute_type: str = "default",
                 language: str | None = None, beam_size: int = 5) -> None:
        self.model_name = model
        self.device = device
        self.compute_type = compute_type
        self.language = language
        self.beam_size = beam_size

    def identity(self) -> str:
        return f"faster-whisper:{self.model_name}"

    def _model(self):
        def build():
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ImportError("transcribing videos without subtitles needs faster-whisper: "
                                  "pip install 'videopro[asr]' (or provide a subtitle file)") from exc
            device = torch_device(self.device)
            return WhisperModel(self.model_name, device=device, compute_type=self.compute_type)

        return load_once(("faster-whisper", self.model_name, self.device, self.compute_type), build)

    def transcribe(self, path: str) -> list[Segment]:
        segments, _info = self._model().transcribe(path, language=self.language, beam_size=self.beam_size,
                                                   vad_filter=True)
        return [Segment(float(s.start), float(s.end), str(s.text)) for s in segments]


def transcribe_to_srt(transcriber: Transcriber, video_path: str, out_path: str | Path) -> Path:
    """Transcribe ``video_path`` and write the SRT to ``out_path`` (atomically, so that a
    crash never leaves a half-written subtitle file that later runs would trust)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = segments_to_srt(transcriber.transcribe(video_path))
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
