"""The teacher client: GPT-5 (or any OpenAI-compatible model) through the ``openai`` package.

What it adds over a bare ``client.chat.completions.create``:

* **Reasoning models** (gpt-5*, o-series) get ``max_completion_tokens`` and
  ``reasoning_effort`` and never ``temperature`` (they reject it).
* **Retries** on 429, 5xx, timeouts and dropped connections, with exponential backoff and
  jitter, honouring ``Retry-After``; other errors (bad request, auth) fail at once with the
  server's message. The openai client's own retries are off so the policy lives here.
* **Per-request refusals**: a 400 (e.g. a content filter), 413 or 422 is about that one
  request - the same request fails on every rerun - so it raises :class:`TeacherRejected`, and
  ``complete_many(..., keep_rejected=True)`` returns it in that request's place instead of
  failing the whole chunk. The synthesis stages record it as that question's outcome
  (``teacher_error``). Retryable failures that exhaust their retries, and errors that concern
  every request (401, 403, 404), still raise, so the stage stops and a rerun retries.
* **A concurrency limit** on requests in flight.
* **A request cache** (:mod:`data_synthesis.cache`): every answer is stored under the hash of the
  full request, so a rerun is free and reproducible. Refusals are stored too (negative
  entries) and replayed as the same :class:`TeacherRejected`. ``mode="replay"`` answers only from the
  cache and raises :class:`TeacherCacheMiss` on a miss.
* **Usage and cost accounting** per run and per stage tag.
* **The Batch API** (``mode="batch"``): :meth:`TeacherClient.complete_many` uploads the cache
  misses as a JSONL file, creates a batch, polls it and writes the results into the cache;
  the batch id is stored so a rerun after a crash collects the same batch.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_synthesis.cache import CacheEntry, RequestCache, canonical_json, request_key

log = logging.getLogger(__name__)

REASONING_PREFIXES = ("gpt-5", "o1", "o3", "o4")
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 190 * 1024 * 1024  # the API allows 200 MB per input file


class TeacherError(RuntimeError):
    """The teacher could not answer (after retries, or a non-retryable API error)."""


class TeacherCacheMiss(TeacherError):
    """Replay mode found no cached answer for a request."""


# HTTP statuses that reject one request for its content (content filter, too large, invalid):
# retrying it cannot help, and other requests are unaffected. 401/403/404 concern every request
# (key, permission, model name) and stay fatal.
PER_REQUEST_STATUSES = (400, 413, 422)


class TeacherRejected(TeacherError):
    """The API refused this one request (e.g. a 400 from a content filter): not retryable, and
    not a sign that other requests will fail."""

    def __init__(self, message: str, *, key: str = "", status_code: int | None = None):
        super().__init__(message)
        self.key = key
        self.status_code = status_code


@dataclass(frozen=True)
class TeacherSettings:
    model: str = "gpt-5"
    api_base: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "live"  # live | replay | batch
    cache_dir: str = "teacher_cache"
    reasoning: str = "auto"  # auto | yes | no
    reasoning_effort: str = "medium"
    temperature: float | None = None
    max_completion_tokens: int = 16384
    concurrency: int = 8
    max_retries: int = 6
    backoff_s: float = 2.0
    backoff_max_s: float = 120.0
    timeout_s: float = 600.0
    price_input_per_mtok: float = 1.25
    price_cached_input_per_mtok: float = 0.125
    price_output_per_mtok: float = 10.0
    batch_discount: float = 0.5
    batch_poll_s: float = 60.0
    batch_max_wait_s: float = 26 * 3600.0
    batch_state_dir: str = ""

    @property
    def is_reasoning(self) -> bool:
        if self.reasoning == "auto":
            return self.model.lower().startswith(REASONING_PREFIXES)
        return self.reasoning == "yes"

    @classmethod
    def from_config(cls, cfg: Any) -> TeacherSettings:
        out = Path(cfg.output_dir)
        return cls(
            model=cfg.teacher_model, api_base=cfg.teacher_api_base, api_key_env=cfg.teacher_api_key_env,
            mode=cfg.teacher_mode, cache_dir=cfg.teacher_cache_dir or str(out / "teacher_cache"),
            reasoning=cfg.teacher_reasoning, reasoning_effort=cfg.reasoning_effort,
            temperature=cfg.teacher_temperature if cfg.teacher_temperature >= 0 else None,
            max_completion_tokens=cfg.max_completion_tokens, concurrency=cfg.teacher_concurrency,
            max_retries=cfg.teacher_max_retries, backoff_s=cfg.teacher_backoff_s,
            backoff_max_s=cfg.teacher_backoff_max_s, timeout_s=cfg.teacher_timeout_s,
            price_input_per_mtok=cfg.price_input_per_mtok,
            price_cached_input_per_mtok=cfg.price_cached_input_per_mtok,
            price_output_per_mtok=cfg.price_output_per_mtok, batch_discount=cfg.batch_discount,
            batch_poll_s=cfg.batch_poll_s, batch_max_wait_s=cfg.batch_max_wait_s,
            batch_state_dir=str(out / "teacher_batches"))


@dataclass
class TeacherReply:
    text: str
    key: str
    model: str
    cached: bool
    finish_reason: str | None
    usage: dict[str, int]
    cost_usd: float  # what this call cost now (0 for a cache hit)
    via: str
    recorded_cost_usd: float = 0.0  # what the answer cost when it was first obtained


@dataclass
class UsageMeter:
    """Token and cost totals, overall and per stage tag. Thread-safe."""

    totals: dict[str, dict[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    FIELDS = ("requests", "cache_hits", "api_calls", "retries", "rejected", "prompt_tokens",
              "cached_prompt_tokens", "completion_tokens", "reasoning_tokens", "cost_usd", "recorded_cost_usd")

    def add(self, tag: str, **values: float) -> None:
        with self._lock:
            for name in (tag, "_all"):
                bucket = self.totals.setdefault(name, {k: 0 for k in self.FIELDS})
                for k, v in values.items():
                    bucket[k] = bucket.get(k, 0) + v

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {k: {f: (round(v, 10) if isinstance(v, float) else v) for f, v in b.items()}
                    for k, b in self.totals.items()}


def usage_from_response(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "cached_prompt_tokens": int(prompt_details.get("cached_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "reasoning_tokens": int(completion_details.get("reasoning_tokens") or 0)}


class TeacherClient:
    def __init__(self, settings: TeacherSettings, *, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.cache = RequestCache(settings.cache_dir)
        self.meter = UsageMeter()
        self._client = client
        self._client_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, settings.concurrency))
        self._sleep = sleep
        # Batch API items refused for their content in this process (key -> error).
        self._batch_rejections: dict[str, TeacherRejected] = {}

    # ---- requests --------------------------------------------------------------------------
    def build_request(self, messages: Sequence[dict[str, str]]) -> dict[str, Any]:
        """The full chat-completions body for ``messages`` under this teacher's settings."""
        s = self.settings
        request: dict[str, Any] = {"model": s.model, "messages": [dict(m) for m in messages],
                                   "max_completion_tokens": s.max_completion_tokens}
        if s.is_reasoning:
            if s.reasoning_effort:
                request["reasoning_effort"] = s.reasoning_effort
        elif s.temperature is not None:
            request["temperature"] = s.temperature
        return request

    def complete(self, request: dict[str, Any], *, tag: str = "teacher") -> TeacherReply:
        """Answer one request from the cache or (live mode) from the API."""
        key = request_key(request)
        entry = self.cache.get(key)
        if entry is not None:
            if entry.refused:
                self.meter.add(tag, requests=1, cache_hits=1, rejected=1)
                raise TeacherRejected(entry.error, key=key, status_code=entry.status_code)
            return self._hit(entry, tag)
        if self.settings.mode == "replay":
            raise self._miss(request, key)
        if self.settings.mode == "batch":
            return self.complete_many([request], tag=tag)[0]
        try:
            entry = self._call_with_retries(request, key, tag)
        except TeacherRejected as exc:
            self.meter.add(tag, requests=1, rejected=1)
            self._store_refusal(request, exc)
            raise
        self.cache.put(entry)
        return self._reply(entry, cached=False)

    def complete_many(self, requests: Sequence[dict[str, Any]], *, tag: str = "teacher",
                      keep_rejected: bool = False) -> list[TeacherReply | TeacherRejected]:
        """Answer many requests: concurrently (live), through one Batch API job (batch), or
        from the cache only (replay). Replies come back in request order.

        With ``keep_rejected``, a request the API refuses for its content
        (:class:`TeacherRejected`) is returned in its place rather than raised, so one refused
        request does not fail the others. Any other failure (retries exhausted, auth, replay
        miss) raises after the requests in flight have finished."""
        if not requests:
            return []

        def one(request: dict[str, Any]) -> TeacherReply | TeacherRejected:
            try:
                return self.complete(request, tag=tag)
            except TeacherRejected as exc:
                if keep_rejected:
                    return exc
                raise

        if self.settings.mode == "batch":
            keys = [request_key(r) for r in requests]
            pending: dict[str, dict[str, Any]] = {}
            for key, req in zip(keys, requests):
                if key not in self.cache and key not in self._batch_rejections:
                    pending.setdefault(key, req)
            if pending:
                self._run_batches(pending, tag)
            out: list[TeacherReply | TeacherRejected] = []
            for key, req in zip(keys, requests):
                rejected = self._batch_rejections.get(key)
                if rejected is not None and key not in self.cache:
                    if not keep_rejected:
                        raise rejected
                    self.meter.add(tag, requests=1, rejected=1)
                    out.append(rejected)
                else:
                    out.append(one(req))
            return out
        workers = max(1, min(self.settings.concurrency, len(requests)))
        if workers == 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher") as pool:
            return list(pool.map(one, requests))

    # ---- cache bookkeeping -----------------------------------------------------------------
    def _store_refusal(self, request: dict[str, Any], refusal: TeacherRejected) -> None:
        """Cache a refusal as a negative entry, so a rerun or replay gets the same refusal."""
        self.cache.put(CacheEntry(key=refusal.key, request=request, text="", via="refused",
                                  status_code=refusal.status_code, error=str(refusal)))

    def _hit(self, entry: CacheEntry, tag: str) -> TeacherReply:
        self.meter.add(tag, requests=1, cache_hits=1, recorded_cost_usd=entry.cost_usd)
        return self._reply(entry, cached=True)

    @staticmethod
    def _reply(entry: CacheEntry, *, cached: bool) -> TeacherReply:
        model = entry.response_model or entry.request.get("model", "")
        return TeacherReply(text=entry.text, key=entry.key, model=model,
                            cached=cached, finish_reason=entry.finish_reason, usage=dict(entry.usage),
                            cost_usd=0.0 if cached else entry.cost_usd, via=entry.via,
                            recorded_cost_usd=entry.cost_usd)

    def _miss(self, request: dict[str, Any], key: str) -> TeacherCacheMiss:
        last_user = next((m.get("content", "") for m in reversed(request.get("messages", []))
                          if m.get("role") == "user"), "")
        preview = " ".join(str(last_user).split())[:200]
        return TeacherCacheMiss(
            f"teacher replay mode: no cached answer for request {key[:16]}... (model "
            f"{request.get('model')!r}) in {self.settings.cache_dir}. Prompt starts: {preview!r}. "
            "The prompt, the model or a sampling parameter differs from the recorded run; rerun "
            "with teacher_mode=live (or batch) to fill the cache.")

    def cost_of(self, usage: dict[str, int], *, batch: bool = False) -> float:
        s = self.settings
        uncached = max(0, usage.get("prompt_tokens", 0) - usage.get("cached_prompt_tokens", 0))
        cost = (uncached * s.price_input_per_mtok + usage.get("cached_prompt_tokens", 0) * s.price_cached_input_per_mtok
                + usage.get("completion_tokens", 0) * s.price_output_per_mtok) / 1e6
        return cost * (s.batch_discount if batch else 1.0)

    def _record_usage(self, tag: str, usage: dict[str, int], cost: float, **extra: float) -> None:
        self.meter.add(tag, requests=1, prompt_tokens=usage["prompt_tokens"],
                       cached_prompt_tokens=usage["cached_prompt_tokens"],
                       completion_tokens=usage["completion_tokens"], reasoning_tokens=usage["reasoning_tokens"],
                       cost_usd=cost, recorded_cost_usd=cost, **extra)

    # ---- live calls ------------------------------------------------------------------------
    def openai_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import openai

                api_key = os.environ.get(self.settings.api_key_env)
                base_url = self.settings.api_base or os.environ.get("OPENAI_BASE_URL") or None
                if not api_key:
                    if base_url is None:
                        raise TeacherError(
                            f"no teacher API key: set ${self.settings.api_key_env} (or point "
                            "teacher_api_base at a local OpenAI-compatible server), or use "
                            "teacher_mode=replay with a recorded cache")
                    api_key = "EMPTY"  # local OpenAI-compatible servers usually ignore the key
                # max_retries=0: retries and backoff are ours, so they are counted and logged.
                self._client = openai.OpenAI(api_key=api_key, base_url=base_url,
                                             timeout=self.settings.timeout_s, max_retries=0)
            return self._client

    def _call_with_retries(self, request: dict[str, Any], key: str, tag: str) -> CacheEntry:
        import openai

        client = self.openai_client()
        s = self.settings
        attempt = 0
        while True:
            try:
                with self._slots:
                    response = client.chat.completions.create(**request)
                break
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError, openai.ConflictError) as exc:
                if attempt >= s.max_retries:
                    raise TeacherError(f"teacher request {key[:16]} failed after {attempt + 1} attempts: "
                                       f"{type(exc).__name__}: {exc}") from exc
                delay = self._backoff(attempt, exc)
                log.warning("teacher %s (%s); retry %d/%d in %.1fs", type(exc).__name__, key[:12],
                            attempt + 1, s.max_retries, delay)
                self.meter.add(tag, retries=1)
                self._sleep(delay)
                attempt += 1
            except openai.APIStatusError as exc:
                # Other 5xx codes (502/503/504 map to InternalServerError already) and 4xx: not retryable.
                if exc.status_code >= 500 and attempt < s.max_retries:
                    self.meter.add(tag, retries=1)
                    self._sleep(self._backoff(attempt, exc))
                    attempt += 1
                    continue
                message = f"teacher request rejected ({exc.status_code}): {exc.message}"
                if exc.status_code in PER_REQUEST_STATUSES:
                    log.warning("teacher request %s refused (%d): %s", key[:12], exc.status_code, exc.message)
                    raise TeacherRejected(message, key=key, status_code=exc.status_code) from exc
                raise TeacherError(message) from exc
        data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        choice = (data.get("choices") or [{}])[0]
        text = ((choice.get("message") or {}).get("content")) or ""
        usage = usage_from_response(data.get("usage"))
        cost = self.cost_of(usage)
        self._record_usage(tag, usage, cost, api_calls=attempt + 1)
        if choice.get("finish_reason") == "length":
            log.warning("teacher reply %s hit max_completion_tokens=%d; raise it for reasoning models",
                        key[:12], s.max_completion_tokens)
        return CacheEntry(key=key, request=request, text=text, finish_reason=choice.get("finish_reason"),
                          usage=usage, response_model=data.get("model"), response_id=data.get("id"),
                          via="live", cost_usd=cost)

    def _backoff(self, attempt: int, exc: Exception) -> float:
        s = self.settings
        retry_after = None
        response = getattr(exc, "response", None)
        if response is not None:
            try:
                retry_after = float(response.headers.get("retry-after"))
            except (TypeError, ValueError):
                retry_after = None
        if retry_after is not None:
            return min(retry_after, s.backoff_max_s)
        base = min(s.backoff_s * (2 ** attempt), s.backoff_max_s)
        return base * (0.5 + random.random() / 2)  # jitter: spread retries of concurrent workers

    # ---- Batch API -------------------------------------------------------------------------
    def _run_batches(self, pending: dict[str, dict[str, Any]], tag: str) -> None:
        chunks: list[list[str]] = [[]]
        size = 0
        for key, req in pending.items():
            line_bytes = len(canonical_json(req).encode("utf-8")) + 100
            if len(chunks[-1]) >= BATCH_MAX_REQUESTS or size + line_bytes > BATCH_MAX_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(key)
            size += line_bytes
        failures: list[str] = []
        for chunk in chunks:
            failures += self._run_one_batch({k: pending[k] for k in chunk}, tag)
        if failures:
            raise TeacherError(f"{len(failures)} batch request(s) failed, e.g. {failures[0]}; rerun to "
                               "resubmit only those (answers already collected stay cached)")

    def _batch_state_path(self, keys: Sequence[str]) -> Path:
        import hashlib

        digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]
        root = Path(self.settings.batch_state_dir or (Path(self.settings.cache_dir) / "_batches"))
        return root / f"batch-{digest}.json"

    def _run_one_batch(self, pending: dict[str, dict[str, Any]], tag: str) -> list[str]:
        client = self.openai_client()
        s = self.settings
        state_path = self._batch_state_path(list(pending))
        if state_path.is_file():
            state = json.loads(state_path.read_text())
            log.info("resuming teacher batch %s (%d requests)", state["batch_id"], len(pending))
        else:
            lines = [canonical_json({"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
                                     "body": req}) for key, req in pending.items()]
            upload = client.files.create(file=("teacher_requests.jsonl", ("\n".join(lines) + "\n").encode("utf-8")),
                                         purpose="batch")
            batch = client.batches.create(completion_window="24h", endpoint="/v1/chat/completions",
                                          input_file_id=upload.id,
                                          metadata={"project": "videopro", "stage": tag[:60]})
            state = {"batch_id": batch.id, "input_file_id": upload.id, "requests": len(pending)}
            state_path.parent.mkdir(parents=True, exist_ok=True)
            state_path.write_text(json.dumps(state))
            log.info("submitted teacher batch %s with %d requests", batch.id, len(pending))
        started = time.monotonic()
        while True:
            batch = client.batches.retrieve(state["batch_id"])
            if batch.status in ("completed", "failed", "expired", "cancelled"):
                break
            if time.monotonic() - started > s.batch_max_wait_s:
                raise TeacherError(f"teacher batch {batch.id} still {batch.status} after "
                                   f"{s.batch_max_wait_s:.0f}s; rerun later to collect it")
            self._sleep(s.batch_poll_s)
        failures: list[str] = []
        if batch.status == "failed":
            errors = getattr(batch, "errors", None)
            failures.append(f"batch {batch.id} failed: {errors}")
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for line in client.files.content(file_id).text.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key = item.get("custom_id")
                response = item.get("response") or {}
                body = response.get("body") or {}
                status = int(response.get("status_code", 200) or 200)
                if key in pending and not item.get("error") and status in PER_REQUEST_STATUSES:
                    error = body.get("error") or {}
                    detail = error.get("message") if isinstance(error, dict) else error
                    self._batch_rejections[key] = TeacherRejected(
                        f"teacher request rejected ({status}): {detail}", key=key, status_code=status)
                    self._store_refusal(pending[key], self._batch_rejections[key])
                    continue
                if key not in pending or item.get("error") or status >= 400:
                    failures.append(f"{key}: {item.get('error') or body.get('error')}")
                    continue
                choice = (body.get("choices") or [{}])[0]
                usage = usage_from_response(body.get("usage"))
                cost = self.cost_of(usage, batch=True)
                self._record_usage(tag, usage, cost, api_calls=1)
                self.cache.put(CacheEntry(key=key, request=pending[key],
                                          text=(choice.get("message") or {}).get("content") or "",
                                          finish_reason=choice.get("finish_reason"), usage=usage,
                                          response_model=body.get("model"), response_id=body.get("id"),
                                          via="batch", cost_usd=cost))
        missing = [k for k in pending if k not in self.cache and k not in self._batch_rejections]
        if not failures and missing:
            failures.append(f"batch {batch.id} ended {batch.status} without {len(missing)} answer(s)")
        state_path.unlink(missing_ok=True)  # the next run submits what is still missing afresh
        return failures
