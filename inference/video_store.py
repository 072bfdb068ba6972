"""Video store: probe, clip cache with a manifest, frame sampling and decoding by seeking.

* ``probe_video`` reads duration, frame rate, frame count and size with PyAV and decodes one
  frame, so a missing, empty, corrupt or audio-only file fails here with a
  ``VideoInputError`` that names the file and says what to do.
* ``VideoStore.split_clips`` cuts a video into fixed-length clips (default 10 s) under
  ``<clip_dir>/<video_id>/`` by *stream copy*: packets are remuxed, never decoded, and each
  clip starts at the first keyframe at or after its nominal boundary, so the clips partition
  the video's frames exactly (every frame is in exactly one clip). When the keyframes are
  too sparse for that (a clip would exceed 1.5x the clip length) the clips are re-encoded
  with libx264 at exact frame boundaries instead. Clip timestamps start at 0; the manifest
  records each clip's start/end in the original video's time.
* ``manifest.json`` records the source's fingerprint, the clip length, the mode and every
  clip with its size. Every call validates it: a missing, empty or truncated clip is
  re-cut alone (same boundaries), a changed source video or a different clip length
  re-splits everything. Clip files and the manifest are written atomically, and a lock file
  serialises concurrent splitters of the same video.
* ``sample_frames`` returns ``Frame`` handles (no pixels) spread uniformly over a video or a
  window; ``load_frames`` decodes them by seeking to the keyframe before each target and
  decoding forward, with a small LRU cache; ``decode_window`` returns a ``[T, H, W, 3]``
  array for model input. Nothing is re-encoded to a temporary file.

Times are seconds from the video stream's first frame.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ModuleArgumentError, VideoInputError
from inference.types import Frame

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_FINGERPRINT_BYTES = 1 << 20


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns about a video file."""

    path: str
    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str = ""
    has_audio: bool = False


@dataclass(frozen=True)
class ClipInfo:
    """One cached clip: ``[start, end)`` in seconds of the original video."""

    index: int
    path: str
    start: float
    end: float
    num_frames: int = 0

    @property
    def duration(self) -> float:
        return self.end - self.start


# ----------------------------------------------------------------------------- probing

def _check_file(path: Path, what: str = "video") -> None:
    if not path.exists():
        raise VideoInputError(f"{what} file {str(path)!r} does not exist; check the path "
                              f"(relative paths resolve from {os.getcwd()!r})")
    if not path.is_file():
        raise VideoInputError(f"{what} file {str(path)!r} is not a regular file; pass the path "
                              "of a video file, not a folder")
    if path.stat().st_size == 0:
        raise VideoInputError(f"{what} file {str(path)!r} is empty (0 bytes); the download or "
                              "copy was probably interrupted: fetch or re-encode it again")


