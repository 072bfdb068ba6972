"""On-disk teacher request cache: one JSON file per request, keyed by the full request body.

The key is the SHA-256 of the canonical JSON of the chat-completions body (model, messages and
every sampling parameter), so changing the prompt, the model or any parameter is a miss, and a
rerun of the same request is a hit that costs nothing. The endpoint URL and the API key are not
part of the key: the same request to a mirror of the same model replays the same answer, and
a cache can ship with the project (``data_synthesis/fixtures/teacher_cache_synthetic``).

A request the API refused for its content (400/413/422) is stored too, as a negative entry
(``error`` and ``status_code`` set, no text), so a rerun or a replay gets the same refusal
instead of a miss; delete its file to ask again.

Files live at ``<root>/<key[:2]>/<key>.json`` and are written atomically, so concurrent
workers and shards can share one cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(request: dict[str, Any]) -> str:
    """The cache key of a chat-completions request body."""
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


def text_hash(text: str) -> str:
    """Short content hash of a prompt, kept in trajectory provenance."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class CacheEntry:
    key: str
    request: dict[str, Any]
    text: str
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    response_model: str | None = None
    response_id: str | None = None
    via: str = "live"  # live | batch | fixture
    cost_usd: float = 0.0
    note: str | None = None
    # A negative entry: the API refused this request for its content (TeacherRejected);
    # ``text`` is empty and ``error`` holds the refusal message, replayed as the same refusal.
    status_code: int | None = None
    error: str | None = None

    @property
    def refused(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for optional in ("note", "status_code", "error"):
            if data[optional] is None:
                del data[optional]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheEntry:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class RequestCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CacheEntry | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            return CacheEntry.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"teacher cache entry {path} is damaged ({exc}); delete it to re-request") from None

    def put(self, entry: CacheEntry) -> None:
        path = self.path_for(entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name per thread so two writers of the same key never collide.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(entry.to_dict(), ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def __contains__(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.is_dir() else 0
