"""ASR for videos without subtitles: Whisper -> timestamped segments -> SRT, cached per audio.

The paper pairs clips with subtitles "extracted by FFmpeg and Whisper". Two backends:

- :class:`TransformersWhisperASR` (``asr_backend: transformers``, the default): in-process
  ``WhisperForConditionalGeneration`` + ``WhisperProcessor`` (``openai/whisper-large-v3`` or any
  Whisper checkpoint). The audio track is decoded with PyAV to 16 kHz mono; audio longer than
  30 s is transcribed with Whisper's sequential long-form algorithm (``generate`` over the whole
  log-mel input with ``return_timestamps=True`` and Whisper's fallback thresholds), whose
  timestamp tokens give the segments;
- :class:`FasterWhisperASR` (``asr_backend: faster-whisper``): the optional faster-whisper
  package (CTranslate2).

:class:`TranscriptCache` keeps one SRT per (audio content, ASR model) next to the clip cache,
``<clip_dir>/<video_id>/asr/<model>-<audio hash>.srt``, written atomically; the key is a hash
of the audio stream's packets, so a re-muxed or re-encoded *video* with the same audio reuses
its transcript and changed audio never does. A file without an audio stream has no
subtitles (no error); audio in which nothing is recognised gives an empty SRT, cached too.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.backends import load_once, resolve_model, torch_device

SAMPLE_RATE = 16_000  # Whisper's input rate


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
    def identity(self) -> str: ...

    def transcribe(self, path: str) -> list[Segment]: ...


# ----------------------------------------------------------------------------- audio

def _audio_stream(container: Any) -> Any | None:
    return container.streams.audio[0] if container.streams.audio else None


def has_audio(path: str | os.PathLike[str]) -> bool:
    """Whether the media file has an audio stream."""
    import av

    with av.open(str(path)) as container:
        return _audio_stream(container) is not None


def decode_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The first audio stream of ``path`` as float32 mono samples at ``sample_rate`` (``[N]``),
    or None when the file has no audio stream."""
    import av

    with av.open(str(path)) as container:
        stream = _audio_stream(container)
        if stream is None:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):  # flush the resampler's buffered tail
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def audio_fingerprint(path: str | os.PathLike[str]) -> str | None:
    """Content hash of the first audio stream (codec parameters and every packet's bytes; no
    decoding), or None when there is none."""
    import av

    with av.open(str(path)) as container:
        stream = _audio_stream(container)
        if stream is None:
            return None
        ctx = stream.codec_context
        h = hashlib.sha256(f"{ctx.name}:{ctx.sample_rate}:{ctx.channels}".encode())
        if ctx.extradata:
            h.update(bytes(ctx.extradata))
        for packet in container.demux(stream):
            if packet.size:
                h.update(bytes(packet))
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------- backends

# Whisper's own long-form decoding settings (openai-whisper ``transcribe()``: temperature fallback,
# compression-ratio, log-probability and no-speech thresholds), in transformers' terms: its
# compression ratio is computed on token ids, where 1.35 corresponds to openai-whisper's 2.4.
WHISPER_DECODING: dict[str, Any] = {
    "temperature": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), "compression_ratio_threshold": 1.35,
    "logprob_threshold": -1.0, "no_speech_threshold": 0.6, "condition_on_prev_tokens": False,
}


