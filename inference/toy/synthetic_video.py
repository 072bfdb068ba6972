"""Deterministic synthetic long videos whose content is known at every instant.

A synthetic video is a sequence of fixed-length *scenes*. Each scene shows

* a flat background in one of a few well-separated colours (a decoded frame's mean colour
  in the top-left corner identifies the scene despite codec loss and chroma subsampling),
* a static shape (circle, square, triangle, diamond) in the top-right corner,
* an object (ball or box) moving horizontally across the middle of the frame,
* a burned-in uppercase word on a black band at the bottom (white, large: OCR reads it).

A few *needles* replace part of a scene by a short white flash carrying a four-digit code in
black; a subtitle line announces the flash (without giving the code), so a question about the
code can only be answered from the few seconds around it, and text retrieval over the
subtitles finds that window.

Outputs (``generate_synthetic_video``): an H.264 MP4 written with PyAV (yuv420p, a keyframe
every ``keyframe_interval_s`` so that seeking is cheap), an SRT track describing each scene,
a JSONL file of QA records (DESIGN.md §2) whose answers are known, and ``<id>.content.json``
holding the full specification, so the same call reuses the files instead of re-encoding.

Rendering is numpy-only per frame (text and shape masks are rasterised once per scene), so an
hour at 640x360 and 4 fps is dominated by the encoder.

CLI: ``python -m inference.toy.synthetic_video OUT_DIR --duration 3600 --fps 4 --size 640x360``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from inference.types import OPTION_LETTERS, QARecord

# Well separated in RGB (pairwise distance > 100) so nearest-colour classification of a
# decoded frame is unambiguous; none of them is white, which is reserved for needle flashes.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (245, 235, 30),
    "cyan": (40, 210, 230),
    "magenta": (210, 40, 200),
    "orange": (250, 130, 0),
    "gray": (128, 128, 128),
}
FLASH_COLOUR = ("white", (255, 255, 255))
ALL_COLOURS: dict[str, tuple[int, int, int]] = {**PALETTE, FLASH_COLOUR[0]: FLASH_COLOUR[1],
                                               "black": (0, 0, 0)}

SHAPES = ("circle", "square", "triangle", "diamond")
MOVERS = ("ball", "box")
# Short, distinct, common English words: easy for OCR and for sentence embedders.
WORDS = (
    "APPLE", "RIVER", "TIGER", "CLOUD", "PIANO", "CANDLE", "ROCKET", "GARDEN", "BRIDGE", "LEMON",
    "HORSE", "TRAIN", "PLANET", "FOREST", "WINDOW", "SILVER", "DRAGON", "MARKET", "ISLAND",
    "CASTLE", "PENCIL", "ORANGE", "BASKET", "TURTLE", "SUMMER", "WINTER", "MIRROR", "DESERT",
    "JUNGLE", "FALCON", "HAMMER", "LADDER", "VALLEY", "COFFEE", "PEPPER", "TEMPLE", "ANCHOR",
    "BUTTER", "CIRCUS", "DOCTOR", "ENGINE", "FINGER", "GUITAR", "HELMET", "JACKET", "KETTLE",
    "MONKEY", "NAPKIN",
)

# Layout, as fractions of (width, height). The top-left corner is background only, so its
# mean colour identifies the scene.
CORNER = (0.0, 0.0, 0.30, 0.30)
SHAPE_CENTRE = (0.80, 0.20)
SHAPE_SIZE = 0.16           # of height
MOVER_Y = 0.50
MOVER_SIZE = 0.14           # of height
BAND = (0.04, 0.68, 0.96, 0.96)
# A 16-bit barcode of the frame index along the top edge (white = 1, black = 0), so tests can
# check that a decoded frame is exactly the one asked for, not just from the right scene.
BARCODE = (0.32, 0.0, 0.72, 0.07)
BARCODE_BITS = 16


@dataclass(frozen=True)
class Scene:
    """Known content of one scene ``[start, end)`` (seconds)."""

    index: int
    start: float
    end: float
    colour: str
    rgb: tuple[int, int, int]
    shape: str
    shape_colour: str
    text: str
    mover: str
    mover_colour: str
    direction: str            # "left to right" | "right to left"


@dataclass(frozen=True)
class Needle:
    """A short full-frame flash ``[start, end)`` with a code, announced by a subtitle line."""

    start: float
    end: float
    code: str
    scene_index: int


@dataclass(frozen=True)
class Content:
    """What the frame at one instant shows (``SyntheticVideo.content_at``)."""

    time: float
    scene: Scene
    background: str
    rgb: tuple[int, int, int]
    text: str                 # the burned-in text visible at that time
    needle: Needle | None


@dataclass
class SyntheticVideo:
    """Paths and known content of one generated video."""

    video_id: str
    video_path: Path
    subtitle_path: Path
    qa_path: Path
    content_path: Path
    duration: float
    fps: float
    size: tuple[int, int]
    keyframe_interval_s: float
    seed: int
    scenes: list[Scene]
    needles: list[Needle]
    qa_records: list[QARecord] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps))

    def frame_time(self, index: int) -> float:
        """Presentation time of frame ``index`` (the instant it was rendered for)."""
        return index / self.fps

    def content_at(self, t: float) -> Content:
        """Content shown at time ``t``: that of the frame displayed at ``t``."""
        if not 0.0 <= t <= self.duration + 1e-6:
            raise ValueError(f"time {t:.3f}s is outside the video [0, {self.duration:.3f}]s")
        # The frame on screen at t is the last one presented at or before t; content is a
        # function of that frame's own time, exactly as it was rendered.
        index = min(int(math.floor(t * self.fps + 1e-6)), self.num_frames - 1)
        return self._content_of_frame(index)

    def _content_of_frame(self, index: int) -> Content:
        t = self.frame_time(index)
        scene = self.scenes[min(int(t // self.scene_len), len(self.scenes) - 1)]
        for needle in self.needles:
            if needle.start <= t < needle.end:
                return Content(t, scene, FLASH_COLOUR[0], FLASH_COLOUR[1], needle.code, needle)
        return Content(t, scene, scene.colour, scene.rgb, scene.text, None)

    @property
    def scene_len(self) -> float:
        return self.scenes[0].end - self.scenes[0].start

    def to_dict(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id, "duration": self.duration, "fps": self.fps,
            "size": list(self.size), "keyframe_interval_s": self.keyframe_interval_s,
            "seed": self.seed, "video": self.video_path.name, "subtitles": self.subtitle_path.name,
            "qa": self.qa_path.name,
            "scenes": [dataclasses.asdict(s) for s in self.scenes],
            "needles": [dataclasses.asdict(n) for n in self.needles],
        }


# ----------------------------------------------------------------------------- colour helpers

def nearest_colour(rgb: Sequence[float], names: Sequence[str] | None = None) -> str:
    """Name of the palette colour (or flash white / black) nearest to ``rgb``."""
    candidates = names if names is not None else list(ALL_COLOURS)
    ref = np.array([ALL_COLOURS[n] for n in candidates], dtype=np.float64)
    dist = np.linalg.norm(ref - np.asarray(rgb, dtype=np.float64)[None, :], axis=1)
    return candidates[int(np.argmin(dist))]


def read_frame_index(frame: np.ndarray) -> int:
    """The frame index burned into a decoded ``HxWx3`` frame's top-edge barcode."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = int(BARCODE[0] * w), int(BARCODE[1] * h), int(BARCODE[2] * w), int(BARCODE[3] * h)
    cell = (x1 - x0) / BARCODE_BITS
    value = 0
    for b in range(BARCODE_BITS):
        # Sample the middle of each cell: block edges blur under the codec.
        xa, xb = int(x0 + (b + 0.25) * cell), int(x0 + (b + 0.75) * cell)
        patch = frame[y0 + 1: max(y0 + 2, y1 - 1), xa: max(xa + 1, xb)]
        value = (value << 1) | int(patch.mean() > 127)
    return value


