"""Sandbox worker: the child process that runs untrusted programs (docs/sandbox.md).

Started by the host as ``python -I -B -c <boot> <config-json>``. On start it moves its message
pipes off stdin/stdout (so nothing else can write protocol bytes), applies resource limits,
drops root privileges when it has them, says ``ready`` and then serves ``run`` requests, one
program at a time:

1. the CPU-time soft limit is set to "CPU used so far + the per-program budget" (the kernel
   kills the process with SIGXCPU when it is exceeded; a program cannot catch that);
2. the program is checked and rewritten by the AST policy and compiled;
3. it runs in a fresh globals dict with restricted builtins; each module is a stub that sends a
   ``call`` request to the host and blocks for the reply; frames arrive as opaque proxies;
4. the return value is encoded as plain data and sent back with the bounded stdout, or the
   error type, message and a traceback restricted to the program's own lines.

Violations detected at run time (private ``getattr``, ``{0.__class__}`` format fields, output
or call limits, arguments the host refuses) raise an exception the program cannot name and are
also remembered, so a program that swallows the exception still ends with an error record.

Stdlib only; everything is imported before privileges are dropped.
"""

from __future__ import annotations

import _string  # the parser str.format itself uses, to split "{0.attr[key]}" field names
import builtins
import gc
import json
import math
import os
import resource
import signal
import string
import sys
import traceback
import types
from typing import Any

from inference.sandbox.policy import (
    FORMAT_HOOK,
    SAFE_BUILTIN_NAMES,
    SAFE_EXCEPTION_NAMES,
    PolicyError,
    attribute_refusal,
    prepare_program,
)
from inference.sandbox.protocol import FRAME_TAG, Channel, CodecLimits, ProtocolError, decode_value, encode_value

PROGRAM_FILENAME = "<program>"
#: Exit statuses of a worker whose program hit a limit while a message was on the channel (no
#: report can follow a half-written message); the host reads them as that limit.
EXIT_CPU_LIMIT, EXIT_WALL_LIMIT = 6, 7
ENTRY_POINT = "execute_command"


class SandboxViolation(BaseException):
    """Raised inside a program that tried something the sandbox refuses.

    Derives from ``BaseException`` and is not in the program's namespace, so ``except
    Exception`` does not catch it; a bare ``except:`` does, which is why violations are also
    remembered by :class:`ProgramRun`.
    """

    kind = "SandboxViolation"


class OutputLimitExceeded(SandboxViolation):
    kind = "OutputLimitExceeded"


class ModuleCallLimitExceeded(SandboxViolation):
    kind = "ModuleCallLimitExceeded"


class ModuleTimeLimitExceeded(SandboxViolation):
    """The execution used up its budget of host seconds in module calls (the host says so)."""

    kind = "ModuleTimeLimitExceeded"


#: Violation kinds the host may name in a refused call's reply (anything else: SandboxViolation).
_HOST_VIOLATIONS = {cls.kind: cls for cls in (ModuleTimeLimitExceeded,)}


class ModuleError(RuntimeError):
    """A module failed in the host for a reason that is not an argument error."""


_SAFE_EXCEPTIONS = {name: getattr(builtins, name) for name in SAFE_EXCEPTION_NAMES}


