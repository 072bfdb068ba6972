"""The answering VideoLLM behind ``query_*`` and the runner: one protocol, two backends.

- :class:`OpenAIVLM` talks to an OpenAI-compatible chat endpoint (``vllm serve``, or
  ``python -m vllm.entrypoints.openai.api_server``) and requests log-probabilities.
- :class:`TransformersVLM` runs a Qwen-VL checkpoint in-process with transformers.

Both receive the same pixels and the same video metadata, so for the same checkpoint they
produce the same answer and the same Eq. 2 confidence:

- a video is a list of pre-sampled uint8 frames plus ``vlm_inputs.video_metadata_for``
  metadata (source fps and frame indices, ``do_sample_frames=False``). Over HTTP it is sent as
  vLLM's ``video/jpeg`` frame-sequence data URL (comma-separated base64 images) with the
  metadata in the request's ``media_io_kwargs``; frames are PNG-encoded by default, which
  vLLM's image loader reads losslessly, so the server sees exactly the frames transformers
  sees. (A plain mp4 would be re-encoded lossily and resampled by the server.)
- an image is a uint8 ``[H, W, 3]`` array, sent as a PNG ``image_url``.
- log-probabilities are the raw model log-softmax (vLLM's default ``raw_logprobs``), decoding
  is greedy for answers, and sampling defaults hidden in a checkpoint's
  ``generation_config.json`` (repetition penalty, top-k) are overridden explicitly on both
  sides.
- the end-of-turn token that closes a reply is not part of the answer and is dropped before
  scoring, on both sides (vLLM reports it in the log-probs when generation stops on it).
- inside the sandbox both honour the execution's module-time budget (``inference.budget``):
  the request timeout / ``generate(max_time=...)`` is cut to the time left, and running out
  raises ``ModuleBudgetExceeded``. An endpoint's 4xx answer to a request built from a
  program's arguments (a prompt beyond the context, ...) raises ``RequestRejectedError``: both
  are the program's faults, not host errors.
- answers carry the backend's *kind* (``metadata["backend"]``: ``"openai"`` /
  ``"transformers"``), never its checkpoint path or URL: answers reach untrusted programs.
"""

from __future__ import annotations

import base64
import contextvars
import io
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inference.backends import load_once, torch_device
from inference.budget import check_deadline, remaining_s
from inference.confidence import confidence_from_logprobs, extract_letter
from inference.errors import ModuleBudgetExceeded, RequestRejectedError
from inference.types import OPTION_LETTERS, AnswerResult

VideoWithMetadata = tuple[np.ndarray, dict[str, Any]]
AnswerMode = Literal["mc", "native", "yn", "open"]


@dataclass
class Generation:
    """One generated reply.

    Attributes:
        text: the reply text (special tokens removed).
        token_logprobs: log-probability of each answer token; the end-of-turn token that
            closed the reply, if any, is excluded (it is not part of the answer, Eq. 2).
        tokens: the text of each of those tokens.
        top_logprobs: for each answer token, the most likely alternatives (token text ->
            log-prob), when requested.
        num_tokens: number of generated tokens, end-of-turn token included (cost accounting).
        finish_reason: ``"stop"`` (end of turn) or ``"length"`` (hit ``max_new_tokens``).
    """

    text: str
    token_logprobs: list[float] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    num_tokens: int = 0
    finish_reason: str = "stop"

    @property
    def confidence(self) -> float:
        """Eq. 2 over the whole reply (0 for an empty reply)."""
        return confidence_from_logprobs(self.token_logprobs) if self.token_logprobs else 0.0


