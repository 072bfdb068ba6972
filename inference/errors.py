"""Errors raised on bad input. Each message names the input and says how to fix it."""

from __future__ import annotations


class VideoProError(Exception):
    """Base class of the project's own errors."""


class VideoInputError(VideoProError, ValueError):
    """A video, clip or subtitle file is missing, unreadable, empty or of the wrong kind."""


class SubtitleError(VideoInputError):
    """A subtitle file cannot be parsed."""


class ModuleArgumentError(VideoProError, ValueError):
    """A module was called with an argument a program author can correct (unknown video,
    empty frame list, window outside the video, ...)."""


class RequestRejectedError(ModuleArgumentError):
    """An endpoint refused (HTTP 4xx) a request that a module built from the program's own
    arguments, e.g. a prompt or ``max_tokens`` beyond the model's context: the program asked for
    something impossible, so it is the program's fault (a bug fix can help), not the host's."""


class ModuleBudgetExceeded(ModuleArgumentError):
    """An execution used up its budget of host seconds in module calls
    (``SandboxLimits.module_time_s``): the program asked for more host work than one execution
    may have. Raised by a backend that enforces the budget during a call (both VLM backends)."""
