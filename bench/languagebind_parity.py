"""Parity: our LanguageBind implementation vs the ``languagebind`` package (the reference).

The package needs ``transformers<5``, so it runs in its own throwaway environment; this
script runs in both and exchanges ``.npz`` files:

1. ``prepare`` (project environment): builds a random checkpoint in the published
   ``LanguageBind/LanguageBind_Video_FT`` layout (``--size tiny``: the test checkpoint;
   ``--size published``: random weights at the published dimensions, ViT-L/14 video tower of 24
   blocks with temporal attention over 8 frames, 12-block text tower, projection 768), a
   synthetic 10 s clip, and our outputs: token ids, text embeddings, the clip's 8 frames chosen
   and preprocessed our way (PyAV decoding), and video embeddings.
2. ``reference`` (package environment): the package's ``LanguageBindVideo`` /
   ``LanguageBindVideoTokenizer`` load the same folder; it tokenises the same texts, embeds
   them, embeds *our* pixel tensor (model parity) and runs its own video pipeline on the clip
   file (decord decoding + its transform with the random horizontal flip removed:
   preprocessing parity, then end-to-end).
3. ``compare`` (either): maximum absolute differences and cosine similarities, as JSON and
   as a Markdown table for docs/benchmarks.md.

``all`` runs the three, the middle one with ``--reference-python``::

    python bench/languagebind_parity.py all --work-dir /tmp/lb_parity \
        --reference-python /tmp/lb_env/bin/python --size tiny

Setting up the reference environment (once; it is not part of the project)::

    python3.11 -m venv /tmp/lb_env
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null /tmp/lb_env/bin/pip install \
        "transformers==4.44.2" "tokenizers<0.20" "huggingface_hub<0.26" "peft==0.12.0" \
        "accelerate==0.34.2" einops ftfy "numpy<2.3" safetensors decord opencv-python-headless \
        av fvcore iopath parameterized networkx pillow
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null /tmp/lb_env/bin/pip install --no-deps \
        languagebind==0.1.0 pytorchvideo==0.1.5
    # torch and torchvision of one build: PyPI's torchvision wheel is the CUDA build, so the
    # recorded run linked the project venv's torch/torchvision (2.13.0+cu130 / 0.28.0+cu130,
    # with their nvidia/, cuda/, triton/, torchgen/ folders) into /tmp/lb_env's site-packages.

Nothing here is installed into the project's environment, and the reference environment is
not part of the project.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

TEXTS = ["a red screen with a circle in the corner", "a ball moving from left to right",
         "the word river is written below", "a secret number flashes on a white screen", "hello"]
NUM_FRAMES = 8


# ----------------------------------------------------------------------------- project side

def _published_config(vocab_size: int) -> Any:
    from inference.backends.languagebind import (
        LanguageBindTextConfig,
        LanguageBindVideoConfig,
        LanguageBindVisionConfig,
    )

    return LanguageBindVideoConfig(
        text=LanguageBindTextConfig(vocab_size=vocab_size, hidden_size=768, intermediate_size=3072,
                                    num_hidden_layers=12, num_attention_heads=12, hidden_act="gelu",
                                    pad_token_id=vocab_size - 1, bos_token_id=vocab_size - 2,
                                    eos_token_id=vocab_size - 1),
        vision=LanguageBindVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                        num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu",
                                        add_time_attn=True, num_frames=NUM_FRAMES, lora_r=0),
        projection_dim=768)


def _build_checkpoint(folder: Path, size: str) -> Path:
    from inference.toy.checkpoints import build_tiny_languagebind, write_clip_tokenizer_files

    if size == "tiny":
        return build_tiny_languagebind(folder)
    import torch

    from inference.backends.languagebind import LanguageBindVideoModel

    if (folder / "pytorch_model.bin").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    config = _published_config(write_clip_tokenizer_files(folder))
    model = LanguageBindVideoModel(config).init_random(seed=0)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def prepare(work: Path, size: str) -> None:
    import torch

    from inference.backends.languagebind import (
        CONTEXT_LENGTH,
        load_languagebind_tokenizer,
        load_languagebind_video,
        preprocess_frames,
    )
    from inference.backends.retrieval import load_clip_frames
    from inference.toy.synthetic_video import generate_synthetic_video
    from inference.video_store import VideoStore

    work.mkdir(parents=True, exist_ok=True)
    ckpt = _build_checkpoint(work / f"languagebind_{size}", size)
    # 10 s at 8 fps, 320x180: a non-square frame (short-side scaling) with motion.
    clip = generate_synthetic_video(work / "video", duration_s=10.0, fps=8.0, size=(320, 180), seed=3).video_path
    tokenizer = load_languagebind_tokenizer(ckpt)
    model = load_languagebind_video(ckpt)
    batch = tokenizer(TEXTS, max_length=CONTEXT_LENGTH, padding="max_length", truncation=True, return_tensors="pt")
    frames = load_clip_frames(VideoStore(work / "clips"), str(clip), NUM_FRAMES, "linspace")
    pixels = preprocess_frames(frames)[None]
    with torch.inference_mode():
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"]).numpy()
        video = model.get_video_features(pixels).numpy()
    np.savez(work / "ours.npz", input_ids=batch["input_ids"].numpy(), attention_mask=batch["attention_mask"].numpy(),
             text=text, frames=frames, pixels=pixels.numpy(), video=video)
    (work / "ours.json").write_text(json.dumps({"checkpoint": str(ckpt), "clip": str(clip), "size": size,
                                                "versions": _versions()}, indent=2))
    print(f"prepared {work / 'ours.npz'} ({size} checkpoint {ckpt})")


# ----------------------------------------------------------------------------- reference side

def _import_reference() -> dict[str, Any]:
    """The package's video modules without its ``__init__`` (which imports every modality,
    audio included); ``functional_tensor`` is aliased for the torchvision the package predates."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("languagebind")
    if spec is None:
        raise SystemExit("the languagebind package is not installed in this environment")
    package = types.ModuleType("languagebind")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["languagebind"] = package
    import torchvision.transforms._functional_tensor as functional_tensor

    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional_tensor)
    from languagebind.video.modeling_video import LanguageBindVideo
    from languagebind.video.processing_video import get_video_transform, load_and_transform_video
    from languagebind.video.tokenization_video import LanguageBindVideoTokenizer

    return {"model": LanguageBindVideo, "tokenizer": LanguageBindVideoTokenizer,
            "transform": get_video_transform, "load": load_and_transform_video}


