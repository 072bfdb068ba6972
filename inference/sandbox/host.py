"""The trusted side of the sandbox: :class:`ProgramExecutor` (docs/sandbox.md).

The host owns the module functions (and through them the loaded models) and the call cache.
It runs each program in a reusable worker process (:mod:`inference.sandbox.worker`), serves the
worker's module-call requests after checking them, and turns whatever happens (an answer, an
exception, a policy violation, a kill) into an :class:`~inference.types.ExecutionRecord`.

Per execution the host keeps a handle table: frames go to the worker as numbered handles and
come back as numbers that must be in the table; a frame parameter accepts nothing else. Every
string at any depth of any argument that names a file (every string of a path parameter, and
any other string spelled as a path that resolves to an existing file) must be the execution's
video or lie under one of its ``allowed_roots`` (the clip directory), by ``realpath``. Argument
sizes, frame counts and the host seconds spent in module calls are bounded. The confidence a
program returns is traced to the answer module that produced it (or to the program). The
worker is killed on a wall-clock timeout, on any protocol violation, and after a memory error;
a fresh one is started on demand.
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference.budget import call_budget
from inference.call_cache import CallCache, UncacheableValue
from inference.confidence import extract_letter
from inference.errors import ModuleArgumentError, ModuleBudgetExceeded, VideoInputError
from inference.programs import classify_tree
from inference.sandbox.policy import SAFE_BUILTIN_NAMES, PolicyError, check_tree, parse_program
from inference.sandbox.protocol import (
    FRAME_TAG,
    Channel,
    ChannelClosed,
    ChannelTimeout,
    CodecLimits,
    ProtocolError,
    decode_value,
    encode_value,
)
from inference.scoring import normalise_letter
from inference.types import OPTION_LETTERS, AnswerResult, ExecutionRecord, Frame, ModuleCall

__all__ = ["ProgramExecutor", "SandboxLimits", "SandboxStartupError", "InvalidResult",
           "coerce_answer", "PATH_PARAMETERS", "FRAME_PARAMETERS", "ANSWER_MODULES", "PROGRAM_FAULTS",
           "is_host_failure", "is_program_fault"]

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
         "from inference.sandbox.worker import main; main()")

#: Parameter names (and dict keys, at any depth) whose string values are file paths: every
#: such string must be the execution's video or lie under its allowed roots. Any other string
#: spelled as a path (a separator, ``~`` or ``file:``) that resolves to an existing file is
#: checked the same way.
PATH_PARAMETERS = frozenset({"video", "video_path", "clip", "clip_path", "clips", "clip_paths",
                             "path", "paths", "source", "file", "videos"})
#: Parameter names whose values are frames: only frames the host issued in this execution (as
#: handles) are accepted, alone or in a list; a dict, a string or a number is refused.
FRAME_PARAMETERS = frozenset({"frame", "frames"})
#: Modules whose results carry a model confidence (paper Eq. 2); a returned confidence equal to
#: one of theirs is ``confidence_source == "module:<name>"``.
ANSWER_MODULES = ("query_native", "query_mc", "query_yn")
_URL_PREFIXES = ("file://", "file:")


_KILL_GRACE_S = 1.0


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for every program run by one executor.

    Attributes:
        cpu_time_s: CPU seconds one program may use in its worker (kernel-enforced, SIGXCPU;
            one-second granularity).
        wall_time_s: wall-clock seconds the worker may compute, excluding time the host spends
            serving module calls; on expiry the worker is killed.
        total_time_s: wall-clock seconds for the whole execution including module calls
            (checked between messages). Running out is a host error when module calls took at
            least as long as the program's own compute (a slow backend), else the program's fault.
        module_time_s: budget of host seconds one execution may spend in module calls (cache
            hits and once-per-video preparation such as clip splitting are free). Checked before
            each call and enforced during VLM calls (both backends stop at the deadline); a call
            that overruns it fails. Using it up is the program's fault
            (``ModuleTimeLimitExceeded``), except when a single call that started with more than
            half of it left used it all (a backend too slow for the budget: a host error).
        memory_bytes: address-space limit of a worker (RLIMIT_AS).
        max_stdout_chars: characters of ``print`` output kept; printing more is a violation.
        max_module_calls: module calls per program.
        max_code_chars: program source length.
        max_message_bytes: largest single message on the wire.
        max_argument_chars: longest string in a module call's arguments.
        max_argument_items: most list/dict elements in a module call's arguments (all levels).
        count_limits: upper bounds of count parameters (frames, clips, words) by name, at values
            real programs use (``word_number`` 1000: the paper's programs ask for 300).
        max_path_chars: longest string accepted in a path parameter (PATH_MAX is 4096).
        max_error_chars: longest error message / traceback kept in the record.
        max_result_chars: longest JSON form of the value a program returns (an answer and its
            metadata; a program's bulk data would bloat every record and log that keeps it).
        recursion_limit: Python recursion limit in the worker.
        drop_privileges: a worker started as root switches to ``unprivileged_id`` (nobody).
        unprivileged_id: uid/gid for ``drop_privileges``.
        max_programs_per_worker: a worker is replaced after this many programs.
        startup_timeout_s: how long a new worker may take to report ready.
    """

    cpu_time_s: float = 30.0
    wall_time_s: float = 60.0
    total_time_s: float = 1800.0
    module_time_s: float = 120.0
    memory_bytes: int = 1 << 30
    max_stdout_chars: int = 20_000
    max_module_calls: int = 256
    max_code_chars: int = 64_000
    max_message_bytes: int = 16 << 20
    max_argument_chars: int = 20_000
    max_argument_items: int = 10_000
    count_limits: Mapping[str, int] = field(default_factory=lambda: {
        "num_frames": 256, "top_k": 64, "k": 64, "word_number": 1_000, "max_frames": 256})
    max_path_chars: int = 4_096
    max_error_chars: int = 4_000
    max_result_chars: int = 256_000
    recursion_limit: int = 1_000
    drop_privileges: bool = True
    unprivileged_id: int = 65534
    max_programs_per_worker: int = 500
    startup_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("cpu_time_s", "wall_time_s", "total_time_s", "module_time_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {getattr(self, name)!r}")
        if 0 < self.memory_bytes < (64 << 20):
            raise ValueError(f"SandboxLimits.memory_bytes={self.memory_bytes} is too small for a "
                             "Python worker; use at least 64 MiB (or 0 for no limit)")

    @property
    def codec(self) -> CodecLimits:
        return CodecLimits(max_string_chars=max(self.max_argument_chars, 1_000_000))


