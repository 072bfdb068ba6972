"""Clip retriever: text-to-clip similarity with LanguageBind (the paper; native, or through the
``languagebind`` package) or any CLIP-style model through transformers, and the per-video
clip-embedding cache.

A retriever embeds each fixed-length clip from ``frames_per_clip`` frames of it (chosen by
its ``frame_sampling``, :func:`load_clip_frames`) and embeds text queries into the same space.
:class:`ClipEmbeddingCache` stores a video's clip embeddings under
``<clip_dir>/<video_id>/embeddings/`` keyed by the retriever's identity and sampling settings,
so a video is embedded once per model, whatever program asks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.backends import load_once, resolve_model, torch_device


class ClipRetriever(Protocol):
    """What the clip cache and ``get_informative_clips`` need from a retrieval model.

    ``frame_sampling`` (optional, default ``"uniform"``) names how a clip's frames are chosen
    (:func:`load_clip_frames`).
    """

    name: str

    def identity(self) -> str: ...

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """One L2-normalised row per clip (each clip: uint8 frames ``[T, H, W, 3]``)."""

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class CLIPStyleRetriever:
    """Any transformers model with ``get_text_features``/``get_image_features`` (CLIP, SigLIP,
    ...). A clip's embedding is the normalised mean of its frames' image embeddings; frames are
    the centres of ``frames_per_clip`` equal segments of the clip.

    The tokenizer and image processor are loaded separately (``AutoTokenizer`` and
    ``AutoImageProcessor``) so that any tokenizer shipped with the checkpoint works.
    """

    name = "clip"
    frame_sampling = "uniform"

    def __init__(self, model: str = "openai/clip-vit-base-patch32", device: str = "cpu",
                 batch_size: int = 32) -> None:
        self.model_name = model
        self.model_path = resolve_model(model)
        self.device = torch_device(device)
        self.batch_size = batch_size

    def identity(self) -> str:
        return f"clip:{self.model_name}"

    def _load(self):
        def build():
            from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

            local = Path(self.model_path).is_dir()
            tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=local)
            image_processor = AutoImageProcessor.from_pretrained(self.model_path, local_files_only=local)
            model = AutoModel.from_pretrained(self.model_path, local_files_only=local)
            return tokenizer, image_processor, model.to(self.device).eval()

        return load_once(("clip-retriever", self.model_path, self.device), build)

    @staticmethod
    def _features(output: Any) -> Any:
        # transformers 5 returns a model output whose pooler_output holds the projected
        # features; older versions return the tensor itself.
        return output if hasattr(output, "shape") else output.pooler_output

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokenizer, _, model = self._load()
        max_len = getattr(getattr(model.config, "text_config", None), "max_position_embeddings", 77)
        rows = []
        for i in range(0, len(texts), self.batch_size):
            batch = tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                              max_length=max_len, return_tensors="pt").to(self.device)
            batch.pop("token_type_ids", None)
            with torch.inference_mode():
                rows.append(self._features(model.get_text_features(**batch)).float().cpu().numpy())
        return _normalise(np.concatenate(rows)) if rows else np.zeros((0, 0), np.float32)

    def _embed_images(self, images: np.ndarray) -> np.ndarray:
        import torch

        _, image_processor, model = self._load()
        rows = []
        for i in range(0, len(images), self.batch_size):
            pixels = image_processor(images=list(images[i:i + self.batch_size]), return_tensors="pt")
            with torch.inference_mode():
                feats = model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
            rows.append(self._features(feats).float().cpu().numpy())
        return _normalise(np.concatenate(rows))

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        if not clips:
            return np.zeros((0, 0), np.float32)
        counts = [len(c) for c in clips]
        frame_emb = self._embed_images(np.concatenate(list(clips)))
        out, pos = [], 0
        for n in counts:
            out.append(frame_emb[pos:pos + n].mean(axis=0))
            pos += n
        return _normalise(np.stack(out))


class LanguageBindRetriever:
    """LanguageBind_Video (the paper's retriever), in-process on this project's torch /
    transformers 5 stack: our implementation of LanguageBind's video and text towers
    (:mod:`inference.backends.languagebind`) loading the published checkpoint layout
    (``LanguageBind/LanguageBind_Video_FT``: config, weight names and tokenizer as published).

    A clip is embedded from ``num_frames`` (8) frames taken at LanguageBind's frame positions
    (``linspace`` over the clip's frames, :attr:`frame_sampling`) and preprocessed as its video
    transform does (224 crop, OpenAI-CLIP normalisation); ``frames_per_clip`` must equal the
    checkpoint's ``num_frames``.
    """

    name = "languagebind"
    frame_sampling = "linspace"

    def __init__(self, model: str = "LanguageBind/LanguageBind_Video_FT", device: str = "cpu",
                 batch_size: int = 4) -> None:
        self.model_name = model
        self.model_path = resolve_model(model)
        self.device = torch_device(device)
        self.batch_size = batch_size

    def identity(self) -> str:
        return f"languagebind:{self.model_name}"

    def _folder(self) -> Path:
        return load_once(("languagebind-folder", self.model_path), lambda: _checkpoint_folder(self.model_path))

    def _load(self):
        def build():
            from inference.backends.languagebind import load_languagebind_tokenizer, load_languagebind_video

            folder = self._folder()
            return load_languagebind_tokenizer(folder), load_languagebind_video(folder, device=self.device)

        return load_once(("languagebind-native", self.model_path, self.device), build)

    @property
    def num_frames(self) -> int:
        """Frames per clip the checkpoint's video tower takes (``vision_config.num_frames``)."""
        from inference.backends.languagebind import LanguageBindVideoConfig

        config = load_once(("languagebind-config", self.model_path),
                           lambda: LanguageBindVideoConfig.from_pretrained(self._folder()))
        return int(config.vision.num_frames)

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        from inference.backends.languagebind import preprocess_frames

        if not clips:
            return np.zeros((0, 0), np.float32)
        want = self.num_frames
        for clip in clips:
            if len(clip) != want:
                raise ValueError(f"LanguageBind checkpoint {self.model_name!r} embeds exactly {want} frames per "
                                 f"clip (vision_config.num_frames), got {len(clip)}: set frames_per_clip={want}")
        _, model = self._load()
        rows = []
        for i in range(0, len(clips), self.batch_size):
            pixels = torch.stack([preprocess_frames(c) for c in clips[i:i + self.batch_size]]).to(self.device)
            with torch.inference_mode():
                rows.append(model.get_video_features(pixels).float().cpu().numpy())
        return _normalise(np.concatenate(rows))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        from inference.backends.languagebind import CONTEXT_LENGTH

        tokenizer, model = self._load()
        if not texts:
            return np.zeros((0, 0), np.float32)
        # As LanguageBind's processor: pad to the full context, truncate longer texts.
        batch = tokenizer(list(texts), max_length=CONTEXT_LENGTH, padding="max_length", truncation=True,
                          return_tensors="pt")
        with torch.inference_mode():
            feats = model.get_text_features(batch["input_ids"].to(self.device),
                                            batch["attention_mask"].to(self.device))
        return _normalise(feats.float().cpu().numpy())


def _checkpoint_folder(model: str) -> Path:
    """A local folder for ``model``: the folder itself, else a hub snapshot (config, tokenizer and
    weights only; safetensors preferred, ``pytorch_model.bin`` as published otherwise)."""
    path = Path(model)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    base = ["config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]
    try:
        folder = Path(snapshot_download(model, allow_patterns=base + ["*.safetensors", "*.safetensors.index.json"]))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(model, allow_patterns=base + ["pytorch_model*.bin",
                                                                          "pytorch_model.bin.index.json"]))
    except Exception as exc:  # offline without a cached snapshot, unknown repo, no network
        raise OSError(f"clip_model {model!r} is neither a local folder nor a reachable hub checkpoint ({exc}); "
                      "download it (huggingface-cli download LanguageBind/LanguageBind_Video_FT) and pass the "
                      "folder") from exc
    return folder


class LanguageBindPackageRetriever:
    """LanguageBind_Video through the ``languagebind`` package (``clip_retriever:
    languagebind_package``), an alternative to the native :class:`LanguageBindRetriever`.

    The package pins ``transformers<5``, so it cannot share an environment with this
    project's transformers 5 stack; use it in a separate environment. Frames are chosen and
    preprocessed as for the native retriever (LanguageBind's own transform without its
    random horizontal flip, which has no place at inference).
    """

    name = "languagebind_package"
    frame_sampling = "linspace"

    def __init__(self, model: str = "LanguageBind/LanguageBind_Video_FT", device: str = "cpu") -> None:
        self.model_name = model
        self.model_path = resolve_model(model)
        self.device = torch_device(device)

    def identity(self) -> str:
        return f"languagebind_package:{self.model_name}"

    def _load(self):
        def build():
            try:
                from languagebind import LanguageBindVideo, LanguageBindVideoTokenizer
            except ImportError as exc:
                raise ImportError("clip_retriever='languagebind_package' needs the languagebind package "
                                  "(pip install languagebind; it requires transformers<5); "
                                  "clip_retriever='languagebind' runs the same model natively") from exc
            model = LanguageBindVideo.from_pretrained(self.model_path).to(self.device).eval()
            tokenizer = LanguageBindVideoTokenizer.from_pretrained(self.model_path)
            return tokenizer, model

        return load_once(("languagebind-package", self.model_path, self.device), build)

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        from inference.backends.languagebind import preprocess_frames

        _, model = self._load()
        rows = []
        for clip in clips:
            pixels = preprocess_frames(clip)[None].to(self.device)  # 1, C, T, H, W as LanguageBind expects
            with torch.inference_mode():
                rows.append(model.get_image_features(pixel_values=pixels).float().cpu().numpy())
        return _normalise(np.concatenate(rows)) if rows else np.zeros((0, 0), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokenizer, model = self._load()
        batch = tokenizer(list(texts), max_length=77, padding="max_length", truncation=True,
                          return_tensors="pt").to(self.device)
        with torch.inference_mode():
            feats = model.get_text_features(input_ids=batch["input_ids"],
                                            attention_mask=batch["attention_mask"])
        return _normalise(feats.float().cpu().numpy())


def load_clip_frames(store: Any, clip_path: str, num_frames: int, sampling: str = "uniform") -> np.ndarray:
    """``[num_frames, H, W, 3]`` uint8 frames of one clip file for embedding.

    ``sampling``: ``"uniform"`` — the centres of ``num_frames`` equal segments
    (``VideoStore.sample_frames``; fewer frames for a clip shorter than that); ``"linspace"`` —
    LanguageBind's choice, frames ``linspace(0, n - 1, num_frames)`` of the clip's ``n`` frames,
    first and last included (repeated for a clip of fewer frames).
    """
    if sampling == "uniform":
        return store.decode_window(clip_path, num_frames)[0]
    if sampling != "linspace":
        raise ValueError(f"frame sampling {sampling!r}: expected 'uniform' or 'linspace'")
    from inference.backends.languagebind import frame_indices
    from inference.types import Frame

    info = store.probe(clip_path)
    indices = frame_indices(max(1, int(info.num_frames)), num_frames)
    frames = [Frame(source=str(clip_path), time=round(i / info.fps, 6), video_time=round(i / info.fps, 6))
              for i in indices]
    return np.stack(store.load_frames(frames))


def _safe_name(text: str) -> str:
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-60:].strip("_.") + "-" + digest


class ClipEmbeddingCache:
    """Per-video clip embeddings on disk, next to the clip cache.

    File: ``<clip_dir>/<video_id>/embeddings/<retriever identity>-<frames per clip>.npz``
    holding ``embeddings`` and the clip ``starts``/``ends``/``paths`` they were computed for;
    a cache whose clips no longer match the clip manifest is recomputed.
    """

    def __init__(self, clip_dir: str | Path) -> None:
        self.clip_dir = Path(clip_dir)
        self.computed = 0  # number of times embeddings were computed (not read from disk)

    def path_for(self, video_id: str, retriever: ClipRetriever, frames_per_clip: int) -> Path:
        key = _safe_name(f"{retriever.identity()}-f{frames_per_clip}")
        return self.clip_dir / video_id / "embeddings" / f"{key}.npz"

    def get(self, video_id: str, clips: Sequence[Any], retriever: ClipRetriever, frames_per_clip: int,
            load_clip_frames: Callable[[Any], np.ndarray]) -> np.ndarray:
        """Embeddings ``[len(clips), D]`` for ``clips`` (objects with ``path``, ``start``,
        ``end``), loaded from disk when the stored ones match, else computed and stored."""
        path = self.path_for(video_id, retriever, frames_per_clip)
        starts = np.array([float(c.start) for c in clips])
        ends = np.array([float(c.end) for c in clips])
        names = np.array([Path(str(c.path)).name for c in clips])
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    if (len(data["starts"]) == len(clips) and np.allclose(data["starts"], starts)
                            and np.allclose(data["ends"], ends) and (data["names"] == names).all()
                            and str(data["identity"]) == retriever.identity()):
                        return np.array(data["embeddings"])
            except (OSError, KeyError, ValueError):
                pass  # unreadable or from an older layout: recompute below
        embeddings = retriever.embed_clips([load_clip_frames(c) for c in clips])
        self.computed += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
        np.savez(tmp, embeddings=embeddings, starts=starts, ends=ends, names=names,
                 identity=np.array(retriever.identity()),
                 meta=np.array(json.dumps({"frames_per_clip": frames_per_clip})))
        tmp.replace(path)  # atomic: concurrent writers never leave a torn file
        return embeddings
