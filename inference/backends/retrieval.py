"""Clip retriever: text-to-clip similarity with LanguageBind (the paper) or any CLIP-style
model through transformers, and the per-video clip-embedding cache.

A retriever embeds each fixed-length clip from ``frames_per_clip`` uniformly sampled frames and
embeds text queries into the same space. :class:`ClipEmbeddingCache` stores a video's clip
embeddings under ``<clip_dir>/<video_id>/embeddings/`` keyed by the retriever's identity and
sampling settings, so a video is embedded once per model, whatever program asks.
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
    """What the clip cache and ``get_informative_clips`` need from a retrieval model."""

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
    ...). A clip's embedding is the normalised mean of its frames' image embeddings.

    The tokenizer and image processor are loaded separately (``AutoTokenizer`` and
    ``AutoImageProcessor``) so that any tokenizer shipped with the checkpoint works.
    """

    name = "clip"

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
    """LanguageBind_Video (the paper's retriever) through the ``languagebind`` package.

    The package pins ``transformers<5``, so it cannot share an environment with this
    project's transformers 5 stack; install it in a separate environment (e.g. a retrieval
    service) or use :class:`CLIPStyleRetriever`. Frames are preprocessed here exactly like
    LanguageBind's own video transform (short side 224, centre crop 224, OpenAI CLIP
    mean/std) minus its random horizontal flip, which has no place at inference.
    """

    name = "languagebind"
    MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

    def __init__(self, model: str = "LanguageBind/LanguageBind_Video_FT", device: str = "cpu") -> None:
        self.model_name = model
        self.model_path = resolve_model(model)
        self.device = torch_device(device)

    def identity(self) -> str:
        return f"languagebind:{self.model_name}"

    def _load(self):
        def build():
            try:
                from languagebind import LanguageBindVideo, LanguageBindVideoTokenizer
            except ImportError as exc:
                raise ImportError("clip_retriever='languagebind' needs the languagebind package "
                                  "(pip install languagebind; it requires transformers<5), or set "
                                  "clip_retriever='clip' with a CLIP-style clip_model") from exc
            model = LanguageBindVideo.from_pretrained(self.model_path).to(self.device).eval()
            tokenizer = LanguageBindVideoTokenizer.from_pretrained(self.model_path)
            return tokenizer, model

        return load_once(("languagebind", self.model_path, self.device), build)

    def _preprocess(self, frames: np.ndarray) -> Any:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2).float() / 255.0  # T,C,H,W
        h, w = x.shape[-2:]
        scale = 224.0 / min(h, w)
        x = F.interpolate(x, size=(max(224, round(h * scale)), max(224, round(w * scale))),
                          mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        top, left = (h - 224) // 2, (w - 224) // 2
        x = x[:, :, top:top + 224, left:left + 224]
        x = (x - torch.from_numpy(self.MEAN)[:, None, None]) / torch.from_numpy(self.STD)[:, None, None]
        return x.permute(1, 0, 2, 3)  # C,T,H,W as LanguageBind expects

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        _, model = self._load()
        rows = []
        for clip in clips:
            pixels = self._preprocess(clip)[None].to(self.device)
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