class SandboxStartupError(RuntimeError):
    """A worker process could not be started (an environment problem, not a program error)."""


class InvalidResult(ValueError):
    """A program's return value cannot be read as an answer."""


#: Exception classes a module raises when the *program* made a mistake (bad arguments, an
#: unknown video, a window outside the video, a wrong-typed value): the program is at fault and
#: a bug fix can help. Any other exception from a module (OSError incl. ConnectionError and
#: TimeoutError, MemoryError, RuntimeError such as a CUDA out-of-memory, an API client's
#: errors, ...) is a host failure: ``ExecutionRecord.host_error`` is set (docs/sandbox.md).
PROGRAM_FAULTS: tuple[type[BaseException], ...] = (
    ModuleArgumentError, VideoInputError, ValueError, TypeError, LookupError, AttributeError,
    ArithmeticError)


def is_program_fault(exc: BaseException) -> bool:
    """Whether a module's exception is the program's mistake (see :data:`PROGRAM_FAULTS`), e.g.
    for a caller that calls a module directly (the runner's ``query_native`` fallback)."""
    return isinstance(exc, PROGRAM_FAULTS)


def is_host_failure(exc: BaseException) -> bool:
    """Whether a module's exception says nothing about the program (see :data:`PROGRAM_FAULTS`)."""
    return not is_program_fault(exc)


# -- results ----------------------------------------------------------------------------------


def _jsonable(value: Any, nulled: list[int] | None = None) -> Any:
    """Strict-JSON data: frames as dicts, tuples as lists, keys as strings, and NaN/Infinity
    (which strict JSON readers refuse) as ``None``, counted in ``nulled``."""
    if isinstance(value, Frame):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v, nulled) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, nulled) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        if nulled is not None:
            nulled[0] += 1
        return None
    return value


# An upper-case letter standing alone (not part of a word or a number). "A"/"I" followed by a
# lower-case word are the article/pronoun ("B. A man walks"), not options.
_LONE_LETTER = re.compile(r"(?<![A-Za-z0-9])([A-Z])(?![A-Za-z0-9])(?!\s++[a-z])")


def _named_letters(answer: str, letters: str) -> list[str]:
    """The option letters ``answer`` names as standalone letters (``"A, B"`` names A and B)."""
    return [m.group(1) for m in _LONE_LETTER.finditer(answer) if m.group(1) in letters]


def coerce_answer(value: Any, choices: Sequence[str]) -> AnswerResult:
    """Read a program's return value as an :class:`AnswerResult`.

    Accepted forms:

    * a dict with ``answer`` and ``confidence`` (what ``query_*`` and ``make_result`` return);
      ``raw_output`` and ``metadata`` are kept, other keys are moved into ``metadata``;
    * an ``(answer, confidence)`` pair (the paper's Listing 1 convention);
    * a bare answer string.

    The answer is read with the project's shared rules, in this order: the exact text of a
    choice (case-insensitive, stripped) gives that choice's letter; else a bare letter in any
    usual spelling (``"B"``, ``"b"``, ``"(B)"``, ``"B."``; :func:`inference.scoring.normalise_letter`);
    else an upper-case letter as a model writes it (``"B. beans"``, ``"Answer: B"``;
    :func:`inference.confidence.extract_letter`). It must name exactly one of the options: free
    text such as ``"a bowl of corn"`` that is not a choice is rejected, never read as ``"A"``, and
    so is a text naming several option letters (``"A B C D"``, ``"B, A"``, ``"Answer: B or C"``),
    never read as its first. The
    confidence must be a number in [0, 1]; if it is missing (bare string, dict without ``confidence``) it is 0.0 and
    ``metadata["confidence_missing"]`` is set, so a runner treats the answer as unconfident.
    Non-finite numbers in the metadata become ``None`` (``metadata["non_finite_nulled"]`` counts
    them), so the record stays strict JSON. Raises :class:`InvalidResult` otherwise.
    """
    return _coerce(value, choices)[0]


def _coerce(value: Any, choices: Sequence[str]) -> tuple[AnswerResult, bool]:
    """:func:`coerce_answer`, and whether the value stated a confidence at all."""
    num_choices = len(choices) if choices else len(OPTION_LETTERS)
    letters = OPTION_LETTERS[:num_choices]
    metadata: dict[str, Any] = {}
    raw: Any = None
    if isinstance(value, dict):
        if "answer" not in value:
            raise InvalidResult("execute_command returned a dict without an 'answer' key (keys: "
                                f"{sorted(map(str, value))[:10]}); return the result of query_mc, "
                                "query_native or make_result(answer, confidence)")
        answer, confidence, raw = value["answer"], value.get("confidence"), value.get("raw_output")
        meta = value.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise InvalidResult(f"'metadata' must be a dict, got {type(meta).__name__}")
        metadata.update(meta or {})
        metadata.update({k: v for k, v in value.items()
                         if k not in ("answer", "confidence", "raw_output", "metadata")})
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        answer, confidence = value
    elif isinstance(value, str):
        answer, confidence = value, None
    else:
        raise InvalidResult(f"execute_command returned {type(value).__name__}; expected a dict "
                            "with 'answer' and 'confidence' (e.g. the result of query_mc or "
                            "make_result), an (answer, confidence) pair or an option letter")
    if not isinstance(answer, str):
        raise InvalidResult(f"the answer must be a string (an option letter), got {type(answer).__name__}")
    by_text: dict[str, str] = {}
    for i, choice in enumerate(choices[: len(OPTION_LETTERS)]):
        by_text.setdefault(str(choice).strip().lower(), OPTION_LETTERS[i])
    letter = by_text.get(answer.strip().lower())
    if letter is None:
        letter = normalise_letter(answer, num_choices) or extract_letter(answer, num_choices)
        others = sorted(set(_named_letters(answer, letters)) - {letter}) if letter is not None else []
        if others:
            raise InvalidResult(f"the answer {answer[:80]!r} names more than one option ({letter}, "
                                f"{', '.join(others)}); return exactly one option letter, e.g. "
                                "make_result('B', confidence)")
    if letter is None:
        raise InvalidResult(f"the answer {answer[:80]!r} is not one of the option letters {', '.join(letters)} "
                            "(or the exact text of a choice); return the letter, e.g. "
                            "make_result('B', confidence)")
    stated = confidence is not None
    if confidence is None:
        confidence, metadata["confidence_missing"] = 0.0, True
    elif isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise InvalidResult(f"the confidence must be a number in [0, 1], got {type(confidence).__name__}")
    elif not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise InvalidResult(f"the confidence must be a number in [0, 1], got {confidence!r}")
    nulled = [0]
    clean = _jsonable(metadata, nulled)
    if nulled[0]:
        clean["non_finite_nulled"] = nulled[0]
    return AnswerResult(answer=letter, confidence=float(confidence),
                        raw_output=str(raw) if raw is not None else answer, metadata=clean), stated


