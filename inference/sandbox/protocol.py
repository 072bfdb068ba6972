"""Wire format between the host and a sandbox worker: length-prefixed JSON, tagged values.

Nothing that crosses the boundary is pickled: a worker is untrusted, and unpickling its bytes
in the host would hand it code execution. Every message is a 4-byte big-endian length
followed by a UTF-8 JSON object.

Values are plain JSON with a few tagged forms so that Python data survives the round trip
without ambiguity:

* ``{"$tuple": [...]}`` a tuple;
* ``{"$dict": [[key, value], ...]}`` a dict whose keys are not all strings, or any key of
  which starts with ``$`` (so a program cannot forge a tag by building a dict);
* ``{"$float": "nan" | "inf" | "-inf"}`` a non-finite float;
* ``{"$frame": ...}`` a frame handle: the host sends ``{"$frame": id, "source", "time",
  "video_time", "box"}``; the worker sends back only the id. What a handle means is decided
  by the host's per-execution handle table, never by the worker.

Codec limits (depth, item count, string length) bound what either side has to process.
Stdlib only: the worker imports this before dropping privileges.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ProtocolError", "ChannelClosed", "ChannelTimeout", "Channel", "CodecLimits",
           "encode_value", "decode_value", "FRAME_TAG"]

_HEADER = struct.Struct(">I")
FRAME_TAG = "$frame"
_BUILTIN_TAGS = ("$tuple", "$dict", "$float")


class ProtocolError(Exception):
    """A message or value does not follow the wire format (or exceeds its limits)."""


class ChannelClosed(ProtocolError):
    """The other side closed its end (for a worker: it exited or was killed)."""


class ChannelTimeout(ProtocolError):
    """No complete message arrived (or could be sent) before the deadline."""


@dataclass(frozen=True)
class CodecLimits:
    """Bounds on one encoded value."""

    max_depth: int = 24
    max_items: int = 200_000
    max_string_chars: int = 1_000_000
    max_int_bits: int = 64


class Channel:
    """One direction pair of pipe file descriptors carrying framed JSON messages.

    ``deadline`` arguments are ``time.monotonic()`` values; ``None`` blocks. The host always
    passes a deadline, so a stalled or hostile worker cannot block it.
    """

    def __init__(self, read_fd: int, write_fd: int, *, max_message_bytes: int = 16 << 20):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()

    def send(self, message: dict[str, Any], deadline: float | None = None) -> None:
        try:
            body = json.dumps(message, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"message is not JSON-serialisable: {exc}") from None
        if len(body) > self.max_message_bytes:
            raise ProtocolError(f"message of {len(body)} bytes exceeds the limit of "
                                f"{self.max_message_bytes} bytes")
        data = memoryview(_HEADER.pack(len(body)) + body)
        while data:
            self._wait(self.write_fd, deadline, writable=True)
            try:
                n = os.write(self.write_fd, data)
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError) as exc:
                raise ChannelClosed(f"peer closed the channel ({exc.__class__.__name__})") from None
            data = data[n:]

    def recv(self, deadline: float | None = None) -> dict[str, Any]:
        header = self._read_exactly(_HEADER.size, deadline)
        (length,) = _HEADER.unpack(header)
        if length > self.max_message_bytes:
            raise ProtocolError(f"peer announced a message of {length} bytes; the limit is "
                                f"{self.max_message_bytes}")
        body = self._read_exactly(length, deadline)
        try:
            message = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ProtocolError(f"malformed message: {exc}") from None
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            raise ProtocolError("malformed message: expected a JSON object with an 'op' field")
        return message

    def _read_exactly(self, n: int, deadline: float | None) -> bytes:
        while len(self._buffer) < n:
            self._wait(self.read_fd, deadline, writable=False)
            try:
                chunk = os.read(self.read_fd, max(65536, n - len(self._buffer)))
            except BlockingIOError:
                continue
            except OSError as exc:
                raise ChannelClosed(f"channel read failed ({exc.__class__.__name__})") from None
            if not chunk:
                raise ChannelClosed("peer closed the channel")
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    @staticmethod
    def _wait(fd: int, deadline: float | None, *, writable: bool) -> None:
        if deadline is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelTimeout("deadline passed")
        sets = ([], [fd], []) if writable else ([fd], [], [])
        ready = select.select(*sets, remaining)
        if not any(ready):
            raise ChannelTimeout("deadline passed")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _limit_problem(limits: CodecLimits, budget: list[int], value: Any, depth: int) -> str | None:
    """Charge one item to ``budget`` and say which limit ``value`` exceeds, if any."""
    budget[0] -= 1
    if budget[0] < 0:
        return f"value has more than {limits.max_items} items"
    if depth > limits.max_depth:
        return f"value is nested more than {limits.max_depth} levels deep"
    if type(value) is int and value.bit_length() > limits.max_int_bits:
        return f"integer with {value.bit_length()} bits exceeds {limits.max_int_bits} bits"
    if type(value) is str and len(value) > limits.max_string_chars:
        return f"string of {len(value)} characters exceeds {limits.max_string_chars}"
    return None


def encode_value(value: Any, *, limits: CodecLimits = CodecLimits(),
                 extension: Callable[[Any], Any] | None = None) -> Any:
    """Encode ``value`` into tagged JSON data.

    Only exact built-in types are accepted (``type(v) is dict``, not ``isinstance``), so no
    user-defined method runs during encoding. ``extension(value)`` may encode other types
    (frames, answer results); it returns ``NotImplemented`` for values it does not handle.
    Raises ``TypeError`` for unsupported types and ``ValueError`` when a limit is exceeded.
    """
    budget = [limits.max_items]

    def enc(v: Any, depth: int) -> Any:
        problem = _limit_problem(limits, budget, v, depth)
        if problem:
            raise ValueError(problem)
        t = type(v)
        if v is None or t in (bool, int, str):
            return v
        if t is float:
            if math.isfinite(v):
                return v
            return {"$float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if t is list:
            return [enc(x, depth + 1) for x in v]
        if t is tuple:
            return {"$tuple": [enc(x, depth + 1) for x in v]}
        if t is dict:
            if all(type(k) is str and not k.startswith("$") for k in v):
                return {k: enc(x, depth + 1) for k, x in v.items()}
            return {"$dict": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]}
        if extension is not None:
            out = extension(v)
            if out is not NotImplemented:
                return out
        raise TypeError(f"a value of type {t.__name__} cannot cross the sandbox boundary "
                        "(plain data, lists, dicts, tuples and frames only)")

    return enc(value, 0)


def decode_value(data: Any, *, limits: CodecLimits = CodecLimits(),
                 extensions: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None) -> Any:
    """Decode tagged JSON data produced by :func:`encode_value`.

    ``extensions`` maps further tags (``$frame`` on the wire; the call cache adds its own) to
    functions that turn the whole tag dict into the receiving side's object; a tag without an
    extension is refused. Raises ``ProtocolError`` for malformed data or exceeded limits.
    """
    extensions = extensions or {}
    budget = [limits.max_items]

    def dec(v: Any, depth: int) -> Any:
        problem = _limit_problem(limits, budget, v, depth)
        if problem:
            raise ProtocolError(problem)
        t = type(v)
        if v is None or t in (bool, int, float, str):
            return v
        if t is list:
            return [dec(x, depth + 1) for x in v]
        if t is dict:
            tags = [k for k in v if k.startswith("$")]
            if not tags:
                return {k: dec(x, depth + 1) for k, x in v.items()}
            tag = tags[0]
            if tag in extensions:
                return extensions[tag](v)
            if tag not in _BUILTIN_TAGS or len(v) != 1:
                raise ProtocolError(f"unknown or malformed tag {tag!r}")
            body = v[tag]
            if tag == "$tuple" and type(body) is list:
                return tuple(dec(x, depth + 1) for x in body)
            if tag == "$dict" and type(body) is list:
                out: dict[Any, Any] = {}
                for pair in body:
                    if type(pair) is not list or len(pair) != 2:
                        raise ProtocolError("malformed $dict entry")
                    key = dec(pair[0], depth + 1)
                    try:
                        out[key] = dec(pair[1], depth + 1)
                    except TypeError:
                        raise ProtocolError("unhashable $dict key") from None
                return out
            if tag == "$float" and body in ("nan", "inf", "-inf"):
                return float(body)
            raise ProtocolError(f"malformed or unexpected {tag} value")
        raise ProtocolError(f"unexpected JSON value of type {t.__name__}")

    return dec(data, 0)