def reference(work: Path) -> None:
    import torch
    from torchvision.transforms import Compose

    ref = _import_reference()
    meta = json.loads((work / "ours.json").read_text())
    ours = np.load(work / "ours.npz")
    model = ref["model"].from_pretrained(meta["checkpoint"]).eval()
    tokenizer = ref["tokenizer"].from_pretrained(meta["checkpoint"])
    # LanguageBindVideoProcessor's text call: pad to 77, truncate.
    batch = tokenizer(TEXTS, max_length=77, padding="max_length", truncation=True, return_tensors="pt")
    transform = ref["transform"](model.config)
    assert type(transform.transforms[-1]).__name__ == "RandomHorizontalFlipVideo", transform
    deterministic = Compose(transform.transforms[:-1])  # inference without the random flip
    pixels = ref["load"](meta["clip"], deterministic, video_decode_backend="decord", num_frames=NUM_FRAMES)[None]
    with torch.inference_mode():
        text = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).numpy()
        video_our_pixels = model.get_image_features(pixel_values=torch.from_numpy(ours["pixels"])).numpy()
        video_end_to_end = model.get_image_features(pixel_values=pixels).numpy()
    np.savez(work / "reference.npz", input_ids=batch["input_ids"].numpy(),
             attention_mask=batch["attention_mask"].numpy(), text=text, pixels=pixels.numpy(),
             video_our_pixels=video_our_pixels, video_end_to_end=video_end_to_end)
    (work / "reference.json").write_text(json.dumps({"versions": _versions()}, indent=2))
    print(f"reference written to {work / 'reference.npz'}")


# ----------------------------------------------------------------------------- comparison

def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return float((a * b).sum(-1).min())


def compare(work: Path) -> dict[str, Any]:
    ours, ref = np.load(work / "ours.npz"), np.load(work / "reference.npz")
    meta = json.loads((work / "ours.json").read_text())
    result = {
        "size": meta["size"],
        "token_ids_equal": bool((ours["input_ids"] == ref["input_ids"]).all()
                                and (ours["attention_mask"] == ref["attention_mask"]).all()),
        "text_max_abs_diff": float(np.abs(ours["text"] - ref["text"]).max()),
        "text_min_cosine": _cos(ours["text"], ref["text"]),
        "text_embedding_max_abs": float(np.abs(ref["text"]).max()),
        "video_max_abs_diff": float(np.abs(ours["video"] - ref["video_our_pixels"]).max()),
        "video_min_cosine": _cos(ours["video"], ref["video_our_pixels"]),
        "video_embedding_max_abs": float(np.abs(ref["video_our_pixels"]).max()),
        "pixels_max_abs_diff": float(np.abs(ours["pixels"] - ref["pixels"]).max()),
        "pixels_mean_abs_diff": float(np.abs(ours["pixels"] - ref["pixels"]).mean()),
        "end_to_end_video_max_abs_diff": float(np.abs(ours["video"] - ref["video_end_to_end"]).max()),
        "end_to_end_video_cosine": _cos(ours["video"], ref["video_end_to_end"]),
        "versions_ours": meta["versions"],
        "versions_reference": json.loads((work / "reference.json").read_text())["versions"],
    }
    (work / "parity.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print()
    print("| quantity | max abs diff | min cosine |")
    print("|---|---|---|")
    print(f"| text embeddings ({len(TEXTS)} texts; token ids equal: {result['token_ids_equal']}) "
          f"| {result['text_max_abs_diff']:.2e} | {result['text_min_cosine']:.7f} |")
    print(f"| video embedding, same pixel input | {result['video_max_abs_diff']:.2e} "
          f"| {result['video_min_cosine']:.7f} |")
    print(f"| preprocessed pixels (ours: PyAV; reference: decord + its transform, no flip) "
          f"| {result['pixels_max_abs_diff']:.2e} (mean {result['pixels_mean_abs_diff']:.2e}) | |")
    print(f"| video embedding end to end (clip file in) | {result['end_to_end_video_max_abs_diff']:.2e} "
          f"| {result['end_to_end_video_cosine']:.7f} |")
    return result


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "transformers", "tokenizers", "languagebind", "decord", "av", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("prepare", "reference", "compare", "all"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/languagebind_parity"))
    parser.add_argument("--size", choices=("tiny", "published"), default="tiny")
    parser.add_argument("--reference-python", default="/tmp/lb_env/bin/python",
                        help="python of the environment with the languagebind package (for 'all')")
    args = parser.parse_args(argv)
    work = args.work_dir / args.size
    if args.step in ("prepare", "all"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        prepare(work, args.size)
    if args.step == "reference":
        reference(work)
    if args.step == "all":
        subprocess.run([args.reference_python, __file__, "reference", "--work-dir", str(args.work_dir),
                        "--size", args.size], check=True)
    if args.step in ("compare", "all"):
        compare(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
