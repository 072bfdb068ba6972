"""``python -m training.release``: build a release folder, show it (``--dry-run``) or upload it.

    python -m training.release --adapter outputs/grpo/final --output_dir releases/videopro-qwen3vl \\
        --eval_report reports/table1 --repo_id your-name/videopro-qwen3vl --tag v1.0 --dry-run
    python -m training.release --output_dir releases/videopro-qwen3vl --repo_id your-name/videopro-qwen3vl --tag v1.0

Without ``--adapter``/``--checkpoint``, ``--output_dir`` names a release folder built earlier and
it is uploaded as it is. Every flag is a ``ReleaseConfig`` field (``--help`` lists them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from inference.config import parse_config
from training.release.build import Release, ReleaseError, build_release, load_release
from training.release.config import ReleaseConfig


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def describe(release: Release, cfg: ReleaseConfig) -> str:
    """The dry run's report: where it would go, every file with its size, and the card."""
    files = release.files()
    target = (f"{cfg.repo_id}@{cfg.revision}" + (f", tag {cfg.tag}" if cfg.tag else "")
              + (", private" if cfg.private else "")) if cfg.repo_id else "(no --repo_id: nothing to upload to)"
    lines = [f"dry run: would upload {len(files)} files, {_size(sum(n for _, n in files))} in all, from "
             f"{release.path} to {target}; nothing is uploaded", ""]
    width = max(len(p) for p, _ in files)
    lines += [f"  {path:<{width}}  {n:>14,d} bytes  ({_size(n)})" for path, n in files]
    lines += ["", f"---- {release.path / 'README.md'} ----", release.card]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = parse_config(ReleaseConfig, argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warn = lambda message: print(f"warning: {message}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        if cfg.adapter or cfg.checkpoint:
            release = build_release(cfg, warn=warn)
            print(f"release folder: {release.path} ({release.manifest['stage']}, release "
                  f"{release.manifest['release_id']})", file=sys.stderr)
        else:
            release = load_release(cfg.output_dir)
        if cfg.dry_run:
            print(describe(release, cfg))
            return 0
        if not cfg.repo_id:
            print(json.dumps({"release": str(release.path), "uploaded": False,
                              "note": "pass --repo_id to upload, --dry-run to see what would be uploaded"}))
            return 0
        from training.release.hub import upload_release

        result = upload_release(release.path, repo_id=cfg.repo_id, revision=cfg.revision, tag=cfg.tag,
                                private=cfg.private, replace_remote=cfg.replace_remote,
                                commit_message=cfg.commit_message, log=lambda m: print(m, file=sys.stderr))
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"release": str(release.path), "uploaded": True, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