class FrameProxy:
    """What a program sees of a frame: read-only metadata and an opaque handle.

    The handle is meaningful only to the host's handle table for the current execution; the
    pixels and the real ``Frame`` object never enter the worker.
    """

    __slots__ = ("_vp_handle", "source", "time", "video_time", "box")

    def __init__(self, handle: int, source: str, time: float, video_time: float, box: Any):
        for name, value in (("_vp_handle", handle), ("source", source), ("time", time),
                            ("video_time", video_time), ("box", box)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("frames are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("frames are read-only")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameProxy) and other._vp_handle == self._vp_handle

    def __hash__(self) -> int:
        return hash(("frame", self._vp_handle))

    def __repr__(self) -> str:
        box = f", box={self.box}" if self.box is not None else ""
        return f"Frame(source={os.path.basename(self.source)!r}, time={self.time:.2f}{box})"


class _SafeFormatter(string.Formatter):
    """``str.format`` semantics, minus attribute fields that the policy refuses."""

    def __init__(self, run: ProgramRun):
        self.run = run

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        _, rest = _string.formatter_field_name_split(field_name)
        for is_attribute, name in rest:
            if is_attribute:
                reason = attribute_refusal(name)
                if reason:
                    self.run.violate(SandboxViolation, f"format field {{{field_name}}}: {reason}")
        return super().get_field(field_name, args, kwargs)


def _program_frames(tb_or_stack: Any, lines: list[str]) -> traceback.StackSummary:
    """Stack entries that belong to the program, with the program's own source lines."""
    entries = []
    for fs in tb_or_stack:
        if fs.filename != PROGRAM_FILENAME:
            continue
        line = lines[fs.lineno - 1].strip() if fs.lineno and 0 < fs.lineno <= len(lines) else ""
        entries.append(traceback.FrameSummary(fs.filename, fs.lineno, fs.name, line=line))
    return traceback.StackSummary.from_list(entries)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit // 2
    return text[:head] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-(limit - head):]


class ProgramRun:
    """Runs one program for one ``run`` request."""

    def __init__(self, channel: Channel, config: dict[str, Any], request: dict[str, Any]):
        self.channel = channel
        self.config = config
        self.request = request
        self.lines = str(request.get("code", "")).splitlines()
        self.stdout: list[str] = []
        self.stdout_chars = 0
        self.violation: tuple[str, str, str] | None = None
        self.module_calls = 0
        self.next_call_id = 0
        self.reusable = True
        self.in_channel = False
        # Set once the program's time is over: a stub or ``print`` of this run that is still
        # called afterwards (by a finalizer that somehow outlived the run) does nothing.
        self.finished = False
        self.codec = CodecLimits(**config["codec"])
        # The host's argument limits, checked here first so that an oversized argument costs the
        # program's CPU, not the host's (the host checks again, exactly).
        self.argument_codec = CodecLimits(**config["argument_codec"])
        self.formatter = _SafeFormatter(self)
        # A class per program: a program may set public attributes on the class it can name,
        # and nothing one program does may be seen by the next one in this worker.
        self.module_error = type("ModuleError", (ModuleError,), {"__module__": "program"})

    # -- runtime guards -------------------------------------------------------------------
    def violate(self, kind: type[SandboxViolation], message: str) -> None:
        if self.violation is None:
            self.violation = (kind.kind, message, "")  # first: the traceback walk may fail
            try:
                summary = traceback.StackSummary.extract(traceback.walk_stack(None), lookup_lines=False)
                summary.reverse()  # walk_stack yields the innermost frame first
                stack = _program_frames(summary, self.lines)
                tb = "Traceback (most recent call last):\n" + "".join(stack.format()) if stack else ""
                self.violation = (kind.kind, message, tb)
            except RecursionError:  # at the program's recursion limit: the record without a traceback
                pass
        raise kind(message)

    def _print(self, *args: Any, sep: Any = " ", end: Any = "\n", file: Any = None,
               flush: bool = False) -> None:
        if self.finished:
            raise SandboxViolation("print() called after the program ended")
        if file is not None:
            raise TypeError("print(file=...) is not available in programs")
        if (sep is not None and type(sep) is not str) or (end is not None and type(end) is not str):
            raise TypeError("print: sep and end must be strings")
        limit = self.config["max_stdout_chars"]
        if self.stdout_chars >= limit:
            self.violate(OutputLimitExceeded, f"the program printed more than {limit} characters")
        text = (" " if sep is None else sep).join(str(a) for a in args) + ("\n" if end is None else end)
        room = limit - self.stdout_chars
        self.stdout.append(text[:room])
        self.stdout_chars += min(len(text), room)
        if len(text) > room:
            self.violate(OutputLimitExceeded, f"the program printed more than {limit} characters")

    def _getattr(self, obj: Any, name: Any, *default: Any) -> Any:
        reason = attribute_refusal(name)
        if reason:
            self.violate(SandboxViolation, f"getattr: {reason}")
        if name in ("format", "format_map"):
            return self._format_attr(obj, name)
        return getattr(obj, name, *default)

    def _hasattr(self, obj: Any, name: Any) -> bool:
        reason = attribute_refusal(name)
        if reason:
            self.violate(SandboxViolation, f"hasattr: {reason}")
        return hasattr(obj, name)

    def _format_attr(self, obj: Any, name: str) -> Any:
        """Target of the policy's ``x.format`` rewrite."""
        if obj is str:
            return self._format_unbound if name == "format" else self._format_map_unbound
        if isinstance(obj, str):
            # Closures rather than functools.partial: a partial exposes ``.func``, a public
            # attribute leading back to the formatter object.
            formatter = self.formatter
            if name == "format":
                def format(*args: Any, **kwargs: Any) -> str:  # noqa: A001 - mirrors str.format
                    return formatter.format(obj, *args, **kwargs)
                return format
            format_map = self._format_map

            def bound_format_map(mapping: Any) -> str:
                return format_map(obj, mapping)
            return bound_format_map
        return getattr(obj, name)

    def _format_map(self, template: str, mapping: Any) -> str:
        return self.formatter.vformat(template, (), mapping)

    def _format_unbound(self, template: Any, *args: Any, **kwargs: Any) -> str:
        if not isinstance(template, str):
            raise TypeError("str.format needs a string as its first argument")
        return self.formatter.format(template, *args, **kwargs)

    def _format_map_unbound(self, template: Any, mapping: Any) -> str:
        if not isinstance(template, str):
            raise TypeError("str.format_map needs a string as its first argument")
        return self._format_map(template, mapping)

    # -- module calls ---------------------------------------------------------------------
    def _encode_frame(self, value: Any) -> Any:
        if type(value) is FrameProxy:
            return {FRAME_TAG: value._vp_handle}
        return NotImplemented

    def _decode_frame(self, tag: dict[str, Any]) -> FrameProxy:
        box = tag.get("box")
        return FrameProxy(int(tag[FRAME_TAG]), str(tag.get("source", "")), float(tag.get("time", 0.0)),
                          float(tag.get("video_time", 0.0)), tuple(box) if box is not None else None)

    def call_module(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.finished:  # never on the channel: another program's execution may own it now
            raise SandboxViolation(f"{name}() called after the program ended")
        if self.violation is not None:  # the record is a violation already: no more host work
            self.violate(SandboxViolation, f"{name}(): no module calls after a sandbox violation")
        self.module_calls += 1
        limit = self.config["max_module_calls"]
        if self.module_calls > limit:
            self.violate(ModuleCallLimitExceeded, f"the program made more than {limit} module calls")
        try:
            payload_args = encode_value(list(args), limits=self.argument_codec, extension=self._encode_frame)
            payload_kwargs = encode_value(kwargs, limits=self.argument_codec, extension=self._encode_frame)
        except TypeError as exc:
            raise TypeError(f"{name}(): {exc}") from None
        except ValueError as exc:
            self.violate(SandboxViolation, f"{name}(): argument too large: {exc}")
        self.next_call_id += 1
        call_id = self.next_call_id
        # Module time is the host's, not the program's: stop the wall-clock timer meanwhile.
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        self.in_channel = True
        try:
            self.channel.send({"op": "call", "id": call_id, "name": name, "args": payload_args,
                               "kwargs": payload_kwargs})
            reply = self.channel.recv()
        finally:
            self.in_channel = False
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001))
        if reply.get("op") != "reply" or reply.get("id") != call_id:
            raise ProtocolError(f"host sent {reply.get('op')!r} in reply to call {call_id}")
        if reply.get("ok"):
            return decode_value(reply.get("value"), limits=self.codec,
                                extensions={FRAME_TAG: self._decode_frame})
        message = str(reply.get("message", "module call failed"))
        if reply.get("violation"):
            self.violate(_HOST_VIOLATIONS.get(str(reply.get("kind")), SandboxViolation), message)
        program_class = self.module_error or ModuleError  # None once the program has ended
        exc_type = _SAFE_EXCEPTIONS.get(str(reply.get("base")), program_class)
        if exc_type is RuntimeError:
            exc_type = program_class
        raise exc_type(message)

    def _make_stub(self, name: str) -> types.FunctionType:
        call = self.call_module

        def module(*args: Any, **kwargs: Any) -> Any:
            return call(name, args, kwargs)

        module.__name__ = module.__qualname__ = name
        return module

    # -- running --------------------------------------------------------------------------
    def _globals(self) -> dict[str, Any]:
        safe = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES if hasattr(builtins, name)}
        safe.update(print=self._print, getattr=self._getattr, hasattr=self._hasattr)
        g: dict[str, Any] = {"__builtins__": safe, "__name__": "program", FORMAT_HOOK: self._format_attr,
                             "ModuleError": self.module_error}
        g.update({name: self._make_stub(name) for name in self.request["modules"]})
        # A copy: the request outlives the program (the signal handlers hold this run until
        # the next one), so nothing the program can reach may be part of it.
        choices = self.request.get("choices")
        g["choices"] = list(choices) if type(choices) is list else choices
        g["duration"] = self.request.get("duration")
        return g

    def _set_cpu_limit(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = usage.ru_utime + usage.ru_stime
        soft = int(math.ceil(used + float(self.config["cpu_time_s"])))
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))

    def _error(self, kind: str, message: str, tb: str = "") -> dict[str, Any]:
        limit = self.config["max_error_chars"]
        return {"ok": False, "error_type": kind, "message": _truncate(message, limit),
                "traceback": _truncate(tb, limit)}

    def _exception(self, exc: BaseException) -> dict[str, Any]:
        if isinstance(exc, SandboxViolation) and self.violation is not None:
            return self._error(*self.violation)
        try:
            message = str(exc)
        except Exception:  # noqa: BLE001 - str() of an exception must not break reporting
            message = "<unprintable message>"
        summary = traceback.StackSummary.extract(traceback.walk_tb(exc.__traceback__), lookup_lines=False)
        stack = _program_frames(summary, self.lines)
        tb = ("Traceback (most recent call last):\n" + "".join(stack.format())) if stack else ""
        return self._error(type(exc).__name__, message, tb)

    def _run_program(self) -> dict[str, Any]:
        try:
            tree = prepare_program(self.request["code"], max_chars=self.config["max_code_chars"])
            code = compile(tree, PROGRAM_FILENAME, "exec")
        except SyntaxError as exc:
            return self._error("SyntaxError", f"{exc.msg} (line {exc.lineno})")
        except PolicyError as exc:
            return self._error("PolicyViolation", str(exc))
        g = self._globals()
        try:
            exec(code, g)  # noqa: S102 - the reason this process exists; see module docstring
            fn = g.get(ENTRY_POINT)
            if type(fn) is not types.FunctionType:
                return self._error("InvalidProgram", f"the program does not define a function {ENTRY_POINT}")
            fn_code = fn.__code__
            if fn_code.co_flags & (0x04 | 0x08) or fn_code.co_kwonlyargcount:
                return self._error("InvalidProgram", f"{ENTRY_POINT} must take plain positional parameters")
            arity = fn_code.co_argcount
            base = (self.request["video"], self.request["question"])
            if arity == 2:
                value = fn(*base)
            elif arity == 4:
                value = fn(*base, g.get("choices"), g.get("duration"))
            else:
                return self._error("InvalidProgram", f"{ENTRY_POINT} takes {arity} parameters; expected 2 "
                                   "(video, question) or 4 (video, question, choices, duration)")
        except MemoryError:
            self.reusable = False  # the heap may be fragmented near the limit; start afresh
            return self._error("MemoryError", "the program exceeded the sandbox memory limit")
        except ProtocolError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every program failure becomes a record
            return self._exception(exc)
        finally:
            g.clear()
        if self.violation is not None:  # the program swallowed a violation and carried on
            return self._error(*self.violation)
        try:
            encoded = encode_value(value, limits=self.codec, extension=self._encode_frame)
        except (TypeError, ValueError) as exc:
            return self._error("InvalidResult", f"{ENTRY_POINT} returned a value that is not plain data: {exc}")
        limit = int(self.config["max_result_chars"])
        size = len(json.dumps(encoded, ensure_ascii=False, separators=(",", ":")))
        if size > limit:
            return self._error("InvalidResult", f"{ENTRY_POINT} returned {size} characters of data; the limit is "
                               f"{limit} (return the answer and its confidence, not bulk data)")
        return {"ok": True, "value": encoded}

    def _on_limit(self, signum: int, frame: Any) -> None:
        """SIGXCPU (RLIMIT_CPU) or SIGALRM (wall clock): report where the program was, then exit.

        The kernel and the host enforce the limits regardless (SIGKILL follows); this handler
        only adds the traceback a bug-fix prompt can show. It cannot be caught by the program.
        """
        if self.in_channel:  # a half-written message must not be followed by another one
            os._exit(EXIT_CPU_LIMIT if signum == signal.SIGXCPU else EXIT_WALL_LIMIT)
        if signum == signal.SIGXCPU:
            kind = "CPUTimeLimitExceeded"
            message = f"the program used more than {self.config['cpu_time_s']:g} s of CPU time"
        else:
            kind, message = ("WallTimeLimitExceeded",
                             f"the program ran for more than {self.config['wall_time_s']:g} s (module calls excluded)")
        summary = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
        summary.reverse()
        stack = _program_frames(summary, self.lines)
        tb = "Traceback (most recent call last):\n" + "".join(stack.format()) if stack else ""
        report = self._error(kind, message, tb)
        report.update(op="done", stdout="".join(self.stdout), reusable=False, module_calls=self.module_calls)
        try:
            self.channel.send(report)
        finally:
            os._exit(0)

    def _collect_program_garbage(self) -> None:
        """Finalize everything the program left behind now, inside its own limits.

        A suspended generator's ``finally`` block is program code that runs when the generator
        is finalized. Left for the interpreter's automatic collection, it would run at some
        allocation during a *later* program in this worker and could spend that program's
        time, call modules in its execution or print into it. So the objects the program could
        reach outside its globals are cut loose (its ``ModuleError`` class, on which it may
        set attributes; ``choices`` is a copy) and every generation is collected until nothing
        is left. ``main`` froze the worker's own objects (``gc.freeze``), so a full collection
        only visits what was allocated since: microseconds for an ordinary program.
        """
        self.module_error = None
        while gc.collect():  # finalizers may leave new garbage; the armed time limits bound this
            pass

    def run(self) -> dict[str, Any]:
        self._set_cpu_limit()
        signal.signal(signal.SIGXCPU, self._on_limit)
        signal.signal(signal.SIGALRM, self._on_limit)
        signal.setitimer(signal.ITIMER_REAL, float(self.config["wall_time_s"]))
        try:
            result = self._run_program()
            self._collect_program_garbage()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.finished = True
        if self.violation is not None and result.get("ok"):
            result = self._error(*self.violation)
        result.update(op="done", stdout="".join(self.stdout), reusable=self.reusable,
                      module_calls=self.module_calls)
        return result


