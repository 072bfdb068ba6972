"""The code versions a checkpoint was made with, saved next to it (``videopro_versions.json``).

A trained VideoPro model has learnt one prompt wording (``inference.prompts.PROMPT_VERSION``) and
one module API (``inference.modules.module_library_version()``); it should be run with those.
SFT writes the file into its final adapter folder and the release copies it into the release, so
the model card can say what the model was trained with rather than what the code is today.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VERSIONS_FILE = "videopro_versions.json"


def code_versions() -> dict[str, Any]:
    """``{"prompt_version", "module_library_version", "git_commit"}`` of the code running now."""
    from inference.evaluation.batch import git_commit
    from inference.modules import module_library_version
    from inference.prompts import PROMPT_VERSION

    return {"prompt_version": PROMPT_VERSION, "module_library_version": module_library_version(),
            "git_commit": git_commit()}


def write_versions(folder: str | Path, **extra: Any) -> Path:
    """Write :func:`code_versions` (plus ``extra`` keys) to ``<folder>/videopro_versions.json``."""
    path = Path(folder) / VERSIONS_FILE
    path.write_text(json.dumps({**code_versions(), **extra}, indent=2) + "\n")
    return path


def read_versions(folder: str | Path) -> dict[str, Any] | None:
    """The versions recorded in ``folder``, or ``None`` when it has no ``videopro_versions.json``."""
    path = Path(folder) / VERSIONS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