def corner_colour(frame: np.ndarray) -> str:
    """Background colour name of a decoded ``HxWx3`` frame, read from its top-left corner
    (which only ever shows background)."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = CORNER
    # Stay clear of the very edge: encoders smear borders slightly.
    patch = frame[int(y0 * h) + 2: int(y1 * h) - 2, int(x0 * w) + 2: int(x1 * w) - 2]
    return nearest_colour(patch.reshape(-1, 3).mean(axis=0))


# ----------------------------------------------------------------------------- content plan

def _plan(duration: float, scene_len: float, seed: int, num_needles: int,
          needle_len: float) -> tuple[list[Scene], list[Needle]]:
    rng = random.Random(seed)
    n_scenes = max(1, int(math.ceil(duration / scene_len - 1e-9)))
    colours = list(PALETTE)
    words = list(WORDS)
    rng.shuffle(words)
    scenes: list[Scene] = []
    prev = None
    for i in range(n_scenes):
        colour = rng.choice([c for c in colours if c != prev])  # neighbours always differ
        prev = colour
        # Words are unique over the whole video: beyond the list, a cycle number is appended.
        text = words[i % len(words)] + ("" if i < len(words) else f" {i // len(words) + 1}")
        scenes.append(Scene(
            index=i, start=round(i * scene_len, 6), end=round(min((i + 1) * scene_len, duration), 6),
            colour=colour, rgb=PALETTE[colour], shape=rng.choice(SHAPES),
            shape_colour=rng.choice(["white", "black"]), text=text, mover=rng.choice(MOVERS),
            mover_colour=rng.choice([c for c in colours if c != colour]),
            direction=rng.choice(["left to right", "right to left"])))
    needles: list[Needle] = []
    # Needles sit in the second half of full-length scenes (the scene's subtitle covers the
    # first half), spread evenly over the video.
    eligible = [s for s in scenes if s.end - s.start >= scene_len - 1e-6 and s.index > 0]
    if num_needles > 0 and eligible and needle_len < scene_len / 2 + 1e-9:
        step = len(eligible) / num_needles
        picked = sorted({eligible[min(int((k + 0.5) * step), len(eligible) - 1)].index
                         for k in range(num_needles)})
        codes: set[str] = set()
        for idx in picked:
            scene = scenes[idx]
            code = f"{rng.randint(1000, 9999)}"
            while code in codes:
                code = f"{rng.randint(1000, 9999)}"
            codes.add(code)
            start = round(scene.end - needle_len - min(1.0, scene_len / 2 - needle_len), 6)
            needles.append(Needle(start=start, end=round(start + needle_len, 6), code=code,
                                  scene_index=idx))
    return scenes, needles


# ----------------------------------------------------------------------------- rendering

def _text_mask(text: str, width: int, height: int) -> np.ndarray:
    """Boolean mask of ``text`` rendered as large as fits ``width x height``, centred."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(8, int(height * 0.8))
    while True:
        font = ImageFont.load_default(size=size)
        # A thin outline makes strokes survive chroma subsampling; thicker ones close the
        # gaps OCR needs (9 reads as 8, 5 as 6).
        stroke = max(1, size // 40)
        x0, y0, x1, y1 = font.getbbox(text, stroke_width=stroke)
        if (x1 - x0 <= width and y1 - y0 <= height) or size <= 8:
            break
        size = int(size * 0.9)
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    draw.text(((width - (x1 - x0)) / 2 - x0, (height - (y1 - y0)) / 2 - y0), text, fill=255,
              font=font, stroke_width=stroke, stroke_fill=255)
    return np.asarray(img) >= 128


def _shape_mask(shape: str, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    c = size / 2.0
    if shape in ("circle", "ball"):
        return (xx - c) ** 2 + (yy - c) ** 2 <= c * c
    if shape in ("square", "box"):
        return np.ones((size, size), dtype=bool)
    if shape == "triangle":   # apex up
        return (yy >= size * 0.05) & (np.abs(xx - c) <= (yy / size) * c)
    if shape == "diamond":
        return np.abs(xx - c) + np.abs(yy - c) <= c
    raise ValueError(f"unknown shape {shape!r}")


class _Renderer:
    """Renders frames as ``HxWx3`` uint8 arrays; masks are cached per text/shape."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        bx0, by0, bx1, by1 = BAND
        self.band = (int(bx0 * width), int(by0 * height), int(bx1 * width), int(by1 * height))
        self.shape_px = max(4, int(SHAPE_SIZE * height))
        self.mover_px = max(4, int(MOVER_SIZE * height))
        self._text: dict[Any, np.ndarray] = {}
        self._shape: dict[tuple[str, int], np.ndarray] = {}
        self._scene_base: dict[int, np.ndarray] = {}

    def text_mask(self, text: str, width: int, height: int) -> np.ndarray:
        key = f"{text}|{width}x{height}"
        if key not in self._text:
            self._text[key] = _text_mask(text, width, height)
        return self._text[key]

    def shape_mask(self, shape: str, size: int) -> np.ndarray:
        if (shape, size) not in self._shape:
            self._shape[(shape, size)] = _shape_mask(shape, size)
        return self._shape[(shape, size)]

    def scene_base(self, scene: Scene) -> np.ndarray:
        """Everything static in a scene: background, shape, text band (cached for one scene)."""
        if scene.index not in self._scene_base:
            self._scene_base.clear()
            img = np.empty((self.h, self.w, 3), dtype=np.uint8)
            img[:] = scene.rgb
            s = self.shape_px
            cx, cy = int(SHAPE_CENTRE[0] * self.w), int(SHAPE_CENTRE[1] * self.h)
            region = img[cy - s // 2: cy - s // 2 + s, cx - s // 2: cx - s // 2 + s]
            region[self.shape_mask(scene.shape, s)] = ALL_COLOURS[scene.shape_colour]
            x0, y0, x1, y1 = self.band
            img[y0:y1, x0:x1] = 0
            pad = max(2, (y1 - y0) // 10)
            mask = self.text_mask(scene.text, x1 - x0 - 2 * pad, y1 - y0 - 2 * pad)
            img[y0 + pad: y1 - pad, x0 + pad: x1 - pad][mask] = 255
            self._scene_base[scene.index] = img
        return self._scene_base[scene.index]

    def flash(self, needle: Needle) -> np.ndarray:
        if ("flash", needle.code) in self._text:
            return self._text[("flash", needle.code)]  # type: ignore[index]
        img = np.full((self.h, self.w, 3), 255, dtype=np.uint8)
        # The code sits in the middle band, clear of the top-left corner.
        x0, y0, x1, y1 = int(0.1 * self.w), int(0.35 * self.h), int(0.9 * self.w), int(0.75 * self.h)
        mask = self.text_mask(needle.code, x1 - x0, y1 - y0)
        img[y0:y1, x0:x1][mask] = 0
        self._text[("flash", needle.code)] = img  # type: ignore[index]
        return img

    def barcode(self, img: np.ndarray, index: int) -> np.ndarray:
        x0, y0 = int(BARCODE[0] * self.w), int(BARCODE[1] * self.h)
        x1, y1 = int(BARCODE[2] * self.w), int(BARCODE[3] * self.h)
        cell = (x1 - x0) / BARCODE_BITS
        for b in range(BARCODE_BITS):
            bit = (index >> (BARCODE_BITS - 1 - b)) & 1
            img[y0:y1, int(x0 + b * cell): int(x0 + (b + 1) * cell)] = 255 if bit else 0
        return img

    def render(self, video: SyntheticVideo, index: int) -> np.ndarray:
        content = video._content_of_frame(index)
        if content.needle is not None:
            return self.barcode(self.flash(content.needle).copy(), index)
        scene = content.scene
        img = self.barcode(self.scene_base(scene).copy(), index)
        # The mover crosses the frame once per scene, fully inside the frame at both ends.
        s = self.mover_px
        span = max(1e-6, scene.end - scene.start)
        frac = min(1.0, max(0.0, (content.time - scene.start) / span))
        if scene.direction == "right to left":
            frac = 1.0 - frac
        x_left = int(round(frac * (self.w - s)))
        y_top = int(MOVER_Y * self.h) - s // 2
        region = img[y_top: y_top + s, x_left: x_left + s]
        region[self.shape_mask(scene.mover, s)] = ALL_COLOURS[scene.mover_colour]
        return img


# ----------------------------------------------------------------------------- encoding

def _encode(video: SyntheticVideo, path: Path, *, audio: bool, crf: int, preset: str) -> None:
    import av

    width, height = video.size
    renderer = _Renderer(width, height)
    rate = Fraction(video.fps).limit_denominator(1000)
    gop = max(1, int(round(video.keyframe_interval_s * video.fps)))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            # Fixed GOP without scene-cut keyframes: seeking cost is bounded and predictable.
            stream.options = {"crf": str(crf), "preset": preset, "g": str(gop),
                              "keyint_min": str(gop), "sc_threshold": "0"}
            stream.codec_context.time_base = Fraction(1, 1) / rate
            astream = None
            if audio:
                astream = container.add_stream("aac", rate=16000)
                astream.layout = "mono"
            for i in range(video.num_frames):
                frame = av.VideoFrame.from_ndarray(renderer.render(video, i), format="rgb24")
                frame = frame.reformat(format="yuv420p")
                frame.pts = i
                frame.time_base = stream.codec_context.time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
            if astream is not None:
                _write_tone(container, astream, video.duration)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_tone(container: Any, astream: Any, duration: float, freq: float = 440.0) -> None:
    """A quiet sine tone: an audio track for tests of audio handling."""
    import av

    sr = astream.codec_context.sample_rate
    frame_size = astream.codec_context.frame_size or 1024
    total = int(duration * sr)
    for pos in range(0, total, frame_size):
        n = min(frame_size, total - pos)
        t = (np.arange(pos, pos + n) / sr).astype(np.float32)
        samples = (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = sr
        frame.pts = pos
        container.mux(astream.encode(frame))
    container.mux(astream.encode())


def write_audio_only(path: str | os.PathLike[str], duration_s: float = 3.0) -> Path:
    """Write an MP4 (AAC) file with an audio stream and no video stream."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as container:
        astream = container.add_stream("aac", rate=16000)
        astream.layout = "mono"
        _write_tone(container, astream, duration_s)
    return path


# ----------------------------------------------------------------------------- subtitles & QA

def _ts(t: float) -> str:
    ms = int(round(t * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def _clock(t: float) -> str:
    t = int(round(t))
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def subtitle_cues(video: SyntheticVideo) -> list[tuple[float, float, str]]:
    """The subtitle cues (start, end, text) of a synthetic video, in time order.

    Each scene gets one cue over the first half of the scene naming its colour, shape, word
    and moving object; each needle gets one cue over its flash."""
    cues: list[tuple[float, float, str]] = []
    for s in video.scenes:
        half = (s.end - s.start) / 2
        cues.append((s.start + min(0.1, half / 4), s.start + half,
                     f"Now the screen turns {s.colour}. A {s.shape_colour} {s.shape} is in the "
                     f"corner, a {s.mover_colour} {s.mover} moves {s.direction}, and the word "
                     f"{s.text} is written below."))
    for n in video.needles:
        word = video.scenes[n.scene_index].text
        cues.append((n.start, n.end, f"Attention: right after the word {word}, a secret number "
                                     "flashes on a white screen."))
    cues.sort(key=lambda c: c[0])
    return cues


def _choices(rng: random.Random, correct: str, pool: Sequence[str], k: int = 4) -> tuple[list[str], str]:
    others = [p for p in dict.fromkeys(pool) if p != correct]
    picked = rng.sample(others, min(k - 1, len(others))) + [correct]
    rng.shuffle(picked)
    return picked, OPTION_LETTERS[picked.index(correct)]


def make_qa_records(video: SyntheticVideo) -> list[QARecord]:
    """Questions with known answers: colour at a time, text in a window, moving object,
    order of words, and needle questions (code and flash colour)."""
    rng = random.Random(video.seed * 7919 + 17)
    records: list[QARecord] = []
    vid = video.video_id
    common = {"video": str(video.video_path.resolve()), "duration": video.duration,
              "subtitles": str(video.subtitle_path.resolve()), "source": "synthetic"}

    def add(kind: str, question: str, correct: str, pool: Sequence[str],
            evidence: list[tuple[float, float]], needle: bool = False) -> None:
        choices, answer = _choices(rng, correct, pool)
        records.append(QARecord(
            id=f"{vid}-{len(records):03d}-{kind}", question=question, choices=choices,
            answer=answer, meta={"kind": kind, "needle": needle,
                                 "evidence": [[round(a, 3), round(b, 3)] for a, b in evidence]},
            **common))

    full = [s for s in video.scenes if s.end - s.start > 1.0]
    n_each = max(1, min(5, len(full) // 8))
    for s in rng.sample(full, min(n_each, len(full))):
        t = s.start + (s.end - s.start) * 0.25   # before any needle in the scene
        add("colour_at_time", f"What is the background colour of the screen at {_clock(t)}?",
            s.colour, list(PALETTE), [(s.start, s.end)])
    words = [s.text for s in video.scenes]
    for s in rng.sample(full, min(n_each, len(full))):
        add("text_in_window", f"Which word is written on the screen between {_clock(s.start)} "
            f"and {_clock(s.end)}?", s.text, words, [(s.start, s.end)])
    for s in rng.sample(full, min(n_each, len(full))):
        correct = f"a {s.mover_colour} {s.mover}"
        pool = [f"a {c} {m}" for c in PALETTE for m in MOVERS if c != s.colour]
        add("moving_object", f"What moves across the screen between {_clock(s.start)} and "
            f"{_clock(s.end)}?", correct, pool, [(s.start, s.end)])
        add("motion_direction", f"In which direction does the {s.mover_colour} {s.mover} move "
            f"between {_clock(s.start)} and {_clock(s.end)}?", s.direction,
            ["left to right", "right to left", "top to bottom", "bottom to top"],
            [(s.start, s.end)])
    if len(full) >= 3:
        for _ in range(n_each):
            picked = sorted(rng.sample(full, 3), key=lambda s: s.start)
            correct = ", ".join(s.text for s in picked)
            pool = [", ".join(p.text for p in perm) for perm in _permutations(picked)]
            add("event_order", "In which order do these words appear on screen: "
                f"{', '.join(sorted(s.text for s in picked))}?", correct, pool,
                [(s.start, s.end) for s in picked])
    codes = [n.code for n in video.needles]
    for n in video.needles:
        # Each question names its own needle (by the word shown before it, or by its code),
        # so other needles' codes are fair distractors.
        before = video.scenes[n.scene_index]
        decoys = codes + [f"{(int(n.code) + d) % 9000 + 1000}" for d in (1111, 2345, 4567, 6789)]
        add("needle_code", f"Right after the word {before.text} is shown, a secret number briefly "
            "flashes on a white screen. What is the number?", n.code, decoys,
            [(n.start, n.end)], needle=True)
        add("needle_context", f"Which word is shown just before the secret number {n.code} "
            "flashes on a white screen?", before.text, words, [(before.start, n.end)], needle=True)
    return records


def _permutations(items: Sequence[Scene]) -> list[list[Scene]]:
    import itertools

    return [list(p) for p in itertools.permutations(items)]


# ----------------------------------------------------------------------------- public entry

def generate_synthetic_video(
    out_dir: str | os.PathLike[str],
    *,
    duration_s: float = 40.0,
    fps: float = 4.0,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    scene_len_s: float = 8.0,
    num_needles: int | None = None,
    needle_len_s: float = 3.0,
    keyframe_interval_s: float = 2.0,
    audio: bool = False,
    video_id: str | None = None,
    crf: int = 23,
    preset: str = "veryfast",
    overwrite: bool = False,
) -> SyntheticVideo:
    """Generate (or reuse) a synthetic video with known content, SRT subtitles and QA records.

    Args:
        out_dir: folder for ``<video_id>.mp4``, ``.srt``, ``.qa.jsonl`` and ``.content.json``.
        duration_s: length in seconds (tens of seconds for tests, 3600 for benchmarks).
        fps: frame rate; 2-4 keeps hour-long videos cheap to write and read.
        size: ``(width, height)``; both even (yuv420p).
        seed: everything (colours, words, shapes, needle codes, questions) derives from it.
        scene_len_s: scene length; ``scene_len_s * fps`` should be an integer so scene
            boundaries fall on frames.
        num_needles: number of flashes; default one per 10 minutes (at least one).
        needle_len_s: flash length; must be at most half a scene.
        keyframe_interval_s: GOP length (seeking decodes at most this much).
        audio: also write a mono AAC tone track.
        overwrite: re-encode even when the files exist and match this specification.
    """
    width, height = int(size[0]), int(size[1])
    if width % 2 or height % 2 or width < 64 or height < 48:
        raise ValueError(f"size {size!r}: width and height must be even and at least 64x48")
    if duration_s <= 0 or fps <= 0 or scene_len_s <= 0:
        raise ValueError("duration_s, fps and scene_len_s must be positive")
    if num_needles != 0 and needle_len_s > scene_len_s / 2:
        raise ValueError(f"needle_len_s={needle_len_s} must be at most half of scene_len_s={scene_len_s}")
    if num_needles is None:
        num_needles = max(1, int(duration_s // 600))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video_id = video_id or f"synthetic_{int(round(duration_s))}s_seed{seed}"
    # Frame count is rounded so the encoded duration is exactly num_frames / fps.
    duration = round(int(round(duration_s * fps)) / fps, 6)
    scenes, needles = _plan(duration, scene_len_s, seed, num_needles, needle_len_s)
    video = SyntheticVideo(
        video_id=video_id, video_path=out / f"{video_id}.mp4", subtitle_path=out / f"{video_id}.srt",
        qa_path=out / f"{video_id}.qa.jsonl", content_path=out / f"{video_id}.content.json",
        duration=duration, fps=float(fps), size=(width, height),
        keyframe_interval_s=keyframe_interval_s, seed=seed, scenes=scenes, needles=needles)
    video.qa_records = make_qa_records(video)
    spec = video.to_dict() | {"audio": audio, "crf": crf, "preset": preset,
                              "generator_version": 4}
    if (not overwrite and video.video_path.exists() and video.video_path.stat().st_size > 0
            and video.content_path.exists() and video.subtitle_path.exists()
            and video.qa_path.exists()):
        try:
            if json.loads(video.content_path.read_text()) == json.loads(json.dumps(spec)):
                return video
        except (OSError, ValueError):
            pass
    _encode(video, video.video_path, audio=audio, crf=crf, preset=preset)
    _atomic_write(video.subtitle_path, "".join(
        f"{i}\n{_ts(a)} --> {_ts(b)}\n{text}\n\n"
        for i, (a, b, text) in enumerate(subtitle_cues(video), start=1)))
    # On disk the paths are relative to the QA file (loaders resolve them against its folder),
    # so a generated folder can be moved or shipped and still loads.
    _atomic_write(video.qa_path, "".join(
        json.dumps(r.to_dict() | {"video": video.video_path.name, "subtitles": video.subtitle_path.name}) + "\n"
        for r in video.qa_records))
    _atomic_write(video.content_path, json.dumps(spec, indent=1))
    return video


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.toy.synthetic_video",
        description="Generate a deterministic synthetic video with known content, an SRT "
                    "subtitle track and QA records (DESIGN.md §2).")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds (default 40)")
    parser.add_argument("--fps", type=float, default=4.0, help="frames per second (default 4)")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT, even (default 320x240)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene-len", type=float, default=8.0, help="scene length in seconds")
    parser.add_argument("--needles", type=int, default=None,
                        help="number of needle flashes (default one per 10 minutes)")
    parser.add_argument("--needle-len", type=float, default=3.0,
                        help="needle flash length in seconds, at most half a scene (default 3)")
    parser.add_argument("--keyframe-interval", type=float, default=2.0, help="seconds")
    parser.add_argument("--audio", action="store_true", help="add a mono AAC tone track")
    parser.add_argument("--video-id", default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 640x360")
    video = generate_synthetic_video(
        args.out_dir, duration_s=args.duration, fps=args.fps, size=(w, h), seed=args.seed,
        scene_len_s=args.scene_len, num_needles=args.needles, needle_len_s=args.needle_len,
        keyframe_interval_s=args.keyframe_interval, audio=args.audio, video_id=args.video_id,
        overwrite=args.overwrite)
    print(json.dumps({"video": str(video.video_path), "subtitles": str(video.subtitle_path),
                      "qa": str(video.qa_path), "content": str(video.content_path),
                      "duration": video.duration, "scenes": len(video.scenes),
                      "needles": len(video.needles), "questions": len(video.qa_records)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