def _open(path: Path) -> Any:
    import av

    try:
        return av.open(str(path))
    except Exception as exc:  # PyAV raises several FFmpegError subclasses and OSError
        raise VideoInputError(
            f"video file {str(path)!r} cannot be read as a media file ({type(exc).__name__}: "
            f"{exc}); it is corrupt or truncated: re-download it, or re-encode it with "
            f"`ffmpeg -i {path.name} -c:v libx264 -pix_fmt yuv420p fixed.mp4`") from exc


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoInputError(
            f"video file {str(path)!r} has no video stream (it holds: {', '.join(kinds)}); "
            "an audio-only file cannot be used as a video: pass the video itself, and give "
            "its audio to ASR separately")
    return container.streams.video[0]


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Duration (s), frame rate, frame count and size of the first video stream of ``path``.

    Raises:
        VideoInputError: the file is missing, empty, corrupt, truncated or has no video.
    """
    p = Path(path)
    _check_file(p)
    container = _open(p)
    try:
        stream = _video_stream(container, p)
        tb = stream.time_base
        start = stream.start_time or 0
        duration = None
        if stream.duration and tb:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / 1_000_000 - float(start * tb if tb else 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        frames = int(stream.frames or 0)
        if duration is None or duration <= 0 or fps <= 0:
            # Containers without an index (raw streams, some MKVs): count packets once.
            pts = [pk.pts for pk in container.demux(stream) if pk.pts is not None]
            container.seek(0)
            if not pts:
                raise VideoInputError(f"video file {str(p)!r} contains no video frames; "
                                      "re-encode or re-download it")
            frames = frames or len(pts)
            span = float((max(pts) - min(pts)) * tb) if tb else 0.0
            if fps <= 0:
                fps = (frames - 1) / span if span > 0 else 1.0
            duration = span + 1.0 / fps
        if frames <= 0:
            frames = max(1, int(round(duration * fps)))
        try:  # a header can be intact while the data is not: decode one frame to be sure
            first = next(container.decode(stream), None)
        except Exception as exc:
            raise VideoInputError(
                f"video file {str(p)!r}: the video stream cannot be decoded ({exc}); the file "
                "is corrupt: re-download it or re-encode it with ffmpeg") from exc
        if first is None:
            raise VideoInputError(f"video file {str(p)!r} contains no decodable video frames; "
                                  "re-encode or re-download it")
        return VideoInfo(path=str(p), duration=round(duration, 6), fps=fps, num_frames=frames,
                         width=int(stream.codec_context.width or first.width),
                         height=int(stream.codec_context.height or first.height),
                         codec=stream.codec_context.name or "",
                         has_audio=bool(container.streams.audio))
    finally:
        container.close()


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Size, mtime and a content hash (size + first and last MiB) of a file."""
    p = Path(path)
    st = p.stat()
    h = hashlib.sha256(str(st.st_size).encode())
    with open(p, "rb") as f:
        h.update(f.read(_FINGERPRINT_BYTES))
        if st.st_size > _FINGERPRINT_BYTES:
            f.seek(max(_FINGERPRINT_BYTES, st.st_size - _FINGERPRINT_BYTES))
            h.update(f.read(_FINGERPRINT_BYTES))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()[:32]}


# ----------------------------------------------------------------------------- clip plans

@dataclass
class _ClipPlan:
    index: int
    start_pts: int
    end_pts: int          # exclusive; for the last clip, past the last frame
    start: float
    end: float
    frames: int
    file: str
    size: int | None = None


def _packet_index(path: Path) -> tuple[list[tuple[int, bool]], Fraction, int, int]:
    """(pts, is_keyframe) of every video packet in presentation order, the time base, the
    first pts and the end pts (last pts + its duration)."""
    import av  # noqa: F401  (imported for its side effect of failing early if missing)

    container = _open(path)
    try:
        stream = _video_stream(container, path)
        packets: list[tuple[int, bool]] = []
        last_dur = 0
        for pk in container.demux(stream):
            pts = pk.pts if pk.pts is not None else pk.dts
            if pts is None or pk.size == 0:
                continue
            packets.append((int(pts), bool(pk.is_keyframe)))
            last_dur = int(pk.duration or 0)
        tb = stream.time_base
    finally:
        container.close()
    if not packets:
        raise VideoInputError(f"video file {str(path)!r} contains no video packets; "
                              "re-encode or re-download it")
    packets.sort()
    if last_dur <= 0:
        gaps = [b[0] - a[0] for a, b in zip(packets, packets[1:]) if b[0] > a[0]]
        last_dur = int(np.median(gaps)) if gaps else 1
    return packets, tb, packets[0][0], packets[-1][0] + last_dur


