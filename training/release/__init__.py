"""Release: a checkpoint a researcher can download and serve, with its model card and numbers.

``python -m training.release`` (``launch/release.sh``; docs/release.md) merges a LoRA adapter (or
takes a merged checkpoint), writes a standalone release folder (``training.release.build``) with
its model card (``training.release.card``) and uploads it to the Hugging Face Hub
(``training.release.hub``).
"""

from training.release.build import Release, ReleaseError, build_release, load_release
from training.release.config import ReleaseConfig
from training.release.hub import upload_release

__all__ = ["Release", "ReleaseConfig", "ReleaseError", "build_release", "load_release", "upload_release"]