class TransformersWhisperASR:
    """Whisper through transformers (``model``: a hub id such as ``openai/whisper-large-v3`` or a
    local checkpoint folder). ``language`` None lets a multilingual model detect it; English-only
    models ignore it. Decoding is greedy with Whisper's fallback rules (``WHISPER_DECODING``); a
    fallback that samples draws from a fixed seed, so a transcript is reproducible."""

    name = "whisper"

    def __init__(self, model: str = "openai/whisper-large-v3", device: str = "auto", dtype: str = "auto",
                 language: str | None = None, seed: int = 0) -> None:
        self.model_name = model
        self.model_path = resolve_model(model)
        self.device = torch_device(device)
        self.dtype = dtype
        self.language = language
        self.seed = seed

    def identity(self) -> str:
        from inference.backends.vlm import weights_version

        return f"whisper:{self.model_name}:{weights_version(self.model_path)}:{self.language or 'auto'}"

    def _load(self):
        def build():
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor

            dtype = {"auto": torch.float16 if self.device.startswith("cuda") else torch.float32,
                     "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.dtype]
            local = Path(self.model_path).is_dir()
            processor = WhisperProcessor.from_pretrained(self.model_path, local_files_only=local)
            model = WhisperForConditionalGeneration.from_pretrained(self.model_path, local_files_only=local,
                                                                    dtype=dtype)
            return processor, model.to(self.device).eval()

        return load_once(("whisper", self.model_path, self.device, self.dtype), build)

    def transcribe(self, path: str) -> list[Segment]:
        audio = decode_audio(path)
        return [] if audio is None else self.transcribe_array(audio)

    def transcribe_array(self, audio: np.ndarray) -> list[Segment]:
        """Segments of 16 kHz mono float samples ``[N]`` (times in seconds from sample 0)."""
        import torch

        if audio.size == 0:
            return []
        processor, model = self._load()
        features = processor.feature_extractor
        # The whole signal as one log-mel input (long-form); under 30 s it is padded to 30 s.
        inputs = features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False,
                          padding="longest", return_attention_mask=True)
        if inputs.input_features.shape[-1] < features.nb_max_frames:
            inputs = features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
        kwargs: dict[str, Any] = dict(WHISPER_DECODING)
        if getattr(model.generation_config, "is_multilingual", False):
            kwargs.update(task="transcribe", language=self.language)
        cuda = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.inference_mode(), torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            out = model.generate(input_features=inputs.input_features.to(self.device, model.dtype),
                                 attention_mask=inputs.attention_mask.to(self.device),
                                 return_timestamps=True, return_segments=True, **kwargs)
        duration = len(audio) / SAMPLE_RATE
        timestamp_begin = model.generation_config.no_timestamps_token_id + 1
        segments = []
        for seg in out["segments"][0]:
            tokens = [int(t) for t in seg["tokens"] if int(t) < timestamp_begin]
            text = processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            start = min(float(seg["start"]), duration)
            segments.append(Segment(start, min(max(float(seg["end"]), start), duration), text))
        return segments


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
        return f"faster-whisper:{self.model_name}:{self.language or 'auto'}"

    def _model(self):
        def build():
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ImportError("asr_backend='faster-whisper' needs the faster-whisper package: "
                                  "pip install 'videopro[asr]'; asr_backend='transformers' needs nothing "
                                  "extra") from exc
            device = torch_device(self.device)
            return WhisperModel(self.model_name, device=device, compute_type=self.compute_type)

        return load_once(("faster-whisper", self.model_name, self.device, self.compute_type), build)

    def transcribe(self, path: str) -> list[Segment]:
        if not has_audio(path):
            return []
        segments, _info = self._model().transcribe(path, language=self.language, beam_size=self.beam_size,
                                                   vad_filter=True)
        return [Segment(float(s.start), float(s.end), str(s.text)) for s in segments]


def build_transcriber(backend: str, model: str, device: str = "auto", language: str | None = None) -> Transcriber:
    """The ASR backend named by ``ModuleConfig.asr_backend``."""
    if backend == "transformers":
        return TransformersWhisperASR(model, device=device, language=language)
    if backend == "faster-whisper":
        return FasterWhisperASR(model, device=device, language=language)
    raise ValueError(f"asr_backend {backend!r}: expected 'transformers' (Whisper in-process) or 'faster-whisper'")


# ----------------------------------------------------------------------------- SRT files and the cache

def transcribe_to_srt(transcriber: Transcriber, video_path: str, out_path: str | Path) -> Path:
    """Transcribe ``video_path`` and write the SRT to ``out_path`` (atomically, so that a
    crash never leaves a half-written subtitle file that later runs would trust)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = segments_to_srt(transcriber.transcribe(video_path))
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


class TranscriptCache:
    """ASR transcripts on disk, next to the clip cache.

    File: ``<clip_dir>/<video_id>/asr/<ASR identity>-<audio fingerprint>.srt``. ``computed``
    counts transcriptions run (not read from disk).
    """

    def __init__(self) -> None:
        self.computed = 0
        self._fingerprints: dict[tuple[str, int, int], str | None] = {}
        # One transcription at a time: concurrent module calls on the same video wait for the
        # first one's file instead of transcribing it again (the model is shared anyway).
        self._lock = threading.Lock()

    def fingerprint(self, video_path: str) -> str | None:
        """``audio_fingerprint``, memoised per (path, size, mtime) in this process."""
        st = os.stat(video_path)
        key = (str(Path(video_path).resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._fingerprints:
            self._fingerprints[key] = audio_fingerprint(video_path)
        return self._fingerprints[key]

    @staticmethod
    def path_for(clip_folder: str | Path, transcriber: Transcriber, audio_key: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", transcriber.identity())[-80:].strip("_.")
        return Path(clip_folder) / "asr" / f"{name}-{audio_key}.srt"

    def get(self, video_path: str, clip_folder: str | Path, transcriber: Transcriber) -> Path | None:
        """The SRT of ``video_path``'s audio (transcribed on first use); None when the file has
        no audio stream. The SRT may be empty (nothing was recognised)."""
        audio_key = self.fingerprint(video_path)
        if audio_key is None:
            return None
        path = self.path_for(clip_folder, transcriber, audio_key)
        if not path.is_file():
            with self._lock:
                if not path.is_file():
                    transcribe_to_srt(transcriber, video_path, path)
                    self.computed += 1
        return path