# -- workers ----------------------------------------------------------------------------------
class _Worker:
    """One worker process and its channel."""

    def __init__(self, config: dict[str, Any], startup_timeout_s: float):
        argv = [sys.executable, "-I", "-B", "-c", _BOOT, _PROJECT_ROOT, json.dumps(config)]
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, close_fds=True,
                                         start_new_session=True, cwd=config["cwd"],
                                         env={"PATH": os.defpath, "LC_ALL": "C.UTF-8"})
        except OSError as exc:
            raise SandboxStartupError(f"could not start a sandbox worker with {sys.executable}: {exc}") from exc
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.channel = Channel(self.proc.stdout.fileno(), self.proc.stdin.fileno(),
                               max_message_bytes=int(config["max_message_bytes"]))
        self.programs = 0
        try:
            hello = self.channel.recv(time.monotonic() + startup_timeout_s)
        except ProtocolError as exc:
            self.kill()
            raise SandboxStartupError(
                f"sandbox worker did not start (exit status {self.proc.returncode}): {exc}. Is "
                "SandboxLimits.memory_bytes large enough for this Python?") from None
        if hello.get("op") != "ready":
            self.kill()
            raise SandboxStartupError(f"sandbox worker sent {hello.get('op')!r} instead of 'ready'")
        self.pid = int(hello.get("pid", self.proc.pid))
        self.uid = hello.get("uid")  # the uid the worker runs programs as (after dropping root)

    def kill(self) -> int | None:
        """Kill the worker's process group and reap it; returns its exit status."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.reap()

    def reap(self, timeout: float = 5.0) -> int | None:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        return rc


class _WorkerPool:
    """At most ``size`` workers; idle ones are reused most-recent first."""

    def __init__(self, size: int, config: dict[str, Any], startup_timeout_s: float):
        self.size = size
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self.closed = False
        self.spawned = 0

    def _spawn(self) -> _Worker:
        worker = _Worker(self.config, self.startup_timeout_s)
        with self._lock:
            self.spawned += 1
        return worker

    def acquire(self) -> _Worker:
        if self.closed:
            raise RuntimeError("the ProgramExecutor is closed")
        self._slots.acquire()
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is not None:
            return worker
        try:
            return self._spawn()
        except BaseException:
            self._slots.release()
            raise

    def release(self, worker: _Worker, reusable: bool) -> None:
        keep = reusable and not self.closed and worker.proc.poll() is None
        if keep:
            with self._lock:
                self._idle.append(worker)
        else:
            worker.kill()
        self._slots.release()

    def warm(self) -> None:
        workers = [self.acquire() for _ in range(self.size)]
        for worker in workers:
            self.release(worker, True)

    def close(self) -> None:
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            with contextlib.suppress(ProtocolError):
                worker.channel.send({"op": "exit"}, time.monotonic() + 1.0)
            worker.kill()


def _cleanup(pool: _WorkerPool, cwd: str) -> None:
    pool.close()
    shutil.rmtree(cwd, ignore_errors=True)


# -- one execution ----------------------------------------------------------------------------
class _Refused(Exception):
    """A module call the host refuses; becomes a sandbox violation in the program."""


def _summary(value: Any, limit: int = 60) -> str:
    if isinstance(value, Frame):
        return f"<frame t={value.video_time:.1f}>"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Frame) for v in value):
        return f"[{len(value)} frames]"
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, str) and os.sep in value and not any(c.isspace() for c in value):
        return "'..." + text[-(limit - 4):]  # a path: the file name is the informative end
    return text[: limit - 3] + "..."


class _Execution:
    """State of one program run: handle table, path policy, module-call log, module budget."""

    def __init__(self, executor: ProgramExecutor, video: str, allowed_roots: Sequence[str],
                 cache_identity: str = ""):
        self.executor = executor
        self.limits = executor.limits
        self.video = video
        self.video_real = os.path.realpath(video)
        self.roots = [os.path.realpath(r) for r in allowed_roots]
        self.cache_identity = cache_identity
        self.frames: list[Frame] = []
        self.frame_ids: dict[Frame, int] = {}
        self.calls: list[ModuleCall] = []
        self.hits = 0
        self.misses = 0
        # Wall-clock seconds the host spent serving module calls (decides whose fault an
        # exceeded total-time limit is).
        self.module_time_s = 0.0
        # Seconds charged to the module-time budget (computing calls, preparation excluded).
        self.charged_s = 0.0
        # The first failure outside the program (a module backend's infrastructure error, a
        # module returning something the sandbox cannot pass on, a lost worker); copied into
        # ExecutionRecord.host_error whether or not the program caught the exception.
        self.host_error: str | None = None
        # Confidences answer modules returned in this execution -> the first module's name.
        self.module_confidences: dict[float, str] = {}
        # The first call the host refused as a violation, (kind, message): the program fails with
        # it even if the worker reports success (a violation the worker failed to remember, e.g.
        # raised at the recursion limit, where recording it raised RecursionError instead).
        self.violation: tuple[str, str] | None = None
        self._allowed: dict[str, bool] = {}  # path text -> allowed (realpath is not free)

    def note_host_error(self, message: str) -> None:
        if self.host_error is None:
            self.host_error = message[: self.limits.max_error_chars]

    # handles
    def _frame_out(self, value: Any) -> Any:
        if isinstance(value, Frame):
            handle = self.frame_ids.get(value)
            if handle is None:
                handle = self.frame_ids[value] = len(self.frames)
                self.frames.append(value)
            return {FRAME_TAG: handle, "source": value.source, "time": value.time,
                    "video_time": value.video_time, "box": list(value.box) if value.box else None}
        if isinstance(value, AnswerResult):
            return encode_value(value.to_dict(), limits=self.limits.codec, extension=self._frame_out)
        item = getattr(value, "item", None)
        if type(value).__module__ == "numpy" and callable(item):
            return encode_value(item(), limits=self.limits.codec)
        return NotImplemented

    def _frame_in(self, tag: dict[str, Any]) -> Frame:
        handle = tag.get(FRAME_TAG)
        if set(tag) != {FRAME_TAG} or type(handle) is not int or not 0 <= handle < len(self.frames):
            raise ProtocolError(f"unknown frame handle {str(handle)[:40]}; frames can only be passed "
                                "as received from modules in this execution")
        return self.frames[handle]

    def decode(self, data: Any) -> Any:
        return decode_value(data, limits=self.limits.codec, extensions={FRAME_TAG: self._frame_in})

    # argument policy
    def _path_allowed(self, path: str) -> bool:
        """Whether ``path`` (however spelled: relative to the host's working directory, with
        ``..``, through symlinks, ``~``, ``file:``) is the video or a file under an allowed root."""
        known = self._allowed.get(path)
        if known is not None:
            return known
        allowed = False
        if len(path) <= self.limits.max_path_chars and "\x00" not in path:
            candidates = [path]
            lowered = path.lower()
            for prefix in _URL_PREFIXES:  # ffmpeg opens file: URLs; what they name must pass too
                if lowered.startswith(prefix):
                    candidates.append(path[len(prefix):])
                    break
            try:
                allowed = all(self._real_allowed(os.path.realpath(os.path.expanduser(c))) for c in candidates)
            except (OSError, ValueError):
                allowed = False  # a path that cannot even be resolved is no file of this execution
        if len(self._allowed) < 4096:
            self._allowed[path] = allowed
        return allowed

    def _real_allowed(self, real: str) -> bool:
        if real == self.video_real:
            return True
        return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots)

    def _refuse_path(self, module: str, param: str, value: str) -> _Refused:
        return _Refused(f"{module}(): {param}={value[:200]!r} is not the current video or a file "
                        "under its clip directory; pass `video` or a clip path returned by a module")

    def _may_name_a_file(self, value: str) -> bool:
        """Whether a string of a non-path parameter could make a module open a file: it is
        spelled as a path (a separator, ``~``, ``file:``) and names something that exists.
        Ordinary text ("man/woman", "1/2 of the time") names nothing and passes unchanged."""
        is_url = value[:5].lower() == "file:"
        if os.sep not in value and not is_url and not value.startswith("~"):
            return False
        try:
            # realpath folds "//" runs and "..", so a padded or traversing spelling of a real
            # file is found (lexists is False for names the OS refuses as too long).
            return os.path.lexists(os.path.realpath(os.path.expanduser(value[5:] if is_url else value)))
        except (OSError, ValueError):
            return True

    def check_arguments(self, module: str, arguments: Mapping[str, Any]) -> str | None:
        """Refuse (``_Refused``) arguments that name files outside the execution or exceed the
        size limits. Returns a program-fault message (a frame parameter given something that is
        not a frame of this execution), else ``None``."""
        items = [0]
        lim = self.limits

        def walk(value: Any, param: str, strict: bool) -> None:
            items[0] += 1
            if items[0] > lim.max_argument_items:
                raise _Refused(f"{module}(): arguments have more than {lim.max_argument_items} elements")
            if isinstance(value, str):
                if len(value) > lim.max_argument_chars:
                    raise _Refused(f"{module}(): {param} is a string of {len(value)} characters; the "
                                   f"limit is {lim.max_argument_chars}")
                if (strict or self._may_name_a_file(value)) and not self._path_allowed(value):
                    raise self._refuse_path(module, param, value)
            elif isinstance(value, Frame):
                if not self._path_allowed(value.source):
                    # Issued by the host (a module or the cache), so not the program's doing.
                    self.note_host_error(f"{module}(): a frame of this execution names a file outside it "
                                         f"({value.source[:200]!r}); the call cache may be shared with "
                                         "another clip folder")
                    raise self._refuse_path(module, param, value.source)
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(k, param, strict)
                    walk(v, param, strict or (isinstance(k, str) and k in PATH_PARAMETERS))
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v, param, strict)

        fault = None
        for param, value in arguments.items():
            walk(value, param, param in PATH_PARAMETERS)
            cap = lim.count_limits.get(param)
            if cap is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
                raise _Refused(f"{module}(): {param}={value!r} exceeds the limit of {cap}")
            if fault is None and param in FRAME_PARAMETERS and value is not None:
                fault = _frame_argument_fault(module, param, value)
        return fault

    # requests
    def handle_call(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Serve one ``call`` request; never raises for anything the worker sent."""
        reply = self._serve(message)
        if reply.get("violation") and self.violation is None:
            self.violation = (str(reply.get("kind") or "SandboxViolation"), str(reply.get("message", "")))
        return reply

    def _serve(self, message: Mapping[str, Any]) -> dict[str, Any]:
        call_id = message.get("id")
        name = message.get("name")
        start = time.perf_counter()
        reply: dict[str, Any] = {"op": "reply", "id": call_id}
        if type(name) is not str or name not in self.executor.modules:
            return {**reply, "ok": False, "violation": True,
                    "message": f"unknown module {str(name)[:60]!r}"}
        if len(self.calls) >= self.limits.max_module_calls:
            return {**reply, "ok": False, "violation": True,
                    "message": f"more than {self.limits.max_module_calls} module calls"}
        record = ModuleCall(name=name, args_summary="", duration_s=0.0)
        self.calls.append(record)
        try:
            args, kwargs = self.decode(message.get("args")), self.decode(message.get("kwargs"))
            if type(args) is not list or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
                raise ProtocolError("arguments must be a list and keyword arguments a dict")
        except ProtocolError as exc:
            record.error = f"refused: {exc}"
            return {**reply, "ok": False, "violation": True, "message": f"{name}(): {exc}"}
        record.args_summary = ", ".join([_summary(a) for a in args] +
                                        [f"{k}={_summary(v)}" for k, v in kwargs.items()])[:300]
        fn = self.executor.modules[name]
        signature = self.executor.signatures.get(name)
        try:
            if signature is not None:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
            else:
                arguments = {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
        except TypeError as exc:
            record.error = str(exc)
            return {**reply, "ok": False, "base": "TypeError", "message": f"{name}(): {exc}"}
        try:
            fault = self.check_arguments(name, arguments)
        except _Refused as exc:
            record.error = f"refused: {exc}"
            return {**reply, "ok": False, "violation": True, "message": str(exc)}
        if fault is not None:
            record.error = fault
            return {**reply, "ok": False, "base": "TypeError", "message": fault}
        budget_left = self.limits.module_time_s - self.charged_s
        if budget_left <= 0:
            record.error = "refused: module time budget used up"
            return {**reply, "ok": False, "violation": True, "kind": "ModuleTimeLimitExceeded",
                    "message": self._budget_message(name)}

        call = _CallCharge()
        try:
            value, cache_state = self.executor._call_module(name, fn, args, kwargs, arguments, self, budget_left,
                                                            call)
        except Exception as exc:  # noqa: BLE001 - a module failure is the program's error to see
            record.duration_s = time.perf_counter() - start
            self.charged_s += call.charged_s
            if isinstance(exc, ModuleBudgetExceeded) or call.charged_s >= budget_left:
                return self._over_budget(reply, record, name, budget_left, call)
            record.error = f"{type(exc).__name__}: {exc}"[:500]
            # Forwarded either way (the program may catch it; the error log shows it), but an
            # infrastructure failure is also recorded as the host's, not the program's, fault.
            if is_host_failure(exc):
                self.note_host_error(f"{name}(): {type(exc).__name__}: {exc}")
            # The nearest builtin exception class the program can catch (ModuleArgumentError ->
            # ValueError); anything else reaches the program as ModuleError (a RuntimeError).
            base = next((c.__name__ for c in type(exc).__mro__ if c is not Exception
                         and c.__name__ in SAFE_BUILTIN_NAMES and getattr(builtins, c.__name__, None) is c),
                        "RuntimeError")
            return {**reply, "ok": False, "base": base,
                    "message": f"{name}(): {type(exc).__name__}: {exc}"[: self.limits.max_error_chars]}
        record.duration_s = time.perf_counter() - start
        self.charged_s += call.charged_s
        if call.charged_s > budget_left:  # a call that cannot be stopped mid-way overran the budget
            return self._over_budget(reply, record, name, budget_left, call)
        record.cache_hit = cache_state == CACHE_HIT
        self.hits += int(cache_state == CACHE_HIT)
        self.misses += int(cache_state == CACHE_MISS)  # uncacheable calls count as neither
        if name in self.executor.answer_modules:
            confidence = _confidence_of(value)
            if confidence is not None:
                self.module_confidences.setdefault(confidence, name)
        try:
            encoded = encode_value(value, limits=self.limits.codec, extension=self._frame_out)
        except (TypeError, ValueError) as exc:
            record.error = f"unsupported result: {exc}"
            # The module (trusted code) returned a value outside the protocol: a module bug.
            self.note_host_error(f"{name}(): returned a value the sandbox cannot pass on: {exc}")
            return {**reply, "ok": False, "base": "RuntimeError",
                    "message": f"{name}() returned a value the sandbox cannot pass on: {exc}"}
        return {**reply, "ok": True, "value": encoded}

    def _budget_message(self, name: str) -> str:
        return (f"{name}(): the execution used up its budget of {self.limits.module_time_s:g} s of host time in "
                f"module calls ({len(self.calls)} calls, {self.charged_s:.1f} s); make fewer or cheaper module "
                "calls (fewer frames, fewer OCR/detection calls, shorter texts)")

    def _over_budget(self, reply: dict[str, Any], record: ModuleCall, name: str, budget_left: float,
                     call: _CallCharge) -> dict[str, Any]:
        """The budget ran out during a call. The program's fault when earlier calls had used at
        least half of it; a single call that started with more than half left and used it all
        says the backend is too slow for the budget: a host error."""
        record.error = "module time budget used up during the call"
        if budget_left > 0.5 * self.limits.module_time_s:
            self.note_host_error(f"sandbox: one {name}() call took {call.charged_s:.1f} s, more than the "
                                 f"{budget_left:.1f} s left of the module-time budget "
                                 f"({self.limits.module_time_s:g} s): the backend is too slow for "
                                 "SandboxLimits.module_time_s")
            return {**reply, "ok": False, "base": "RuntimeError",
                    "message": f"{name}(): the module call took longer than the execution's module-time budget"}
        return {**reply, "ok": False, "violation": True, "kind": "ModuleTimeLimitExceeded",
                "message": self._budget_message(name)}


class _CallCharge:
    """Seconds one module call is charged: computing time minus once-per-video preparation."""

    __slots__ = ("charged_s",)

    def __init__(self) -> None:
        self.charged_s = 0.0


def _confidence_of(value: Any) -> float | None:
    if isinstance(value, AnswerResult):
        confidence: Any = value.confidence
    elif isinstance(value, dict):
        confidence = value.get("confidence")
    else:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
        return None
    return float(confidence)


def _frame_argument_fault(module: str, param: str, value: Any) -> str | None:
    """Why ``value`` is not a frame argument (one frame, or a list of frames issued in this
    execution), for the program's error log; ``None`` when it is."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for i, item in enumerate(items):
        if not isinstance(item, Frame):
            where = f"{param}[{i}]" if isinstance(value, (list, tuple)) else param
            return (f"{module}(): {where} is a {type(item).__name__}, not a frame; pass frames returned by "
                    "extract_frames, trim_* or crop* in this program (frames cannot be built from a dict "
                    "or a path)")
    return None


# -- executor ---------------------------------------------------------------------------------
#: What :meth:`ProgramExecutor._call_module` did with the cache.
CACHE_HIT, CACHE_MISS, NOT_CACHED = "hit", "miss", "not_cached"


def _crash_record(rc: int | None, limits: SandboxLimits) -> tuple[str, str]:
    if rc is not None and rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU:
            return "CPUTimeLimitExceeded", f"the program used more than {limits.cpu_time_s:g} s of CPU time"
        if sig == signal.SIGXFSZ:
            return "SandboxViolation", "the program tried to write a file"
        if sig == signal.SIGKILL:
            return "WorkerKilled", "the worker was killed from outside (out of memory?)"
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return "WorkerCrashed", f"the worker died with signal {name}"
    if rc == 5:
        return "MemoryError", "the program exceeded the sandbox memory limit"
    if rc == 6:  # worker.EXIT_CPU_LIMIT: the limit hit while a message was on the channel
        return "CPUTimeLimitExceeded", f"the program used more than {limits.cpu_time_s:g} s of CPU time"
    if rc == 7:  # worker.EXIT_WALL_LIMIT
        return ("WallTimeLimitExceeded",
                f"the program ran for more than {limits.wall_time_s:g} s (module calls excluded)")
    return "WorkerCrashed", f"the worker exited unexpectedly with status {rc}"


class ProgramExecutor:
    """Runs untrusted programs in reusable sandbox workers; thread-safe.

    Args:
        modules: module name -> callable in this (trusted) process, e.g. a module runtime's
            mapping; tests pass fakes. Names must be identifiers not starting with ``_``.
        limits: resource limits (:class:`SandboxLimits`).
        workers: maximum number of worker processes, i.e. of concurrent executions.
        cache: optional :class:`~inference.call_cache.CallCache` shared across executions.
        cache_identity: backend identity and weights version, part of every cache key: a string,
            or a callable returning one, called once per execution (so a weights version bumped
            between executions, or a served checkpoint swapped behind the same URL, takes
            effect; e.g. ``ModuleRuntime.cache_identity``).
        video_context: optional ``video -> str``, read once per execution and added to its cache
            identity: what modules read about the execution's video besides the file itself
            (``ModuleRuntime.subtitle_identity``: which subtitles; a run with and one without
            subtitles sharing a cache must not see each other's subtitle results).
        uncached_modules: modules never cached (trivial ones whose results are not worth a key).
        answer_modules: modules whose results carry a model confidence; a program's returned
            confidence equal to one of theirs is ``confidence_source == "module:<name>"``.
        concurrent_module_calls: allow module functions to run concurrently from several
            executions; by default they are serialised because model backends are rarely
            thread-safe (program logic in the workers still runs in parallel).
    """

    def __init__(self, modules: Mapping[str, Callable[..., Any]], *, limits: SandboxLimits = SandboxLimits(),
                 workers: int = 1, cache: CallCache | None = None, cache_identity: str | Callable[[], str] = "",
                 video_context: Callable[[str], str] | None = None,
                 uncached_modules: Sequence[str] = ("make_result",), concurrent_module_calls: bool = False,
                 answer_modules: Sequence[str] = ANSWER_MODULES):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        for name, fn in modules.items():
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                raise ValueError(f"module name {name!r} must be a public Python identifier")
            if not callable(fn):
                raise TypeError(f"module {name!r} is not callable: {fn!r}")
        self.modules: dict[str, Callable[..., Any]] = dict(modules)
        self.signatures: dict[str, inspect.Signature | None] = {}
        for name, fn in self.modules.items():
            try:
                self.signatures[name] = inspect.signature(fn)
            except (TypeError, ValueError):
                self.signatures[name] = None
        self.limits = limits
        self.cache = cache
        self.cache_identity = cache_identity
        self.video_context = video_context
        self.uncached_modules = frozenset(uncached_modules)
        self.answer_modules = frozenset(answer_modules)
        self._module_lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if concurrent_module_calls else threading.Lock())
        self._cwd = tempfile.mkdtemp(prefix="videopro-sandbox-")
        config = {
            "cwd": self._cwd, "memory_bytes": limits.memory_bytes, "cpu_time_s": limits.cpu_time_s,
            "wall_time_s": limits.wall_time_s, "max_stdout_chars": limits.max_stdout_chars,
            "max_module_calls": limits.max_module_calls,
            "max_code_chars": limits.max_code_chars, "max_message_bytes": limits.max_message_bytes,
            "max_error_chars": limits.max_error_chars, "recursion_limit": limits.recursion_limit,
            "drop_privileges": limits.drop_privileges, "unprivileged_id": limits.unprivileged_id,
            "codec": asdict(limits.codec), "max_result_chars": limits.max_result_chars,
            "argument_codec": asdict(CodecLimits(max_string_chars=limits.max_argument_chars,
                                                 max_items=limits.max_argument_items + 1)),
        }
        self._pool = _WorkerPool(workers, config, limits.startup_timeout_s)
        self._finalizer = weakref.finalize(self, _cleanup, self._pool, self._cwd)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return self._pool.size

    @property
    def workers_started(self) -> int:
        """Worker processes started so far (a measure of how often workers were replaced)."""
        return self._pool.spawned

    def warm(self) -> None:
        """Start all workers now rather than on first use."""
        self._pool.warm()

    def close(self) -> None:
        """Stop all workers. Executions still running finish; their workers are then killed."""
        self._finalizer()

    def __enter__(self) -> ProgramExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- module calls (host side) ---------------------------------------------------------
    def _cacheable(self, name: str) -> bool:
        return self.cache is not None and name not in self.uncached_modules

    def _call_module(self, name: str, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any],
                     arguments: Mapping[str, Any], execution: _Execution, budget_s: float,
                     charge: _CallCharge) -> tuple[Any, str]:
        """Call one module through the cache within ``budget_s`` seconds of module time; returns
        ``(value, state)`` where ``state`` is :data:`CACHE_HIT`, :data:`CACHE_MISS` (looked up and
        computed) or :data:`NOT_CACHED` (no cache, an uncached module, or arguments that cannot
        form a key). ``charge.charged_s`` receives the seconds to charge to the budget: the
        module's own computing time (waiting for the module lock or for another execution
        computing the same call is free), less once-per-video preparation."""
        def compute() -> Any:
            with self._module_lock:
                started = time.monotonic()
                try:
                    with call_budget(budget_s) as budget:
                        return fn(*args, **kwargs)
                finally:
                    charge.charged_s = max(0.0, time.monotonic() - started - budget.prepared_s)

        if not self._cacheable(name):
            return compute(), NOT_CACHED
        assert self.cache is not None
        try:
            key = self.cache.make_key(name, arguments, identity=execution.cache_identity, video=execution.video,
                                      path_arguments=PATH_PARAMETERS, roots=execution.roots)
        except UncacheableValue:
            return compute(), NOT_CACHED
        value, hit = self.cache.get_or_compute(key, compute, module=name)
        return value, CACHE_HIT if hit else CACHE_MISS

    # -- execution ------------------------------------------------------------------------
    def execute(self, code: str, *, video: str, question: str, choices: list[str],
                duration: float | None = None, allowed_roots: Sequence[str] = ()) -> ExecutionRecord:
        """Run one program and return its execution record (never raises for program faults).

        ``choices`` and ``duration`` are globals of the program; ``execute_command`` is called
        as ``(video, question)`` or ``(video, question, choices, duration)``. Module calls may
        name ``video`` and files under ``allowed_roots`` (the clip directory) only.

        ``record.host_error`` is set (and the failure is not the program's) when a module raised
        an infrastructure error (anything but :data:`PROGRAM_FAULTS`; even if the program caught
        it), a module returned a value the sandbox cannot pass on, the worker could not be
        started (``error_type`` ``"SandboxStartupError"``) or was lost before the program was
        sent, or the total-time limit ran out while module calls took at least as long as the
        program's own compute (a slow endpoint; ``error_type`` stays ``"WallTimeLimitExceeded"``),
        or one module call alone used up the module-time budget, or the cache identity could not
        be read. Callers retry such executions instead of asking for a bug fix. A program that
        caught such a failure and returned an answer ends with ``success=False`` and
        ``error_type == "HostError"``: no answer computed around a failed module stands. Limits
        hit by the program (CPU, wall clock, memory, the module-time budget used up over several
        calls, the total time when its own compute dominated) and worker crashes during the
        program stay program errors with ``host_error`` ``None``.

        ``record.confidence_source`` says where a successful answer's confidence came from
        (``"module:<name>"``, ``"program"`` or ``"missing"``; see :class:`ExecutionRecord`).
        """
        start = time.perf_counter()
        record = ExecutionRecord(success=False, mode="program")
        # Refuse what the worker would refuse without spending a worker on it (the worker
        # checks again: it never runs code it has not checked itself).
        try:
            tree = parse_program(code, max_chars=self.limits.max_code_chars)
            record.mode = classify_tree(tree)
            violations = check_tree(tree)
            if violations:
                raise PolicyError(violations)
        except SyntaxError as exc:
            record.error_type, record.error_message = "SyntaxError", f"{exc.msg} (line {exc.lineno})"
            record.traceback = "".join(traceback.format_exception_only(SyntaxError, exc))
        except (PolicyError, ValueError) as exc:
            record.error_type, record.error_message = "PolicyViolation", str(exc)[: self.limits.max_error_chars]
        if record.error_type is not None:
            record.wall_time_s = time.perf_counter() - start
            return record

        try:
            identity = self.cache_identity() if callable(self.cache_identity) else self.cache_identity
            if self.video_context is not None:
                identity = f"{identity}|{self.video_context(video)}"
        except Exception as exc:  # noqa: BLE001 - e.g. the served model cannot be asked which weights it runs
            record.error_type = "CacheIdentityError"
            record.error_message = f"the module backends' identity could not be read: {type(exc).__name__}: {exc}"
            record.host_error = f"sandbox: cache identity: {type(exc).__name__}: {exc}"[: self.limits.max_error_chars]
            record.wall_time_s = time.perf_counter() - start
            return record
        execution = _Execution(self, video, allowed_roots, identity)
        request = {"op": "run", "code": code, "video": video, "question": question,
                   "choices": list(choices), "duration": duration, "modules": sorted(self.modules)}
        try:
            worker = self._pool.acquire()
        except SandboxStartupError as exc:
            # The environment, not the program: never a silent success, never a bug fix.
            record.error_type, record.error_message = "SandboxStartupError", str(exc)[: self.limits.max_error_chars]
            record.host_error = f"sandbox: {exc}"[: self.limits.max_error_chars]
            record.wall_time_s = time.perf_counter() - start
            return record
        reusable = False
        try:
            done, reusable = self._drive(worker, request, execution, start)
            if done.get("ok") and execution.violation is not None:
                # The host refused a call as a violation, so the program failed whatever the worker
                # says; a worker that lost track of a violation is not trusted with another program.
                done = {"ok": False, "error_type": execution.violation[0], "message": execution.violation[1],
                        "stdout": done.get("stdout", "")}
                reusable = False
        finally:
            worker.programs += 1
            self._pool.release(worker, reusable and worker.programs < self.limits.max_programs_per_worker)
        record.module_calls = execution.calls
        record.cache_hits, record.cache_misses = execution.hits, execution.misses
        record.host_error = execution.host_error
        record.stdout = str(done.get("stdout", ""))[: self.limits.max_stdout_chars]
        if done.get("ok"):
            try:
                record.result, stated = _coerce(execution.decode(done.get("value")), choices)
                record.success = True
            except (InvalidResult, ProtocolError) as exc:
                record.error_type, record.error_message = "InvalidResult", str(exc)
            else:
                source = execution.module_confidences.get(record.result.confidence) if stated else None
                record.confidence_source = ("missing" if not stated else f"module:{source}" if source else "program")
            if record.success and record.host_error:
                # The program caught a host failure and answered without a module that should have
                # worked: that answer says nothing reliable, so it must not stand as a success.
                record.success, record.result, record.confidence_source = False, None, None
                record.error_type = "HostError"
                record.error_message = ("the program answered after a module failed outside the program (it "
                                        f"caught the exception): {record.host_error}")
        else:
            # The worker bounds these; the host does too (a worker is untrusted).
            cut = self.limits.max_error_chars + 100
            record.error_type = str(done.get("error_type") or "Error")[:100]
            record.error_message = str(done.get("message") or "")[:cut]
            record.traceback = str(done.get("traceback") or "")[:cut] or None
        record.wall_time_s = time.perf_counter() - start
        return record

    def _drive(self, worker: _Worker, request: dict[str, Any], execution: _Execution,
               start: float) -> tuple[dict[str, Any], bool]:
        """Exchange messages with the worker until it reports ``done`` or must be killed.

        Returns the ``done`` message (or a synthesised error) and whether the worker may be reused.
        """
        limits = self.limits
        total_deadline = time.monotonic() + limits.total_time_s - (time.perf_counter() - start)
        # The worker reports its own timeout (with a traceback) at wall_time_s; the host's hard
        # kill follows after a grace period for the report to arrive.
        compute_left = limits.wall_time_s + _KILL_GRACE_S

        def fail(kind: str, message: str) -> tuple[dict[str, Any], bool]:
            return {"ok": False, "error_type": kind, "message": message}, False

        over_total = f"the execution took more than {limits.total_time_s:g} s including module calls"

        def total_exceeded(module: str | None) -> tuple[dict[str, Any], bool]:
            # Whose fault is it? When serving module calls took at least as long as the program's
            # own compute (e.g. a slow or hanging endpoint), the program is not to blame: a host
            # error, so that no bug fix is asked for. When its own compute dominated, it is the
            # program's. (Worker start-up and waiting for a free worker count for neither.)
            compute_s = limits.wall_time_s + _KILL_GRACE_S - compute_left
            if execution.module_time_s >= compute_s:
                during = f", out during a {module}() call" if module else ""
                execution.note_host_error(
                    f"sandbox: the total time limit of {limits.total_time_s:g} s was used up by module "
                    f"calls ({execution.module_time_s:.1f} s in module calls, {compute_s:.1f} s in the "
                    f"program{during})")
            return fail("WallTimeLimitExceeded", over_total)

        try:
            worker.channel.send(request, time.monotonic() + 10.0)
        except ProtocolError as exc:
            # The program has not run yet (e.g. an idle worker died): not the program's fault.
            worker.kill()
            execution.note_host_error(f"sandbox: could not send the program to the worker: {exc}")
            return fail("WorkerCrashed", f"could not send the program to the worker: {exc}")
        while True:
            waited_from = time.monotonic()
            try:
                message = worker.channel.recv(min(waited_from + compute_left, total_deadline))
            except ChannelTimeout:
                if time.monotonic() >= total_deadline:
                    compute_left -= time.monotonic() - waited_from
                    worker.kill()
                    return total_exceeded(None)
                worker.kill()
                return fail("WallTimeLimitExceeded",
                            f"the program ran for more than {limits.wall_time_s:g} s (module calls excluded)")
            except ChannelClosed:
                return fail(*_crash_record(worker.reap(), limits))
            except ProtocolError as exc:
                worker.kill()
                return fail("SandboxViolation", f"the worker broke the protocol: {exc}")
            compute_left -= time.monotonic() - waited_from
            op = message.get("op")
            if op == "done":
                return message, bool(message.get("reusable", False))
            if op != "call":
                worker.kill()
                return fail("SandboxViolation", f"the worker sent an unexpected {str(op)[:40]!r} message")
            served_from = time.perf_counter()
            reply = execution.handle_call(message)
            execution.module_time_s += time.perf_counter() - served_from
            if time.monotonic() >= total_deadline:  # the time ran out while serving this call
                worker.kill()
                return total_exceeded(str(message.get("name"))[:60])
            try:
                worker.channel.send(reply, time.monotonic() + 30.0)
            except ChannelTimeout:
                worker.kill()
                return fail("SandboxViolation", "the worker stopped reading replies")
            except ProtocolError as exc:
                if isinstance(exc, ChannelClosed):
                    return fail(*_crash_record(worker.reap(), limits))
                # The reply itself was too large: tell the program instead of sending it.
                reply = {"op": "reply", "id": message.get("id"), "ok": False, "base": "RuntimeError",
                         "message": f"{message.get('name')}() returned a result too large for the sandbox: {exc}"}
                try:
                    worker.channel.send(reply, time.monotonic() + 30.0)
                except ProtocolError:
                    worker.kill()
                    return fail("WorkerCrashed", "the worker stopped reading replies")

    def execute_many(self, codes: Sequence[str], **kwargs: Any) -> list[ExecutionRecord]:
        """Run several programs on the same question concurrently (up to ``workers`` at once),
        e.g. the samples of one GRPO group; identical module calls are computed once when a
        cache is set. Keyword arguments are those of :meth:`execute`."""
        if len(codes) <= 1 or self.workers == 1:
            return [self.execute(code, **kwargs) for code in codes]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(codes))) as pool:
            return list(pool.map(lambda code: self.execute(code, **kwargs), codes))
