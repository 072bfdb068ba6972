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
