"""A recording stand-in for ``huggingface_hub.HfApi`` in the release tests.

huggingface_hub ships no local Hub server (its own tests run against the hub-ci staging
endpoint over the network, which these tests must never touch), so the upload path is tested
against this double, as issue 16 allows: it records every call, checks each against the real
``HfApi`` method's signature (a misspelt or removed keyword fails the test, as it would fail
against the Hub), keeps a small in-memory repository state (branches with their files, tags) so
that the code's decisions (resume, refuse other content, new branch, tag exists) play out, and
raises huggingface_hub's own error classes where the Hub would answer with an error.
"""

from __future__ import annotations

import hashlib
import inspect
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import CommitInfo, GitRefInfo, GitRefs, RepoUrl

ENDPOINT = "https://huggingface.co"


def http_error(cls: type[HfHubHTTPError], status: int, message: str, url: str = ENDPOINT) -> HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("POST", url))
    return cls(f"{status} {message}", response=response)


class InterruptedUpload(ConnectionError):
    """Raised by ``upload_folder`` after committing part of the files (``interrupt_after``)."""


class RecordingHubApi:
    """``HfApi``'s methods that the release uses, on an in-memory Hub."""

    def __init__(self, user: str = "tester", role: str = "write", token_valid: bool = True) -> None:
        self.user, self.role, self.token_valid = user, role, token_valid
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.repos: dict[str, dict[str, Any]] = {}
        self.interrupt_after: int | None = None  # upload_folder commits this many files, then fails
        self._commits = 0
        self._downloads = Path(tempfile.mkdtemp(prefix="recording_hub_"))

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = inspect.signature(getattr(HfApi, name)).bind(self, *args, **kwargs)  # TypeError if the API differs
        arguments = dict(bound.arguments)
        arguments.pop("self")
        self.calls.append((name, arguments))
        return arguments

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def call(self, name: str) -> dict[str, Any]:
        found = [args for n, args in self.calls if n == name]
        assert len(found) == 1, (name, self.names())
        return found[0]

    def add_repo(self, repo_id: str, files: dict[str, bytes] | None = None, private: bool = False,
                 tags: dict[str, str] | None = None) -> None:
        """A repository that exists before the test (e.g. with someone else's content)."""
        self.repos[repo_id] = {"private": private, "branches": {"main": {".gitattributes": b"*.safetensors lfs\n",
                                                                         **(files or {})}},
                               "tags": dict(tags or {}), "heads": {"main": self._oid()}}

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id]["branches"][revision]

    def _oid(self) -> str:
        self._commits += 1
        return hashlib.sha1(f"commit-{self._commits}".encode()).hexdigest()

    def _repo(self, repo_id: str) -> dict[str, Any]:
        if repo_id not in self.repos:
            raise http_error(RepositoryNotFoundError, 404, f"Repository Not Found: {repo_id}")
        return self.repos[repo_id]

    def _branch(self, repo_id: str, revision: str | None) -> dict[str, bytes]:
        repo = self._repo(repo_id)
        if (revision or "main") not in repo["branches"]:
            raise http_error(RevisionNotFoundError, 404, f"Revision Not Found: {revision}")
        return repo["branches"][revision or "main"]

    def _commit(self, repo_id: str, revision: str | None, message: str | None) -> CommitInfo:
        oid = self._oid()
        self.repos[repo_id]["heads"][revision or "main"] = oid
        return CommitInfo(commit_url=f"{ENDPOINT}/{repo_id}/commit/{oid}", commit_message=message or "",
                          commit_description="", oid=oid)

    # ------------------------------------------------------------------ the API
    def whoami(self, token: Any = None, *, cache: bool = False) -> dict[str, Any]:
        self._record("whoami", token, cache=cache)
        if not self.token_valid:
            raise http_error(HfHubHTTPError, 401, "Unauthorized: Invalid credentials in Authorization header")
        return {"name": self.user, "auth": {"accessToken": {"role": self.role}}}

    def create_repo(self, repo_id: str, **kwargs: Any) -> RepoUrl:
        args = self._record("create_repo", repo_id, **kwargs)
        if repo_id in self.repos:
            if not args.get("exist_ok"):
                raise http_error(HfHubHTTPError, 409, "You already created this model repo")
        elif repo_id.split("/")[0] != self.user:
            raise http_error(HfHubHTTPError, 403, "You don't have the rights to create a model under this namespace")
        else:
            self.add_repo(repo_id, private=bool(args.get("private")))
        return RepoUrl(f"{ENDPOINT}/{repo_id}")

    def repo_info(self, repo_id: str, **kwargs: Any) -> Any:
        self._record("repo_info", repo_id, **kwargs)
        return SimpleNamespace(id=repo_id, private=self._repo(repo_id)["private"])

    def list_repo_refs(self, repo_id: str, **kwargs: Any) -> GitRefs:
        self._record("list_repo_refs", repo_id, **kwargs)
        repo = self._repo(repo_id)
        return GitRefs(branches=[GitRefInfo(name=b, ref=f"refs/heads/{b}", target_commit=repo["heads"][b])
                                 for b in repo["branches"]],
                       converts=[], tags=[GitRefInfo(name=t, ref=f"refs/tags/{t}", target_commit=oid)
                                          for t, oid in repo["tags"].items()])

    def list_repo_files(self, repo_id: str, **kwargs: Any) -> list[str]:
        args = self._record("list_repo_files", repo_id, **kwargs)
        return sorted(self._branch(repo_id, args.get("revision")))

    def hf_hub_download(self, repo_id: str, filename: str, **kwargs: Any) -> str:
        args = self._record("hf_hub_download", repo_id, filename, **kwargs)
        data = self._branch(repo_id, args.get("revision"))[filename]
        path = self._downloads / f"{self._oid()}-{Path(filename).name}"
        path.write_bytes(data)
        return str(path)

    def create_branch(self, repo_id: str, **kwargs: Any) -> None:
        args = self._record("create_branch", repo_id, **kwargs)
        repo = self._repo(repo_id)
        if args["branch"] in repo["branches"] and not args.get("exist_ok"):
            raise http_error(HfHubHTTPError, 409, f"Reference already exists: refs/heads/{args['branch']}")
        repo["branches"][args["branch"]] = dict(self._branch(repo_id, args.get("revision")))
        repo["heads"][args["branch"]] = repo["heads"][args.get("revision") or "main"]

    def upload_file(self, **kwargs: Any) -> CommitInfo:
        args = self._record("upload_file", **kwargs)
        source = args["path_or_fileobj"]
        data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
        self._branch(args["repo_id"], args.get("revision"))[args["path_in_repo"]] = data
        return self._commit(args["repo_id"], args.get("revision"), args.get("commit_message"))

    def upload_folder(self, **kwargs: Any) -> CommitInfo:
        args = self._record("upload_folder", **kwargs)
        branch = self._branch(args["repo_id"], args.get("revision"))
        folder = Path(args["folder_path"])
        local = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        if args.get("delete_patterns") == "*":
            for path in [p for p in branch if p not in local and p != ".gitattributes"]:
                del branch[path]
        for count, (path, file) in enumerate(local.items()):
            if self.interrupt_after is not None and count >= self.interrupt_after:
                self.interrupt_after = None
                raise InterruptedUpload(f"connection reset after {count} files")
            branch[path] = file.read_bytes()
        return self._commit(args["repo_id"], args.get("revision"), args.get("commit_message"))

    def create_tag(self, repo_id: str, **kwargs: Any) -> None:
        args = self._record("create_tag", repo_id, **kwargs)
        repo = self._repo(repo_id)
        if args["tag"] in repo["tags"]:
            raise http_error(HfHubHTTPError, 409, f"Tag {args['tag']} already exists")
        repo["tags"][args["tag"]] = args.get("revision") or repo["heads"]["main"]
