"""Subtitle reading: SRT (incl. Video-MME's ``<font>`` markup), WebVTT-style timings, and the
JSON variants LongVideoBench (and Whisper) write.

Supported inputs, detected from the content rather than the extension:

* SRT: numbered blocks ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` + text lines; BOM, CRLF, missing
  index lines, ``.`` as the millisecond separator, markup (``<font ...>``, ``<i>``, ``<b>``,
  ``{\\an8}``) and HTML entities are handled. Overlapping cues are kept (sorted by start);
  rolling captions that repeat the previous cue's line are de-duplicated by ``cues_to_text``.
* LongVideoBench JSON: a list of ``{"start": "HH:MM:SS.mmm", "end": ..., "line": ...}`` or of
  ``{"timestamp": [start_s, end_s], "text": ...}`` (an ``end`` of ``null`` runs to the next
  cue, or to ``duration``). Its per-video ``starting_timestamp_for_subtitles`` is the
  ``offset_s`` argument.
* Whisper-style JSON: ``{"segments": [{"start": s, "end": s, "text": ...}]}``.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.errors import SubtitleError

_TIMING = re.compile(
    r"^\s*(?P<a>(?:\d+:)?\d{1,2}:\d{1,2}(?:[.,]\d{1,3})?)\s*-->\s*"
    r"(?P<b>(?:\d+:)?\d{1,2}:\d{1,2}(?:[.,]\d{1,3})?)")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Cue:
    """One subtitle line shown over ``[start, end]`` seconds of the video."""

    start: float
    end: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text}


def parse_timestamp(value: Any) -> float:
    """Seconds from ``HH:MM:SS,mmm`` / ``HH:MM:SS.mmm`` / ``MM:SS.mmm`` or a number."""
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"not a finite timestamp: {value!r}")
        return float(value)
    text = str(value).strip().replace(",", ".")
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"not a timestamp: {value!r}")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def _clean(text: str) -> str:
    text = html.unescape(_TAG.sub("", text))
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in text.split("\n")]
    return "\n".join(ln for ln in lines if ln)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise SubtitleError(f"subtitle file {str(path)!r} does not exist; check the path or pass "
                            "no subtitles")
    if not path.is_file():
        raise SubtitleError(f"subtitle file {str(path)!r} is not a regular file")
    raw = path.read_bytes()
    if not raw.strip():
        raise SubtitleError(f"subtitle file {str(path)!r} is empty; pass no subtitles for this "
                            "video, or regenerate them (e.g. with ASR)")
    for enc in ("utf-8-sig", "utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    # Old SRTs are often Windows-1252; decoding never fails, odd characters survive as-is.
    return raw.decode("cp1252", errors="replace")


def _parse_srt(text: str, path: Path) -> list[Cue]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    cues: list[Cue] = []
    lines = text.split("\n")
    i = 0
    saw_timing = False
    while i < len(lines):
        m = _TIMING.match(lines[i])
        if not m:
            i += 1
            continue
        saw_timing = True
        try:
            start, end = parse_timestamp(m["a"]), parse_timestamp(m["b"])
        except ValueError as exc:
            raise SubtitleError(f"subtitle file {str(path)!r}, line {i + 1}: bad timing "
                                f"{lines[i].strip()!r} ({exc}); expected "
                                "HH:MM:SS,mmm --> HH:MM:SS,mmm") from exc
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip():
            if _TIMING.match(lines[i]):
                break  # a block without a blank line before the next timing
            body.append(lines[i])
            i += 1
        # A trailing bare number is the next block's index when blank lines are missing.
        if body and i < len(lines) and _TIMING.match(lines[i]) and body[-1].strip().isdigit():
            body.pop()
        cue_text = _clean("\n".join(body))
        if cue_text:
            cues.append(Cue(start, max(start, end), cue_text))
    if not saw_timing:
        raise SubtitleError(f"subtitle file {str(path)!r}: no cue timing line found; expected "
                            "SRT (HH:MM:SS,mmm --> HH:MM:SS,mmm) or LongVideoBench/Whisper JSON")
    return cues


def _parse_json(data: Any, path: Path, duration: float | None) -> list[Cue]:
    if isinstance(data, dict):
        for key in ("subtitles", "segments", "cues"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            raise SubtitleError(f"subtitle file {str(path)!r}: JSON object without a "
                                "'subtitles'/'segments' list; expected a list of cues")
    if not isinstance(data, list):
        raise SubtitleError(f"subtitle file {str(path)!r}: expected a JSON list of cues, got "
                            f"{type(data).__name__}")
    raw: list[tuple[float, float | None, str]] = []
    for n, item in enumerate(data):
        where = f"subtitle file {str(path)!r}, cue {n}"
        if not isinstance(item, dict):
            raise SubtitleError(f"{where}: expected an object, got {item!r:.60}")
        try:
            if "timestamp" in item:
                ts = item["timestamp"]
                if not isinstance(ts, (list, tuple)) or len(ts) != 2:
                    raise ValueError(f"'timestamp' must be [start, end], got {ts!r}")
                start = parse_timestamp(ts[0])
                end = None if ts[1] is None else parse_timestamp(ts[1])
            elif "start" in item:
                start = parse_timestamp(item["start"])
                end = None if item.get("end") is None else parse_timestamp(item["end"])
            else:
                raise ValueError("no 'start' or 'timestamp' field")
        except ValueError as exc:
            raise SubtitleError(f"{where}: {exc}; expected {{'start', 'end', 'line'}} or "
                                "{'timestamp': [s, e], 'text'}") from exc
        body = item.get("line", item.get("text"))
        if body is None:
            raise SubtitleError(f"{where}: no 'line' or 'text' field")
        raw.append((start, end, _clean(str(body))))
    raw.sort(key=lambda c: c[0])
    cues = []
    for k, (start, end, body) in enumerate(raw):
        if end is None:   # open-ended: until the next cue starts, else the end of the video
            end = raw[k + 1][0] if k + 1 < len(raw) else (duration if duration else start + 2.0)
        if body:
            cues.append(Cue(start, max(start, end), body))
    return cues


def load_subtitles(path: str | os.PathLike[str], offset_s: float = 0.0,
                   duration: float | None = None) -> list[Cue]:
    """Read a subtitle file into cues sorted by start time.

    Args:
        path: an SRT/VTT file or a LongVideoBench/Whisper JSON file.
        offset_s: seconds subtracted from every timestamp (LongVideoBench's
            ``starting_timestamp_for_subtitles``); cues ending before 0 are dropped.
        duration: the video's length, closing a final open-ended JSON cue.

    Raises:
        SubtitleError: missing, empty or unparsable file (the message names it).
    """
    p = Path(path)
    text = _read_text(p)
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] in "[{":
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SubtitleError(f"subtitle file {str(p)!r} looks like JSON but does not parse: "
                                f"{exc}") from exc
        cues = _parse_json(data, p, duration)
    else:
        cues = _parse_srt(text, p)
    out = []
    seen: set[Cue] = set()
    for c in sorted(cues, key=lambda c: (c.start, c.end)):
        start, end = c.start - offset_s, c.end - offset_s
        if end < 0:
            continue
        cue = Cue(round(max(0.0, start), 3), round(end, 3), c.text)
        if cue not in seen:   # exact duplicates appear in concatenated caption tracks
            seen.add(cue)
            out.append(cue)
    return out


def subtitles_in_window(cues: Iterable[Cue], start: float, end: float) -> list[Cue]:
    """Cues overlapping ``[start, end]`` (a cue touching the window counts)."""
    if start > end:
        start, end = end, start
    return [c for c in cues if c.end >= start and c.start <= end]


def cues_to_text(cues: Sequence[Cue], with_timestamps: bool = False, sep: str = "\n") -> str:
    """Join cue texts in time order, dropping lines repeated from the previous cue (rolling
    auto-captions show each line twice) and joining a cue's lines with spaces."""
    out: list[str] = []
    prev_lines: list[str] = []
    for c in sorted(cues, key=lambda c: (c.start, c.end)):
        lines = [ln for ln in c.text.split("\n") if ln]
        fresh = [ln for ln in lines if ln not in prev_lines]
        prev_lines = lines
        if not fresh:
            continue
        body = " ".join(fresh)
        out.append(f"[{_fmt(c.start)}-{_fmt(c.end)}] {body}" if with_timestamps else body)
    return sep.join(out)


def _fmt(t: float) -> str:
    t = int(round(t))
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
