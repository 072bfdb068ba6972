"""Upload a release folder to the Hugging Face Hub with ``huggingface_hub``.

``upload_release`` makes these calls on an ``HfApi`` holding the token from the environment
(``HF_TOKEN``, else the login saved by ``hf auth login``: ``huggingface_hub.get_token()``):

1. ``whoami()`` — the token is valid and may write;
2. ``create_repo(repo_id, private=..., exist_ok=True)``, ``repo_info`` (an existing repository keeps
   its visibility: a warning when it differs from ``--private``);
3. ``list_repo_refs`` — the tag must not exist yet, is the revision branch there;
4. ``list_repo_files`` (+ ``hf_hub_download`` of a remote ``videopro_release.json``) — what the
   revision holds: nothing (or only a placeholder README), this very release (an interrupted
   upload: resume), or something else (refused unless ``replace_remote``);
5. ``create_branch`` for a new revision branch;
6. ``upload_file`` of the manifest first, so a rerun after an interruption recognises its own
   partial upload;
7. ``upload_folder(..., delete_patterns="*")`` — the revision ends up holding exactly the release.
   With ``hf_xet`` installed (huggingface_hub's default), large files are chunked and deduplicated,
   and rerunning the same command resumes an interrupted upload;
8. ``create_tag`` at the uploaded commit.

Everything that can be checked is checked before the first byte is uploaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.release.build import RELEASE_MANIFEST, ReleaseError, release_files

# Files a freshly created repository (or one made on the website) has: not "other content".
PLACEHOLDER_FILES = {".gitattributes", "README.md"}


def hub_token() -> str | None:
    """The token ``huggingface_hub`` would use: ``HF_TOKEN``, else the saved login."""
    from huggingface_hub import get_token

    return get_token()


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def xet_available() -> bool:
    """Whether huggingface_hub uploads through hf_xet (chunked, deduplicated, resumable by rerunning)."""
    try:
        from huggingface_hub.utils._runtime import is_xet_available
    except ImportError:  # another huggingface_hub layout: the package's presence is what matters
        import importlib.util

        return importlib.util.find_spec("hf_xet") is not None
    return bool(is_xet_available())


def make_api(token: str) -> Any:
    from huggingface_hub import HfApi

    return HfApi(token=token)


def upload_release(folder: str | Path, *, repo_id: str, revision: str = "main", tag: str = "", private: bool = False,
                   replace_remote: bool = False, commit_message: str = "", api: Any = None,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Upload the release ``folder`` to ``repo_id`` at ``revision`` (see the module docstring).
    ``api``: an ``HfApi``-like object to use instead of one built from the environment's token.
    Returns ``{"repo_id", "url", "revision", "commit", "commit_url", "tag", "files", "remote_state"}``."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    folder = Path(folder)
    manifest = json.loads((folder / RELEASE_MANIFEST).read_text())
    release_id = manifest["release_id"]
    if api is None:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise ReleaseError("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so huggingface_hub will not reach "
                               "the Hub: unset it to upload, or pass --dry-run to only build and inspect the release")
        token = hub_token()
        if not token:
            raise ReleaseError("no Hugging Face token: create one with write access at "
                               "https://huggingface.co/settings/tokens and `export HF_TOKEN=hf_...` (or run `hf auth "
                               "login`); --dry-run needs no token")
        api = make_api(token)

    # 1. The token.
    try:
        me = api.whoami()
    except HfHubHTTPError as exc:
        raise ReleaseError(f"the Hub refused the token ({_http_status(exc) or exc}): check HF_TOKEN / `hf auth "
                           f"login`; it needs write access") from None
    except Exception as exc:  # no HTTP answer at all: DNS, proxy, timeout (httpx errors are no OSError)
        raise ReleaseError(f"cannot reach the Hub at {getattr(api, 'endpoint', 'huggingface.co')} "
                           f"({type(exc).__name__}: {exc}); check the network (and HF_ENDPOINT), then rerun") from None
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise ReleaseError(f"the token of {me.get('name')} is read-only: create a token with write access at "
                           "https://huggingface.co/settings/tokens")

    # 2. The repository.
    try:
        # private=None (not False) leaves a new repository to the namespace's default visibility.
        url = api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
    except HfHubHTTPError as exc:
        raise ReleaseError(f"cannot create or open {repo_id} as {me.get('name')} ({_http_status(exc) or exc}): the "
                           f"namespace must be yours or an organisation you can write to") from None
    info = api.repo_info(repo_id, repo_type="model")
    if private and not getattr(info, "private", False):
        log(f"warning: {repo_id} exists and is public; --private does not change an existing repository (change "
            "its visibility in its settings)")

    # 3. Refs: the tag must be new; does the revision branch exist?
    refs = api.list_repo_refs(repo_id, repo_type="model")
    tags = {t.name: t.target_commit for t in refs.tags}
    if tag and tag in tags:
        raise ReleaseError(f"tag {tag!r} already exists in {repo_id} (at {tags[tag][:12]}): pass another --tag, or "
                           f"delete that tag first")
    branches = {b.name for b in refs.branches}
    new_branch = revision not in branches

    # 4. What the revision holds now.
    state, remote_files, remote_manifest = (("new_branch", [], None) if new_branch
                                            else _remote_state(api, repo_id, revision, release_id))
    if state in ("other_release", "other_content") and not replace_remote:
        if state == "other_release":
            what = (f"another VideoPro release ({remote_manifest.get('release_id')}, "
                    f"{remote_manifest.get('created')})")
        else:
            what = (f"{len(remote_files)} file(s) that are not a VideoPro release ({', '.join(remote_files[:5])}"
                    + (", ..." if len(remote_files) > 5 else "") + ")")
        raise ReleaseError(f"{repo_id}@{revision} already holds {what}. Upload to a new repository (--repo_id), to a "
                           f"new branch (--revision NAME), or pass --replace_remote to replace its content (remote "
                           f"files that are not part of this release are deleted)")
    if not xet_available():
        log("warning: hf_xet is not installed: an interrupted upload starts over (pip install hf_xet to make "
            "reruns resume)")

    # 5-8. Branch, manifest, folder, tag.
    if new_branch:
        api.create_branch(repo_id, branch=revision, repo_type="model")
    message = commit_message or f"VideoPro release ({manifest.get('stage')}) {release_id}"
    if state != "resume":
        api.upload_file(path_or_fileobj=str(folder / RELEASE_MANIFEST), path_in_repo=RELEASE_MANIFEST,
                        repo_id=repo_id, repo_type="model", revision=revision,
                        commit_message=f"{message}: manifest (upload in progress)")
    files = release_files(folder)
    log(f"uploading {len(files)} files ({sum(n for _, n in files) / 1e6:.1f} MB) to {repo_id}@{revision}"
        + (" (resuming)" if state == "resume" else ""))
    try:
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                   commit_message=message, commit_description=_description(manifest),
                                   delete_patterns="*")
    except RepositoryNotFoundError as exc:  # the repository vanished between the checks and the upload
        raise ReleaseError(f"{repo_id} is not reachable any more ({exc}); rerun to resume") from None
    if tag:
        api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=message, repo_type="model")
    return {"repo_id": repo_id, "url": str(url), "revision": revision, "commit": commit.oid,
            "commit_url": commit.commit_url, "tag": tag or None, "files": len(files), "remote_state": state}


def _remote_state(api: Any, repo_id: str, revision: str,
                  release_id: str) -> tuple[str, list[str], dict[str, Any] | None]:
    """What ``revision`` holds: ``empty``, ``resume`` (its manifest is this release's),
    ``other_release`` or ``other_content``; with its non-placeholder files and its manifest."""
    files = sorted(set(api.list_repo_files(repo_id, revision=revision, repo_type="model")) - PLACEHOLDER_FILES)
    if not files:
        return "empty", files, None
    if RELEASE_MANIFEST in files:
        path = api.hf_hub_download(repo_id, RELEASE_MANIFEST, revision=revision, repo_type="model")
        remote = json.loads(Path(path).read_text())
        return ("resume" if remote.get("release_id") == release_id else "other_release"), files, remote
    return "other_content", files, None


def _description(manifest: dict[str, Any]) -> str:
    base = manifest.get("base_model") or {}
    versions = (manifest.get("versions") or {}).get("trained_with") or {}
    return (f"VideoPro {manifest.get('stage')} release {manifest['release_id']} of "
            f"{base.get('hub_id') or base.get('foundation')}; prompt version {versions.get('prompt_version')}, "
            f"module library {versions.get('module_library_version')}; made by training.release.")