def _check_image(img: Any, where: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{where}: an image must be a uint8 array [H, W, 3], got {arr.dtype} {arr.shape}")
    return arr


def build_chat(prompt: str | None, messages: Sequence[dict[str, Any]] | None,
               num_images: int, num_videos: int) -> list[dict[str, Any]]:
    """Chat messages in the content-part form both transformers' chat templates and the
    OpenAI API understand. Visual inputs are placed, images first then videos, before the text
    of the first user message (the layout Qwen-VL was trained on)."""
    if (prompt is None) == (messages is None):
        raise ValueError("give exactly one of prompt= (a user message) or messages= (a chat)")
    chat = [{"role": "user", "content": prompt}] if prompt is not None else [dict(m) for m in messages]
    first_user = next((i for i, m in enumerate(chat) if m.get("role") == "user"), None)
    if first_user is None:
        raise ValueError("messages need at least one user message")
    visual = [{"type": "image"}] * num_images + [{"type": "video"}] * num_videos
    out = []
    for i, m in enumerate(chat):
        content = m.get("content", "")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string; pass images/videos with "
                             "images=/videos=, not inside messages")
        parts = (list(visual) if i == first_user else []) + [{"type": "text", "text": content}]
        out.append({"role": m["role"], "content": parts})
    return out


def answer_from_generation(gen: Generation, mode: AnswerMode, num_choices: int = 0,
                           backend: str = "") -> AnswerResult:
    """Turn a reply into an :class:`AnswerResult` with Eq. 2 confidence.

    - ``mc``/``native``: the option letter read from the reply (``extract_letter``); the
      confidence is Eq. 2 over the reply's tokens, i.e. the letter's probability when the
      reply is just the letter. If no valid letter can be read, the answer falls back to the
      option letter most probable at the first position among the returned top log-probs
      (confidence: its probability); if none is there either, the answer is ``""`` with
      confidence 0, which the runner treats as a failed, low-confidence answer.
    - ``yn``: ``"yes"``/``"no"`` read from the reply, Eq. 2 confidence.
    - ``open``: the reply text, Eq. 2 confidence.
    """
    meta: dict[str, Any] = {"mode": mode, "backend": backend, "num_tokens": gen.num_tokens,
                            "finish_reason": gen.finish_reason}
    text = gen.text.strip()
    if mode in ("mc", "native"):
        letter = extract_letter(text, num_choices)
        if letter is not None:
            meta["letter_source"] = "generated"
            return AnswerResult(letter, gen.confidence, gen.text, meta)
        valid = OPTION_LETTERS[:num_choices]
        best: tuple[float, str] | None = None
        for tok, lp in (gen.top_logprobs[0] if gen.top_logprobs else {}).items():
            key = tok.strip()
            if len(key) == 1 and key in valid and (best is None or lp > best[0]):
                best = (lp, key)
        if best is not None:
            meta["letter_source"] = "top_logprobs"
            return AnswerResult(best[1], float(np.exp(best[0])), gen.text, meta)
        meta["letter_source"] = "none"
        return AnswerResult("", 0.0, gen.text, meta)
    if mode == "yn":
        word = text.lower().lstrip("(\"' ").split()[0].strip(".,!:;\"')") if text else ""
        answer = word if word in ("yes", "no") else ""
        meta["letter_source"] = "generated" if answer else "none"
        return AnswerResult(answer, gen.confidence if answer else 0.0, gen.text, meta)
    return AnswerResult(text, gen.confidence, gen.text, meta)


@dataclass(frozen=True)
class GenerateRequest:
    """The arguments of one :meth:`VLMBackend.generate` call, for :meth:`VLMBackend.generate_batch`."""

    prompt: str | None = None
    messages: Sequence[dict[str, Any]] | None = None
    images: Sequence[np.ndarray] = ()
    videos: Sequence[VideoWithMetadata] = ()
    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    top_logprobs: int = 0
    seed: int | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"messages": self.messages, "images": self.images, "videos": self.videos,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "top_logprobs": self.top_logprobs, "seed": self.seed}