def _plan_clips(packets: list[tuple[int, bool]], tb: Fraction, origin: int, end_pts: int,
                clip_duration: float, keyframes_only: bool, duration: float) -> list[_ClipPlan]:
    """Boundaries: for each multiple of ``clip_duration``, the first (key)frame at or after
    it (half a frame of tolerance). Consecutive clips share boundaries, so they partition the
    frames."""
    frame_pts = [p for p, _ in packets]
    cand = [p for p, key in packets if key] if keyframes_only else frame_pts
    if not cand or cand[0] != frame_pts[0]:
        cand = [frame_pts[0]] + cand
    step = np.median(np.diff(frame_pts)) if len(frame_pts) > 1 else 1
    tol = int(step // 2)
    bounds = [frame_pts[0]]
    k = 1
    while True:
        target = origin + int(round(k * clip_duration / tb))
        if target >= end_pts - tol:
            break
        nxt = next((c for c in cand if c >= target - tol and c > bounds[-1]), None)
        if nxt is None:
            break
        bounds.append(nxt)
        # Skip targets this boundary already passed (sparse keyframes): clips are never empty.
        k = max(k + 1, int(math.floor(float((nxt - origin) * tb) / clip_duration + 1e-9)) + 1)
    bounds.append(end_pts)
    idx = np.searchsorted(frame_pts, bounds)
    plans = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        end_t = duration if i == len(bounds) - 2 else round(float((b - origin) * tb), 6)
        plans.append(_ClipPlan(index=i, start_pts=a, end_pts=b,
                               start=round(float((a - origin) * tb), 6), end=end_t,
                               frames=int(idx[i + 1] - idx[i]), file=f"clip_{i:05d}.mp4"))
    return plans


# ----------------------------------------------------------------------------- clip writers

def _copy_clips(src: Path, plans: list[_ClipPlan], out_dir: Path) -> None:
    """Remux the packets of consecutive ``plans`` (one read pass, no decoding)."""
    import av

    by_start = {p.start_pts: p for p in plans}
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        inp.seek(plans[0].start_pts, stream=stream, backward=True, any_frame=False)
        out = None
        cur: _ClipPlan | None = None
        ostream = None
        tmp: Path | None = None
        try:
            for pk in inp.demux(stream):
                if pk.size == 0:
                    continue
                pts = pk.pts if pk.pts is not None else pk.dts
                # Decode order: a clip runs from its boundary keyframe up to the next
                # boundary keyframe; a boundary that is not ours ends this run.
                if pk.is_keyframe and pts in by_start:
                    if out is not None:
                        out.close()
                        os.replace(tmp, out_dir / cur.file)
                        out = None
                    cur = by_start[pts]
                    tmp = out_dir / f".{cur.file}.{os.getpid()}.{threading.get_ident()}.tmp"
                    out = av.open(str(tmp), mode="w", format="mp4")
                    ostream = out.add_stream_from_template(stream)
                elif pk.is_keyframe and cur is not None and pts >= cur.end_pts:
                    break
                if out is None:
                    continue   # before the first boundary (the seek landed earlier)
                shift = cur.start_pts
                pk.pts = pts - shift
                if pk.dts is not None:
                    pk.dts -= shift
                pk.stream = ostream
                out.mux(pk)
            if out is not None:
                out.close()
                os.replace(tmp, out_dir / cur.file)
                out = None
        finally:
            if out is not None:
                out.close()
            if tmp is not None and tmp.exists():
                tmp.unlink()


def _reencode_clips(src: Path, plans: list[_ClipPlan], out_dir: Path, fps: float) -> None:
    """Decode the span of consecutive ``plans`` once and encode each clip with libx264 at
    exact frame boundaries (used when keyframes are too sparse to cut by stream copy)."""
    import av

    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
    gop = str(max(1, int(round(2 * fps))))
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        inp.seek(plans[0].start_pts, stream=stream, backward=True, any_frame=False)
        it = iter(plans)
        cur = next(it)
        out = ostream = tmp = None

        def finish() -> None:
            nonlocal out
            if out is not None:
                out.mux(ostream.encode())
                out.close()
                os.replace(tmp, out_dir / cur.file)
                out = None

        try:
            for frame in inp.decode(stream):
                if frame.pts is None or frame.pts < cur.start_pts:
                    continue
                while frame.pts >= cur.end_pts:
                    finish()
                    cur = next(it, None)
                    if cur is None:
                        break
                if cur is None:
                    break
                if out is None:
                    tmp = out_dir / f".{cur.file}.{os.getpid()}.{threading.get_ident()}.tmp"
                    out = av.open(str(tmp), mode="w", format="mp4")
                    ostream = out.add_stream("libx264", rate=rate)
                    ostream.width, ostream.height = frame.width, frame.height
                    ostream.pix_fmt = "yuv420p"
                    ostream.codec_context.time_base = tb
                    ostream.options = {"preset": "veryfast", "crf": "20", "g": gop,
                                       "sc_threshold": "0"}
                f = frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame
                f.pts = frame.pts - cur.start_pts
                f.time_base = tb
                out.mux(ostream.encode(f))
            finish()
        finally:
            if out is not None:
                out.close()
            if tmp is not None and Path(tmp).exists():
                Path(tmp).unlink()


# ----------------------------------------------------------------------------- the store

class VideoStore:
    """Clip cache and frame access for videos on local disk.

    Args:
        clip_dir: root of the clip cache (``<clip_dir>/<video_id>/``).
        clip_duration: nominal clip length in seconds (the paper uses 10).
        workers: parallel clip writers.
        split_mode: ``"auto"`` (stream copy at keyframes, re-encode when keyframes are too
            sparse), ``"copy"`` or ``"reencode"``.
        frame_cache_size: decoded full frames kept in the LRU cache.
    """

    def __init__(self, clip_dir: str | os.PathLike[str], clip_duration: float = 10.0,
                 workers: int = 4, split_mode: str = "auto", frame_cache_size: int = 64) -> None:
        if clip_duration <= 0:
            raise ValueError(f"clip_duration must be positive, got {clip_duration}")
        if split_mode not in ("auto", "copy", "reencode"):
            raise ValueError(f"split_mode {split_mode!r}: expected 'auto', 'copy' or 'reencode'")
        self.clip_dir = Path(clip_dir)
        self.clip_duration = float(clip_duration)
        self.workers = max(1, int(workers))
        self.split_mode = split_mode
        self.frame_cache_size = max(0, int(frame_cache_size))
        self._probe_cache: dict[tuple[str, int, int], VideoInfo] = {}
        self._frame_cache: OrderedDict[tuple[str, float], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        # Statistics, read by tests and benchmarks.
        self.last_split: dict[str, Any] = {}

    # -- identity ---------------------------------------------------------------------

    def probe(self, path: str | os.PathLike[str]) -> VideoInfo:
        """``probe_video`` with a cache keyed by path, size and mtime."""
        p = Path(path)
        _check_file(p)
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._probe_cache.get(key)
        if hit is None:
            hit = probe_video(p)
            with self._lock:
                self._probe_cache[key] = hit
        return hit

    def video_id(self, path: str | os.PathLike[str]) -> str:
        """Stable folder name for ``path``: its sanitised file stem and a hash of its absolute
        path. The content is deliberately left out: a changed source keeps its folder, and
        the manifest's fingerprint reveals it as stale so it is repaired in place."""
        p = Path(path).resolve()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem)[:80] or "video"
        return f"{stem}-{hashlib.sha256(str(p).encode()).hexdigest()[:10]}"

    def fingerprint(self, path: str | os.PathLike[str]) -> str:
        """Content identity of a video (for content-addressed caches)."""
        _check_file(Path(path))
        return file_fingerprint(path)["sha256"]

    def clip_folder(self, path: str | os.PathLike[str]) -> Path:
        return self.clip_dir / self.video_id(path)

    # -- clips ------------------------------------------------------------------------

    def split_clips(self, path: str | os.PathLike[str]) -> list[ClipInfo]:
        """Cut ``path`` into clips (or reuse valid cached ones) and return them in order.

        A second call with nothing changed only reads the manifest and stats the clips. A
        missing or damaged clip is re-cut alone; a changed source is re-split entirely.

        Raises:
            ModuleArgumentError: ``path`` is itself a clip (listed in a manifest): its clips
                would become a new folder beside its video's, so split the source video instead.
        """
        src = Path(path)
        origin = self.clip_origin(src)
        if origin is not None:
            raise ModuleArgumentError(f"{str(src)!r} is a clip of {origin[0]!r} (from {origin[1]:g} s); split "
                                      "the source video, not one of its clips")
        info = self.probe(src)
        folder = self.clip_folder(src)
        folder.mkdir(parents=True, exist_ok=True)
        with _file_lock(folder / ".lock"):
            fp = file_fingerprint(src)
            manifest = self._load_manifest(folder)
            stats = {"video_id": folder.name, "reused": 0, "written": 0, "resplit": False,
                     "reason": ""}
            plans: list[_ClipPlan]
            reason = self._stale_reason(manifest, fp, src)
            if reason:
                stats["resplit"], stats["reason"] = True, reason
                for child in folder.iterdir():
                    if child.name != ".lock":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
                plans, mode = self._plan(src, info)
                todo = list(plans)
                manifest = self._manifest(src, fp, info, mode, plans)
                dirty = True
            else:
                assert manifest is not None
                mode = manifest["mode"]
                plans = [_ClipPlan(**c) for c in manifest["clips"]]
                todo = [c for c in plans if not self._clip_ok(folder, c)]
                dirty = (manifest["fingerprint"] != fp
                         or manifest["clips"] != [dataclasses.asdict(p) for p in plans])
                manifest["fingerprint"] = fp   # same content; mtime may have moved
            # Record the plan first: a crash mid-split leaves a manifest whose missing clips
            # the next call re-cuts, instead of starting over.
            if todo:
                for c in todo:
                    c.size = None
                    (folder / c.file).unlink(missing_ok=True)   # damaged: never adopt it
                self._write_manifest(folder, manifest, plans)
                self._write(src, todo, folder, mode, info.fps)
                for c in todo:
                    c.size = (folder / c.file).stat().st_size
                self._write_manifest(folder, manifest, plans)
            elif dirty:
                self._write_manifest(folder, manifest, plans)
            stats["written"] = len(todo)
            stats["reused"] = len(plans) - len(todo)
            stats["mode"] = mode
            self.last_split = stats
        return [ClipInfo(index=c.index, path=str(folder / c.file), start=c.start, end=c.end,
                         num_frames=c.frames) for c in plans]

    def _stale_reason(self, manifest: dict[str, Any] | None, fp: dict[str, Any], src: Path) -> str:
        if manifest is None:
            return "no valid manifest"
        if manifest.get("version") != MANIFEST_VERSION:
            return "manifest version changed"
        if abs(float(manifest.get("clip_duration", -1)) - self.clip_duration) > 1e-9:
            return "clip duration changed"
        if self.split_mode != "auto" and manifest.get("mode") != self.split_mode:
            return "split mode changed"
        old = manifest.get("fingerprint") or {}
        if old.get("size") != fp["size"] or old.get("sha256") != fp["sha256"]:
            return "source video changed"
        if not manifest.get("clips"):
            return "manifest lists no clips"
        return ""

    @staticmethod
    def _clip_ok(folder: Path, clip: _ClipPlan) -> bool:
        """Whether a clip file is present and whole; adopts (and records the size of) a clip
        written by a run that stopped before updating the manifest: clip files are renamed
        into place only once complete."""
        try:
            size = (folder / clip.file).stat().st_size
        except OSError:
            return False
        if clip.size is None and size > 0:
            clip.size = size
            return True
        return size == clip.size and size > 0

    def _plan(self, src: Path, info: VideoInfo) -> tuple[list[_ClipPlan], str]:
        packets, tb, origin, end_pts = _packet_index(src)
        duration = info.duration
        if self.split_mode in ("auto", "copy"):
            plans = _plan_clips(packets, tb, origin, end_pts, self.clip_duration, True, duration)
            longest = max(p.end - p.start for p in plans)
            limit = 1.5 * self.clip_duration + 1.0 / max(info.fps, 1e-6)
            if self.split_mode == "copy" or longest <= limit or len(plans) == 1 and duration <= limit:
                return plans, "copy"
        plans = _plan_clips(packets, tb, origin, end_pts, self.clip_duration, False, duration)
        return plans, "reencode"

    def _write(self, src: Path, todo: list[_ClipPlan], folder: Path, mode: str, fps: float) -> None:
        # Runs of consecutive clips are written in one pass; runs are spread over workers.
        runs: list[list[_ClipPlan]] = []
        for c in todo:
            if runs and runs[-1][-1].index == c.index - 1:
                runs[-1].append(c)
            else:
                runs.append([c])
        chunks: list[list[_ClipPlan]] = []
        per = max(1, math.ceil(len(todo) / self.workers))
        for run in runs:
            chunks += [run[i:i + per] for i in range(0, len(run), per)]
        if mode == "copy":
            def job(ch: list[_ClipPlan]) -> None:
                _copy_clips(src, ch, folder)
        else:
            def job(ch: list[_ClipPlan]) -> None:
                _reencode_clips(src, ch, folder, fps)
        if len(chunks) == 1 or self.workers == 1:
            for ch in chunks:
                job(ch)
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(chunks))) as pool:
                list(pool.map(job, chunks))
        missing = [c.file for c in todo if not (folder / c.file).is_file()]
        if missing:
            raise VideoInputError(f"video file {str(src)!r}: clips {missing[:5]} were not "
                                  "written; the file may be truncated: re-encode it")

    def _manifest(self, src: Path, fp: dict[str, Any], info: VideoInfo, mode: str,
                  plans: list[_ClipPlan]) -> dict[str, Any]:
        return {"version": MANIFEST_VERSION, "source": str(src.resolve()), "fingerprint": fp,
                "clip_duration": self.clip_duration, "mode": mode,
                "video": dataclasses.asdict(info), "clips": []}

    @staticmethod
    def _load_manifest(folder: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((folder / MANIFEST_NAME).read_text())
            [_ClipPlan(**c) for c in data["clips"]]  # noqa: B018  (shape check)
            return data
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _write_manifest(folder: Path, manifest: dict[str, Any], plans: list[_ClipPlan]) -> None:
        manifest["clips"] = [dataclasses.asdict(p) for p in plans]
        tmp = folder / f".{MANIFEST_NAME}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, folder / MANIFEST_NAME)

    def clip_origin(self, path: str | os.PathLike[str]) -> tuple[str, float] | None:
        """``(source video, clip start)`` when ``path`` is a clip listed in the manifest of
        its folder (written by any store), else ``None``."""
        p = Path(path)
        if not (p.parent / MANIFEST_NAME).is_file():
            return None
        manifest = self._load_manifest(p.parent)
        if manifest is None:
            return None
        for c in manifest["clips"]:
            if c["file"] == p.name:
                return manifest["source"], float(c["start"])
        return None

    # -- sampling ---------------------------------------------------------------------

    def sample_frames(self, path: str | os.PathLike[str], num_frames: int,
                      start: float | None = None, end: float | None = None) -> list[Frame]:
        """Up to ``num_frames`` distinct frames spread uniformly over ``[start, end)``.

        Frame ``k`` is the frame shown at the centre of the ``k``-th of ``num_frames`` equal
        segments; a window with fewer frames than asked returns all of them. ``start`` and
        ``end`` are seconds in ``path`` (a clip's own time for a clip); a window reaching
        past either end is clipped to the video.

        Raises:
            ModuleArgumentError: ``num_frames`` < 1, ``start`` > ``end``, or a window that
                lies entirely outside the video.
        """
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) \
                or num_frames < 1:
            raise ModuleArgumentError(f"num_frames must be a positive integer, got {num_frames!r}")
        info = self.probe(path)
        dur = info.duration
        s = 0.0 if start is None else float(start)
        e = dur if end is None else float(end)
        if not (math.isfinite(s) and math.isfinite(e)):
            raise ModuleArgumentError(f"window ({start!r}, {end!r}) is not finite; the valid "
                                      f"range of {Path(path).name} is [0, {dur:.3f}] s")
        if s > e:
            raise ModuleArgumentError(f"window start {s:.3f}s is after its end {e:.3f}s; "
                                      f"pass start <= end within [0, {dur:.3f}] s")
        if e < 0 or s >= dur:
            raise ModuleArgumentError(
                f"window [{s:.3f}, {e:.3f}] s lies outside the video {Path(path).name}, whose "
                f"valid range is [0, {dur:.3f}] s")
        s, e = max(0.0, s), min(dur, e)
        fps, n_total = info.fps, info.num_frames
        first = min(n_total - 1, int(math.ceil(s * fps - 1e-6)))
        last = min(n_total - 1, int(math.ceil(e * fps - 1e-6)) - 1)
        if last < first:   # a window shorter than a frame: the frame on screen at ``start``
            first = last = min(n_total - 1, int(math.floor(s * fps + 1e-6)))
        count = last - first + 1
        if num_frames >= count:
            indices = list(range(first, last + 1))
        else:
            indices = sorted({first + int((k + 0.5) * count / num_frames) for k in range(num_frames)})
        origin = self.clip_origin(path)
        offset = origin[1] if origin else 0.0
        source = str(path)
        return [Frame(source=source, time=round(i / fps, 6), video_time=round(offset + i / fps, 6))
                for i in indices]

    def load_frames(self, frames: Sequence[Frame]) -> list[np.ndarray]:
        """Decode frames to ``HxWx3`` uint8 RGB arrays (crop boxes applied), in input order.

        Frames are grouped by source; each source is opened once and decoded by seeking to
        the keyframe before each target and decoding forward (targets in time order)."""
        if not frames:
            raise ModuleArgumentError("load_frames got an empty frame list; sample frames first "
                                      "(e.g. extract_frames or trim_frames)")
        full: dict[tuple[str, float], np.ndarray] = {}
        by_source: dict[str, list[float]] = {}
        for fr in frames:
            if not isinstance(fr, Frame):
                raise ModuleArgumentError(f"expected Frame handles, got {type(fr).__name__}")
            key = (fr.source, round(fr.time, 6))
            cached = self._cache_get(key)
            if cached is not None:
                full[key] = cached
            else:
                by_source.setdefault(fr.source, []).append(key[1])
        for source, times in by_source.items():
            for t, arr in zip(sorted(set(times)), self._decode_times(Path(source), sorted(set(times)))):
                full[(source, t)] = arr
                self._cache_put((source, t), arr)
        out = []
        for fr in frames:
            arr = full[(fr.source, round(fr.time, 6))]
            if fr.box is not None:
                arr = _crop(arr, fr.box, fr.source)
            out.append(arr.copy())
        return out

    def decode_window(self, path: str | os.PathLike[str], num_frames: int,
                      start: float | None = None, end: float | None = None
                      ) -> tuple[np.ndarray, list[float]]:
        """``[T, H, W, 3]`` uint8 frames sampled uniformly from a window, and their times in
        the original video (model input)."""
        frames = self.sample_frames(path, num_frames, start, end)
        return np.stack(self.load_frames(frames)), [f.video_time for f in frames]

    # -- decoding ---------------------------------------------------------------------

    def _decode_times(self, path: Path, times: list[float]) -> list[np.ndarray]:
        _check_file(path)
        container = _open(path)
        try:
            stream = _video_stream(container, path)
            stream.thread_type = "SLICE"   # frame threading adds latency to every seek
            tb = stream.time_base
            origin = stream.start_time or 0
            # Times are rounded to microseconds: a millisecond of slack absorbs that, while the
            # frame on screen at t stays the last one presented at or before t.
            eps = max(1, int(round(0.001 / tb)))
            # Seeking costs at most a GOP; decoding forward costs the gap. Seek on big gaps.
            seek_gap = int(round(2.0 / tb))
            it: Iterator[Any] | None = None
            prev = nxt = None
            out: list[np.ndarray] = []
            for t in times:
                target = origin + int(round(t / tb))
                pos = prev.pts if prev is not None else None
                if it is None or pos is None or target < pos or target - pos > seek_gap:
                    container.seek(max(origin, target), stream=stream, backward=True,
                                   any_frame=False)
                    it = container.decode(stream)
                    prev = nxt = None
                while True:
                    if nxt is None:
                        try:
                            nxt = next(it, None)
                        except Exception as exc:
                            raise VideoInputError(
                                f"video file {str(path)!r}: decoding failed near {t:.3f}s "
                                f"({exc}); the file is corrupt: re-encode it") from exc
                        if nxt is None:
                            break
                        if nxt.pts is None:
                            nxt = None
                            continue
                    if nxt.pts <= target + eps:
                        prev, nxt = nxt, None
                        continue
                    break
                chosen = prev if prev is not None else nxt
                if chosen is None:
                    raise ModuleArgumentError(f"no frame at {t:.3f}s in {str(path)!r}; "
                                              "sample frames with sample_frames()")
                out.append(chosen.to_ndarray(format="rgb24"))
            return out
        finally:
            container.close()

    def _cache_get(self, key: tuple[str, float]) -> np.ndarray | None:
        with self._lock:
            arr = self._frame_cache.get(key)
            if arr is not None:
                self._frame_cache.move_to_end(key)
            return arr

    def _cache_put(self, key: tuple[str, float], arr: np.ndarray) -> None:
        if self.frame_cache_size <= 0:
            return
        with self._lock:
            self._frame_cache[key] = arr
            self._frame_cache.move_to_end(key)
            while len(self._frame_cache) > self.frame_cache_size:
                self._frame_cache.popitem(last=False)


def _crop(arr: np.ndarray, box: Sequence[int], source: str) -> np.ndarray:
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = max(0, min(w, x0)), max(0, min(w, x1))
    y0, y1 = max(0, min(h, y0)), max(0, min(h, y1))
    if x1 <= x0 or y1 <= y0:
        raise ModuleArgumentError(f"crop box {tuple(box)} is empty inside the {w}x{h} frame of "
                                  f"{source!r}; pass (x0, y0, x1, y1) with x0 < x1, y0 < y1")
    return arr[y0:y1, x0:x1]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
