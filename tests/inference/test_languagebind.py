"""The native LanguageBind retriever on the tiny checkpoint in the published layout.

Parity with the ``languagebind`` package itself is checked by bench/languagebind_parity.py
(its own environment; result in docs/benchmarks.md). Here: the published layout loads with
strict key matching, LanguageBind's preprocessing, shapes and determinism, and retrieval
through ``get_informative_clips`` (cached or recomputed) ranking first the clip whose frames
show what the query describes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.backends import clear_loaded
from inference.backends.languagebind import (
    LanguageBindCheckpointError,
    LanguageBindVideoConfig,
    LanguageBindVideoModel,
    frame_indices,
    load_languagebind_tokenizer,
    load_languagebind_video,
    load_state_dict_strict,
    preprocess_frames,
)
from inference.backends.retrieval import LanguageBindRetriever, load_clip_frames
from inference.toy.synthetic_video import generate_synthetic_video
from inference.video_store import VideoStore


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_published_layout_loads_strictly(tiny_languagebind: Path, tmp_path: Path):
    config = json.loads((tiny_languagebind / "config.json").read_text())
    assert config["model_type"] == "LanguageBindVideo"
    assert config["vision_config"]["add_time_attn"] is True and config["vision_config"]["num_frames"] == 8
    state = torch.load(tiny_languagebind / "pytorch_model.bin", weights_only=True)
    for key in ("text_model.embeddings.token_embedding.weight", "text_model.final_layer_norm.weight",
                "vision_model.embeddings.class_embedding", "vision_model.pre_layrnorm.weight",
                "vision_model.encoder.layers.1.temporal_embedding",
                "vision_model.encoder.layers.1.temporal_attn.q_proj.weight",
                "vision_model.encoder.layers.1.temporal_layer_norm1.bias", "vision_model.post_layernorm.weight",
                "visual_projection.weight", "text_projection.weight", "logit_scale"):
        assert key in state, key
    model = LanguageBindVideoModel(LanguageBindVideoConfig.from_pretrained(tiny_languagebind))
    # transformers-4 checkpoints also carry position_ids buffers: accepted.
    load_state_dict_strict(model, {**state, "vision_model.embeddings.position_ids": torch.arange(50)[None]}, "x")

    renamed = dict(state)
    renamed["vision_model.encoder.layers.0.time_attn.q_proj.weight"] = renamed.pop(
        "vision_model.encoder.layers.0.temporal_attn.q_proj.weight")
    with pytest.raises(LanguageBindCheckpointError, match=r"missing keys: .*temporal_attn\.q_proj\.weight.*"
                                                          r"unexpected keys: .*time_attn\.q_proj\.weight"):
        load_state_dict_strict(model, renamed, "renamed")
    lora = {**state, "vision_model.encoder.base_model.model.layers.0.temporal_attn.q_proj.lora_A.weight":
            torch.zeros(2, 32)}
    with pytest.raises(LanguageBindCheckpointError, match="LoRA weights"):
        load_state_dict_strict(model, lora, "lora")
    wide = {**state, "text_projection.weight": torch.zeros(16, 33)}
    with pytest.raises(LanguageBindCheckpointError, match=r"shape mismatches: text_projection\.weight"):
        load_state_dict_strict(model, wide, "wide")

    # Configs that are not the supported video model say so, naming the fix.
    bad = _copy(tiny_languagebind, tmp_path / "lora_cfg")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["vision_config"]["lora_r"] = 16
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LanguageBindCheckpointError, match="LanguageBind_Video_FT"):
        load_languagebind_video(bad)
    cfg["model_type"] = "clip"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LanguageBindCheckpointError, match="clip_retriever='clip'"):
        load_languagebind_video(bad)
    (bad / "pytorch_model.bin").unlink()
    cfg["model_type"] = "LanguageBindVideo"
    cfg["vision_config"]["lora_r"] = 0
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LanguageBindCheckpointError, match="holds no weights"):
        load_languagebind_video(bad)


def test_legacy_config_dict_entries_override_as_in_languagebind():
    config = LanguageBindVideoConfig.from_dict({
        "model_type": "LanguageBindVideo", "projection_dim": 768,
        "text_config": {"hidden_size": 512, "num_hidden_layers": 12},
        "text_config_dict": {"hidden_size": 768},
        "vision_config": {"hidden_size": 768, "patch_size": 32},
        "vision_config_dict": {"hidden_size": 1024, "patch_size": 14, "add_time_attn": True, "num_frames": 8,
                               "lora_r": 0}})
    assert (config.text.hidden_size, config.text.num_hidden_layers) == (768, 12)
    assert (config.vision.hidden_size, config.vision.patch_size, config.vision.num_frames) == (1024, 14, 8)
    assert config.vision.add_time_attn and config.vision.lora_r == 0 and config.projection_dim == 768
    # Without lora_r the package's default (2) applies: a LoRA model, refused natively.
    with pytest.raises(LanguageBindCheckpointError, match="lora_r is 2"):
        LanguageBindVideoConfig.from_dict({"vision_config": {"add_time_attn": True}}).check_supported()


def test_languagebind_preprocessing_and_frame_choice():
    assert frame_indices(80, 8) == [0, 11, 22, 33, 45, 56, 67, 79]  # decord backend: linspace, truncated
    assert frame_indices(3, 8) == [0, 0, 0, 0, 1, 1, 1, 2]          # short clips repeat frames
    frames = np.zeros((8, 180, 320, 3), np.uint8)
    frames[:, :, :160] = (255, 0, 0)   # left half red, right half blue
    frames[:, :, 160:] = (0, 0, 255)
    x = preprocess_frames(frames)
    assert x.shape == (3, 8, 224, 224) and x.dtype == torch.float32
    # Short side 180 -> 224, long side floor(320 * 224 / 180) = 398, centre crop at column 87.
    red = (1.0 - 0.48145466) / 0.26862954
    assert x[0, 0, 112, 0].item() == pytest.approx(red, abs=1e-5)
    assert x[0, 0, 112, 223].item() == pytest.approx(-0.48145466 / 0.26862954, abs=1e-5)
    boundary = 398 // 2 - 87  # where the halves meet after scaling and cropping
    assert x[2, 0, 50, boundary - 3].item() < 0 < x[2, 0, 50, boundary + 3].item()
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        preprocess_frames(np.zeros((8, 32, 32), np.uint8))


def test_embeddings_shapes_determinism_and_frame_count(tiny_languagebind: Path):
    retriever = LanguageBindRetriever(str(tiny_languagebind), device="cpu")
    assert retriever.num_frames == 8 and retriever.frame_sampling == "linspace"
    texts = ["a red screen with a circle", "a ball moving from left to right", "hello"]
    emb = retriever.embed_texts(texts)
    assert emb.shape == (3, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb[1:2], retriever.embed_texts(texts[1:2]), atol=1e-6)  # batch composition: no effect
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (8, 120, 160, 3), dtype=np.uint8) for _ in range(3)]
    video = retriever.embed_clips(clips)
    assert video.shape == (3, 16) and np.allclose(np.linalg.norm(video, axis=1), 1.0, atol=1e-5)
    # The temporal attention is live: reversing a clip's frames changes its embedding.
    assert not np.allclose(retriever.embed_clips([clips[0][::-1]])[0], video[0], atol=1e-4)
    clear_loaded()  # a fresh load gives the same numbers
    again = LanguageBindRetriever(str(tiny_languagebind), device="cpu")
    assert np.array_equal(again.embed_texts(texts), emb) and np.array_equal(again.embed_clips(clips), video)
    with pytest.raises(ValueError, match="set frames_per_clip=8"):
        again.embed_clips([clips[0][:4]])
    tokenizer = load_languagebind_tokenizer(tiny_languagebind)
    ids = tokenizer(["a red screen"], max_length=77, padding="max_length", truncation=True)["input_ids"][0]
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert len(ids) == 77 and eot == len(tokenizer) - 1 and ids[-1] == eot  # padded with end-of-text


def _aligned_checkpoint(tiny: Path, out: Path, video, captions: list[str]) -> Path:
    """A copy of the tiny checkpoint whose text projection maps each caption exactly onto the
    video embedding of its scene, fitted on frames decoded from the *source* video around the
    scene's middle (not the clip files, nor LanguageBind's frame positions)."""
    _copy(tiny, out)
    model = load_languagebind_video(out)
    tokenizer = load_languagebind_tokenizer(out)
    store = VideoStore(out / "fit_clips")
    with torch.no_grad():
        windows = [store.decode_window(str(video.video_path), 8, s.start + 2, s.end - 2)[0] for s in video.scenes]
        pixels = torch.stack([preprocess_frames(w) for w in windows])
        targets = model.get_video_features(pixels)                                   # K x P
        batch = tokenizer(captions, max_length=77, padding="max_length", truncation=True, return_tensors="pt")
        pooled = model.text_model(batch["input_ids"], batch["attention_mask"])       # K x D
        weight = targets.T @ torch.linalg.pinv(pooled.T)                             # P x D, exact for K <= D
    state = torch.load(out / "pytorch_model.bin", weights_only=True)
    state["text_projection.weight"] = weight.contiguous()
    torch.save(state, out / "pytorch_model.bin")
    return out


def test_retrieval_ranks_the_clip_showing_the_query_cached_or_recomputed(tiny_languagebind, module_runtime,
                                                                         tmp_path):
    # One scene per 10-s clip, so "the clip showing scene k" is clip k; four different backgrounds
    # (a random tower tells colours apart, not small shapes).
    video = generate_synthetic_video(tmp_path / "video", duration_s=40.0, scene_len_s=10.0, seed=2)
    assert len({s.colour for s in video.scenes}) == len(video.scenes) == 4
    captions = [f"a {s.colour} screen with a {s.shape_colour} {s.shape}" for s in video.scenes]
    aligned = _aligned_checkpoint(tiny_languagebind, tmp_path / "aligned", video, captions)
    rt = module_runtime(clip_retriever="languagebind", clip_model=str(aligned))
    v = str(video.video_path)
    results = [rt.get_informative_clips(v, caption, top_k=4) for caption in captions]
    for k, (intervals, paths) in enumerate(results):
        assert intervals[0] == (10.0 * k, 10.0 * (k + 1)), (captions[k], intervals)
        assert len(set(paths)) == 4
    assert rt.embedding_cache.computed == 1
    clips = rt.store.split_clips(v)
    cache_file = rt.embedding_cache.path_for(rt.store.video_id(v), rt.retriever, 8)
    with np.load(cache_file) as data:
        stored = np.array(data["embeddings"])
    # What was cached is LanguageBind's own frame choice: linspace over each clip's frames.
    direct = rt.retriever.embed_clips([load_clip_frames(rt.store, c.path, 8, "linspace") for c in clips])
    assert np.allclose(stored, direct, atol=1e-6)
    # Same answers from the on-disk cache (nothing embedded) and from scratch (fresh clip folder).
    cached = module_runtime(clip_retriever="languagebind", clip_model=str(aligned), clip_dir=rt.config.clip_dir)
    assert [cached.get_informative_clips(v, c, top_k=4) for c in captions] == results
    assert cached.embedding_cache.computed == 0
    clear_loaded()
    fresh = module_runtime(clip_retriever="languagebind", clip_model=str(aligned))
    assert [fresh.get_informative_clips(v, c, top_k=4)[0] for c in captions] == [r[0] for r in results]
    assert fresh.embedding_cache.computed == 1
    # The retriever is part of the module-call cache key, before and after it is built.
    assert fresh.identity()["retriever"] == f"languagebind:{aligned}-f8"