class VLMBackend(ABC):
    """A VideoLLM that generates replies with token log-probabilities."""

    name: str = "vlm"

    @abstractmethod
    def identity(self) -> str:
        """Backend name and model/weights version, for the module-call cache key."""

    @abstractmethod
    def generate(self, prompt: str | None = None, *, messages: Sequence[dict[str, Any]] | None = None,
                 images: Sequence[np.ndarray] = (), videos: Sequence[VideoWithMetadata] = (),
                 max_new_tokens: int = 512, temperature: float = 0.0, top_p: float | None = None,
                 top_k: int | None = None, top_logprobs: int = 0, seed: int | None = None) -> Generation:
        """Generate one reply to ``prompt`` (a user message) or ``messages`` (text-only chat
        turns), with ``images`` (uint8 ``[H, W, 3]``) and ``videos`` (``(frames, metadata)``
        from ``vlm_inputs.video_metadata_for``) placed before the first user text.
        ``temperature=0`` decodes greedily; ``top_p``/``top_k`` ``None`` sample with the
        checkpoint's own values (its ``generation_config.json``; none there: no truncation)."""

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Several replies at once (``inference.backends.batching.BatchingVLM`` sends concurrent
        calls here). This default answers them one by one; backends that can do better (one
        batched forward in-process, concurrent requests to a server) override it."""
        return [self.generate(r.prompt, **r.kwargs()) for r in requests]

    def answer(self, prompt: str, *, mode: AnswerMode = "mc", num_choices: int = 0,
               images: Sequence[np.ndarray] = (), videos: Sequence[VideoWithMetadata] = (),
               max_new_tokens: int = 8, top_logprobs: int = 20) -> AnswerResult:
        """Greedy answer with Eq. 2 confidence (see :func:`answer_from_generation`)."""
        if mode in ("mc", "native") and num_choices < 2:
            raise ValueError(f"a multiple-choice answer needs at least 2 choices, got {num_choices}")
        gen = self.generate(prompt, images=images, videos=videos, max_new_tokens=max_new_tokens,
                            temperature=0.0, top_logprobs=top_logprobs)
        # The kind only: the identity names checkpoint paths and URLs, and answers reach programs.
        return answer_from_generation(gen, mode, num_choices, backend=self.name)


# --------------------------------------------------------------------------- OpenAI / vLLM


def encode_png(img: np.ndarray) -> str:
    """Base64 PNG of a uint8 RGB array (lossless)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def video_data_url(frames: np.ndarray) -> str:
    """vLLM's ``video/jpeg`` frame-sequence data URL. Despite the name, vLLM opens each frame
    with PIL, which detects the format, so PNG frames arrive lossless."""
    return "data:video/jpeg;base64," + ",".join(encode_png(f) for f in frames)