def _apply_limits(config: dict[str, Any]) -> None:
    """Process-wide limits that hold for the worker's whole life."""
    memory = int(config["memory_bytes"])
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # may not grow or create file contents
    # Only the message pipes and stdio are open; nothing may open more.
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork (ignored for root; see below)


def _drop_privileges(config: dict[str, Any]) -> None:
    if not config.get("drop_privileges") or os.geteuid() != 0:
        return
    uid = gid = int(config.get("unprivileged_id", 65534))
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def main() -> None:
    config = json.loads(sys.argv[1])
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.chdir(config["cwd"])
    channel = Channel(read_fd, write_fd, max_message_bytes=int(config["max_message_bytes"]))
    sys.setrecursionlimit(int(config["recursion_limit"]))
    _apply_limits(config)
    _drop_privileges(config)
    # Everything allocated so far is the worker's own and lives as long as it does: move it out
    # of the collector's generations, so that the full collection after each program
    # (ProgramRun._collect_program_garbage) visits only objects allocated since.
    gc.collect()
    gc.freeze()
    channel.send({"op": "ready", "pid": os.getpid(), "uid": os.getuid()})
    while True:
        try:
            request = channel.recv()
        except ProtocolError:
            os._exit(0)  # host went away
        if request["op"] == "exit":
            os._exit(0)
        if request["op"] != "run":
            os._exit(3)
        try:
            reply = ProgramRun(channel, config, request).run()
        except ProtocolError:
            os._exit(4)
        except MemoryError:
            os._exit(5)
        try:
            channel.send(reply)
        except ProtocolError as exc:
            # The result could not be framed (too large): report that instead.
            channel.send({"op": "done", "ok": False, "error_type": "InvalidResult",
                          "message": f"the program's result or output is too large to return: {exc}",
                          "traceback": "", "stdout": "", "reusable": True, "module_calls": 0})
        if not reply.get("reusable", True):
            os._exit(0)