class OpenAIVLM(VLMBackend):
    """Chat completions against an OpenAI-compatible server (vLLM), with log-probs.

    ``vllm_extensions`` (default on) sends vLLM's extra request fields: the video metadata
    (``media_io_kwargs``), an explicit ``repetition_penalty`` of 1 (off, as in-process) and
    ``top_k`` when one is given (unset, the served checkpoint's ``generation_config.json`` value
    applies, as in-process). Turn it off
    for servers that reject unknown fields (images then still work; videos need vLLM).
    vLLM accepts per-request video metadata only when started with
    ``--trust-request-mm-kwargs``; without it, video requests fail with a message saying so.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str | None = None, api_key: str = "EMPTY",
                 timeout: float = 600.0, max_retries: int = 2, vllm_extensions: bool = True,
                 identity_refresh_s: float = 10.0) -> None:
        from openai import OpenAI

        self.base_url = base_url
        self.timeout = float(timeout)
        self.client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout,
                             max_retries=max_retries)
        self._model = model
        self.vllm_extensions = vllm_extensions
        self.identity_refresh_s = float(identity_refresh_s)
        self._served: tuple[float, str] | None = None  # (when read, what /v1/models said)
        self._served_lock = threading.Lock()

    @property
    def model(self) -> str:
        if not self._model:
            models = self.client.models.list().data
            if not models:
                raise RuntimeError(f"the server at {self.base_url} serves no model; pass model=")
            self._model = models[0].id
        return self._model

    def identity(self) -> str:
        """``openai:<model>@<base_url>#<served>``: ``<served>`` is what the server says it runs
        (vLLM's ``/v1/models`` ``root``, the checkpoint it loaded, and ``parent``), read again
        after ``identity_refresh_s``, so a checkpoint swapped behind the same URL and name is a
        different identity. A server that cannot be asked is ``#unreachable`` (not remembered):
        nothing the model answers can be cached under that identity, since it answers nothing."""
        served = self.served_weights()
        return f"openai:{self._model or '?'}@{self.base_url}#{served}"

    def served_weights(self) -> str:
        """What the server reports about the weights behind :attr:`model` (``root=...,parent=...``;
        ``unreported`` for servers whose model list carries neither; ``unreachable`` when the
        server does not answer, ``not-served`` when it does not list the model)."""
        with self._served_lock:
            now = time.monotonic()
            if self._served is not None and now - self._served[0] < self.identity_refresh_s:
                return self._served[1]
            try:
                models = self.client.with_options(timeout=min(10.0, self.timeout), max_retries=0).models.list().data
            except Exception as exc:  # noqa: BLE001 - an endpoint that is down has no identity to report
                logging.getLogger(__name__).warning("cannot ask %s which weights it serves: %s", self.base_url, exc)
                return "unreachable"
            if not self._model:
                if not models:
                    return "not-served"
                self._model = models[0].id
            entry = next((m for m in models if m.id == self._model), None)
            if entry is None:
                return "not-served"
            extra = dict(getattr(entry, "model_extra", None) or {})
            parts = [f"{k}={extra[k]}" for k in ("root", "parent") if extra.get(k) is not None]
            served = ",".join(parts) or "unreported"
            self._served = (now, served)
            return served

    def _messages(self, chat: list[dict[str, Any]], images: Sequence[np.ndarray],
                  videos: Sequence[VideoWithMetadata]) -> list[dict[str, Any]]:
        image_iter, video_iter = iter(images), iter(videos)
        out = []
        for m in chat:
            parts = []
            for part in m["content"]:
                if part["type"] == "image":
                    url = "data:image/png;base64," + encode_png(next(image_iter))
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                elif part["type"] == "video":
                    parts.append({"type": "video_url", "video_url": {"url": video_data_url(next(video_iter)[0])}})
                else:
                    parts.append(part)
            # Plain-string content for text-only turns keeps non-vLLM servers happy.
            if all(p["type"] == "text" for p in parts):
                out.append({"role": m["role"], "content": "".join(p["text"] for p in parts)})
            else:
                out.append({"role": m["role"], "content": parts})
        return out

    def generate(self, prompt: str | None = None, *, messages: Sequence[dict[str, Any]] | None = None,
                 images: Sequence[np.ndarray] = (), videos: Sequence[VideoWithMetadata] = (),
                 max_new_tokens: int = 512, temperature: float = 0.0, top_p: float | None = None,
                 top_k: int | None = None, top_logprobs: int = 0, seed: int | None = None) -> Generation:
        images = [_check_image(im, f"images[{i}]") for i, im in enumerate(images)]
        if len(videos) > 1:
            # vLLM's media_io_kwargs apply to every video of a request, so each video's own
            # metadata cannot be carried; one video per request is also what programs send.
            raise ValueError("OpenAIVLM sends at most one video per request")
        chat = build_chat(prompt, messages, len(images), len(videos))
        extra: dict[str, Any] = {}
        if self.vllm_extensions:
            # An omitted top_k (like an omitted top_p) takes the served checkpoint's default
            # (vLLM's --generation-config auto); the repetition penalty stays off on both backends.
            extra.update(repetition_penalty=1.0, skip_special_tokens=True)
            if top_k is not None:
                extra["top_k"] = int(top_k)
            if videos:
                frames, meta = videos[0]
                extra["media_io_kwargs"] = {"video": {
                    "num_frames": int(len(frames)), "fps": float(meta["fps"]),
                    "frames_indices": [int(i) for i in meta["frames_indices"]],
                    "total_num_frames": int(meta["total_num_frames"]),
                    "duration": float(meta["duration"]), "do_sample_frames": False}}
        kwargs: dict[str, Any] = dict(model=self.model, messages=self._messages(chat, images, videos),
                                      max_tokens=max_new_tokens, temperature=temperature,
                                      logprobs=True, extra_body=extra or None)
        if top_p is not None:
            kwargs["top_p"] = float(top_p)
        if top_logprobs:
            kwargs["top_logprobs"] = top_logprobs
        if seed is not None:
            kwargs["seed"] = seed
        client = self.client
        left = remaining_s()  # the sandbox execution's module-time budget, if any
        if left is not None:
            check_deadline("the VLM request")
            if left < self.timeout:
                client = client.with_options(timeout=left, max_retries=0)
        try:
            response = client.chat.completions.create(**kwargs)
        except Exception as exc:  # openai's errors; kept generic so the message is ours
            raise self._classify(exc, left) from exc
        check_deadline("the VLM request")
        choice = response.choices[0]
        entries = list(choice.logprobs.content or []) if choice.logprobs else []
        num_tokens = len(entries)
        stop_reason = (choice.model_extra or {}).get("stop_reason")
        # Stopped on an end-of-turn token (EOS: stop_reason None; a stop token id: int): vLLM
        # keeps that token in the log-probs; it is not part of the answer.
        if entries and choice.finish_reason == "stop" and (stop_reason is None or isinstance(stop_reason, int)):
            entries = entries[:-1]
        return Generation(
            text=choice.message.content or "",
            token_logprobs=[float(e.logprob) for e in entries],
            tokens=[e.token for e in entries],
            top_logprobs=[{t.token: float(t.logprob) for t in (e.top_logprobs or [])} for e in entries]
            if top_logprobs else [],
            num_tokens=num_tokens, finish_reason=choice.finish_reason or "")

    #: HTTP statuses that say the request itself was impossible (malformed, too large, beyond
    #: the context): when a module built it from a program's arguments, the program's fault.
    #: Others (401/403 auth, 404 no such model, 408/429 busy, 5xx) are the host's.
    PROGRAM_FAULT_STATUSES = frozenset({400, 413, 422})

    def _classify(self, exc: Exception, budget_left: float | None) -> Exception:
        """The exception to raise for a failed request (see :data:`PROGRAM_FAULT_STATUSES`)."""
        import openai

        if "media_io_kwargs" in str(exc):  # the server's configuration, not the request's content
            return RuntimeError(
                f"the server at {self.base_url} refuses per-request video metadata; start vLLM "
                "with --trust-request-mm-kwargs (videos are sent as pre-sampled frames whose "
                f"fps and frame indices travel in media_io_kwargs): {exc}")
        if isinstance(exc, openai.APITimeoutError) and budget_left is not None and budget_left < self.timeout:
            return ModuleBudgetExceeded(f"the VLM request was stopped after {budget_left:.1f} s: the execution's "
                                        "budget of host seconds in module calls ran out; make fewer or smaller "
                                        "module calls")
        status = getattr(exc, "status_code", None)
        if isinstance(exc, openai.APIStatusError) and status in self.PROGRAM_FAULT_STATUSES:
            return RequestRejectedError(f"the VLM endpoint refused the request these arguments made (HTTP {status}): "
                                        f"{_error_text(exc)}; pass smaller inputs (fewer frames, a shorter text, "
                                        "a smaller word_number)")
        return exc

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """The requests sent concurrently (the server batches them), replies in request order."""
        if len(requests) <= 1:
            return [self.generate(r.prompt, **r.kwargs()) for r in requests]
        from concurrent.futures import ThreadPoolExecutor

        # Each request in the caller's context (a copy each), so the module-time deadline applies.
        contexts = [contextvars.copy_context() for _ in requests]
        with ThreadPoolExecutor(max_workers=min(len(requests), 32)) as pool:
            return list(pool.map(lambda job: job[0].run(self.generate, job[1].prompt, **job[1].kwargs()),
                                 zip(contexts, requests)))


def _error_text(exc: Exception, limit: int = 500) -> str:
    """The server's own message from an openai API error (its JSON body), else ``str(exc)``."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message or exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- transformers


class TransformersVLM(VLMBackend):
    """A Qwen-VL (or any ``AutoModelForImageTextToText``) checkpoint run in-process.

    Loaded lazily, once per (checkpoint, device, dtype) per process."""

    name = "transformers"

    def __init__(self, checkpoint: str, device: str = "cpu", dtype: str = "auto") -> None:
        self.checkpoint = str(checkpoint)
        self.device = torch_device(device)
        self.dtype = dtype
        self._loaded: tuple[Any, Any] | None = None
        self._identity: Callable[[], str] | None = None

    @classmethod
    def from_model(cls, model: Any, processor: Any, identity: Callable[[], str],
                   checkpoint: str = "") -> TransformersVLM:
        """Answer with a model already in memory (e.g. the GRPO policy being trained, whose
        weights change every step). ``identity()`` must change whenever the weights do (the
        call cache is keyed by it); ``checkpoint`` (optional) names its base folder."""
        vlm = cls(checkpoint or getattr(model, "name_or_path", "") or "in-memory", device=str(model.device))
        vlm._loaded = (processor, model)
        vlm._identity = identity
        return vlm

    def identity(self) -> str:
        if self._identity is not None:
            return self._identity()
        return f"transformers:{self.checkpoint}:{weights_version(self.checkpoint)}"

    def _load(self):
        if self._loaded is not None:
            return self._loaded

        def build():
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor

            local = Path(self.checkpoint).is_dir()
            if self.dtype == "auto":
                dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
            else:
                dtype = getattr(torch, self.dtype)
            processor = AutoProcessor.from_pretrained(self.checkpoint, local_files_only=local)
            model = AutoModelForImageTextToText.from_pretrained(self.checkpoint, dtype=dtype,
                                                                local_files_only=local)
            return processor, model.to(self.device).eval()

        return load_once(("transformers-vlm", self.checkpoint, self.device, self.dtype), build)

    def generate(self, prompt: str | None = None, *, messages: Sequence[dict[str, Any]] | None = None,
                 images: Sequence[np.ndarray] = (), videos: Sequence[VideoWithMetadata] = (),
                 max_new_tokens: int = 512, temperature: float = 0.0, top_p: float | None = None,
                 top_k: int | None = None, top_logprobs: int = 0, seed: int | None = None) -> Generation:
        return self.generate_batch([GenerateRequest(
            prompt, messages, tuple(images), tuple(videos), max_new_tokens, temperature, top_p, top_k,
            top_logprobs, seed)])[0]

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """One ``model.generate`` per group of requests with the same decoding settings (left
        padding, one attention mask); a seeded sampling request runs alone (its seed sets the
        process's generator). Greedy replies equal :meth:`generate`'s one by one."""
        out: list[Generation | None] = [None] * len(requests)
        for indices in _decoding_groups(requests):
            for i, gen in zip(indices, self._generate_group([requests[i] for i in indices])):
                out[i] = gen
        return out  # type: ignore[return-value]

    def _generate_group(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        import torch
        from PIL import Image

        from inference.vlm_inputs import hf_video_kwargs

        first = requests[0]
        processor, model = self._load()
        texts: list[str] = []
        images: list[Any] = []
        videos: list[VideoWithMetadata] = []
        for r in requests:
            imgs = [_check_image(im, f"images[{i}]") for i, im in enumerate(r.images)]
            chat = build_chat(r.prompt, r.messages, len(imgs), len(r.videos))
            texts.append(processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
            images += [Image.fromarray(im) for im in imgs]
            videos += list(r.videos)
        tok = processor.tokenizer
        padding_side, tok.padding_side = tok.padding_side, "left"  # generation continues every row at its end
        try:
            inputs = processor(text=texts, images=images or None, **hf_video_kwargs(videos), padding=True,
                               return_tensors="pt").to(model.device)
        finally:
            tok.padding_side = padding_side
        gen_cfg = model.generation_config
        eos = gen_cfg.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        sampling: dict[str, Any] = {"do_sample": False}
        if first.temperature > 0:  # unset top_p/top_k: the checkpoint's own (as vLLM's --generation-config auto)
            sampling = {"do_sample": True, "temperature": first.temperature,
                        "top_p": float(first.top_p if first.top_p is not None else (gen_cfg.top_p or 1.0)),
                        "top_k": int(first.top_k if first.top_k is not None else (gen_cfg.top_k or 0))}
        if first.seed is not None:
            torch.manual_seed(first.seed)
        positions = _reference_positions(model, inputs)
        left = remaining_s()  # the sandbox execution's module-time budget, if any
        if left is not None:
            check_deadline("the VLM call")
            sampling["max_time"] = left  # generate stops at the deadline (checked per token)
        with torch.inference_mode():
            result = model.generate(**inputs, max_new_tokens=first.max_new_tokens, repetition_penalty=1.0,
                                    output_logits=True, return_dict_in_generate=True, **positions, **sampling)
        if left is not None and remaining_s() <= 0:  # cut by max_time: a partial reply is no answer
            raise ModuleBudgetExceeded(f"the VLM call was stopped after {left:.1f} s: the execution's budget of "
                                       "host seconds in module calls ran out; make fewer or smaller module calls")
        prompt_len = inputs["input_ids"].shape[1]
        logits = torch.stack(result.logits, dim=1).float()  # [batch, steps, V] raw logits
        return [self._reply(result.sequences[b, prompt_len:].tolist(), torch.log_softmax(logits[b], dim=-1),
                            eos_ids, first.top_logprobs, tok) for b in range(len(requests))]

    @staticmethod
    def _reply(ids: list[int], logprobs: Any, eos_ids: set[int], top_logprobs: int, tok: Any) -> Generation:
        """One row of a generate call: cut at its end-of-turn token (later positions are padding)."""
        import torch

        finish = "length"
        for i, tid in enumerate(ids):
            if tid in eos_ids:
                ids, finish = ids[: i + 1], "stop"
                break
        num_tokens = len(ids)
        answer_ids = ids[:-1] if finish == "stop" else ids
        token_logprobs = [float(logprobs[i, t]) for i, t in enumerate(answer_ids)]
        tops: list[dict[str, float]] = []
        if top_logprobs:
            values, indices = torch.topk(logprobs[: len(answer_ids)], k=top_logprobs, dim=-1)
            for vals, idxs in zip(values.tolist(), indices.tolist()):
                row: dict[str, float] = {}
                for v, t in zip(vals, idxs):
                    row.setdefault(tok.decode([t]), float(v))  # equal decoded texts: keep the likelier
                tops.append(row)
        # A reply cut inside a multi-byte character ends in U+FFFD here; vLLM's incremental
        # detokenizer holds such incomplete bytes back, so drop them to report the same text.
        return Generation(text=tok.decode(answer_ids, skip_special_tokens=True).rstrip("\ufffd"),
                          token_logprobs=token_logprobs, tokens=[tok.decode([t]) for t in answer_ids],
                          top_logprobs=tops, num_tokens=num_tokens, finish_reason=finish)


def _decoding_groups(requests: Sequence[GenerateRequest]) -> list[list[int]]:
    """Indices of ``requests`` grouped by decoding settings, in first-seen order; a seeded
    sampling request forms a group of its own (one generator per call)."""
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(requests):
        key: Any = (r.max_new_tokens, r.temperature, r.top_p, r.top_k, r.top_logprobs,
                    r.seed if r.temperature <= 0 else None)
        if r.temperature > 0 and r.seed is not None:
            key = ("seeded", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _reference_positions(model: Any, inputs: Any) -> dict[str, Any]:
    """``{"position_ids": ...}`` for ``generate`` on a Qwen2.5-VL prompt with images or videos:
    the reference M-RoPE positions (``inference.vlm_inputs.reference_mrope_position_ids``), which
    vLLM uses and SFT trains with, where transformers' own differ after a multi-patch video.
    In ``generate``'s ``[4, batch, seq]`` layout (text positions first); each new token then
    continues at the last position + 1, as in vLLM. ``{}`` for every other model or prompt."""
    import torch

    from inference.vlm_inputs import reference_mrope_position_ids

    if getattr(model.config, "model_type", None) != "qwen2_5_vl" or (
            inputs.get("video_grid_thw") is None and inputs.get("image_grid_thw") is None):
        return {}
    mrope = reference_mrope_position_ids(model, inputs)
    mask = inputs["attention_mask"]
    text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    return {"position_ids": torch.cat([text[None].to(mrope.device), mrope], dim=0)}


def weights_version(checkpoint: str) -> str:
    """A cheap fingerprint of local weights (file names, sizes, mtimes); the id for hub names."""
    import hashlib

    path = Path(checkpoint)
    if not path.is_dir():
        return checkpoint
    h = hashlib.sha1()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]
