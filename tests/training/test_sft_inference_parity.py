"""Training and inference give the policy the same input (DESIGN.md §4): the SFT data path and
the runner (``ModuleRuntime.video_inputs``) sample and resize a video identically, and the SFT
forward pass of Qwen2.5-VL uses the M-RoPE positions vLLM serves with."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from inference.modules import ModuleConfig, ModuleRuntime
from inference.video_sampling import FRAME_POLICY_FIELDS, FramePolicy, VideoSampling
from inference.vlm_inputs import reference_mrope_position_ids
from tests.training.conftest import TINY_OVERRIDES, make_rows, write_rows
from training.common.model import load_processor
from training.common.video import VideoLoader, process_video
from training.sft.config import SFTConfig
from training.sft.data import SFTCollator
from training.sft.trainer import build_datasets, build_model, build_trainer, training_arguments

VIDEO_FIELDS = FRAME_POLICY_FIELDS


def test_sft_and_module_configs_share_the_frame_policy():
    # One declaration: both stage configs inherit the frame-policy fields from FramePolicy.
    assert issubclass(SFTConfig, FramePolicy) and issubclass(ModuleConfig, FramePolicy)
    assert VIDEO_FIELDS == ("video_fps", "video_min_frames", "video_max_frames", "video_min_pixels",
                            "video_max_pixels", "video_frame_rule", "video_pixel_rule")
    sft, modules = SFTConfig(), ModuleConfig()
    assert {f: getattr(sft, f) for f in VIDEO_FIELDS} == {f: getattr(modules, f) for f in VIDEO_FIELDS}
    assert sft.video_sampling() == modules.video_sampling() == VideoSampling()
    assert VideoSampling() == VideoSampling(fps=2.0, min_frames=4, max_frames=64, min_pixels=3136, max_pixels=50176,
                                            frame_rule="linspace", pixel_rule="stated")
    help_of = lambda cls: {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}  # noqa: E731
    assert all(help_of(ModuleConfig)[f] and help_of(SFTConfig)[f] for f in VIDEO_FIELDS)
    assert "native_num_frames" not in help_of(ModuleConfig)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("settings", [{}, {"video_fps": 1.0, "video_max_frames": 6, "video_max_pixels": 20000,
                                           "video_frame_rule": "centres"}])
def test_sft_frames_equal_the_runner_policy_frames(family, settings, tiny_qwen3_vl, tiny_qwen2_5_vl,
                                                   sft_videos, tmp_path):
    ckpt = tiny_qwen3_vl if family == "qwen3_vl" else tiny_qwen2_5_vl
    values = dict({f: getattr(SFTConfig(**TINY_OVERRIDES), f) for f in VIDEO_FIELDS}, **settings)
    cfg = SFTConfig(**dict(TINY_OVERRIDES, **values))
    processor = load_processor(ckpt)
    loader = VideoLoader(processor, cfg.video_sampling())  # the SFT data path's loader
    runtime = ModuleRuntime(ModuleConfig(vlm_backend="transformers", vlm_checkpoint=str(ckpt), device="cpu",
                                         clip_dir=str(tmp_path / "clips"), workers=1, **values))
    for video in sft_videos:
        frames, meta = loader.sample(video)
        inputs = runtime.video_inputs(str(video))
        assert inputs["images"] == []
        (rt_frames, rt_meta), = inputs["videos"]
        assert rt_frames.dtype == np.uint8 and rt_frames.shape == frames.shape
        assert np.array_equal(rt_frames, frames)
        assert rt_meta == meta
        # The sampled frames are what the loader processes (the cached training tensors).
        got, want = loader(video), process_video(processor, rt_frames, rt_meta)
        assert torch.equal(got["pixel_values_videos"], want["pixel_values_videos"])
        assert torch.equal(got["video_grid_thw"], want["video_grid_thw"])
        assert got["video_metadata"] == want["video_metadata"]
    # 12 s at 4 fps: fps sampling, capped, even; frame sides multiples of patch * merge.
    n = min(values["video_max_frames"], int(12 * values["video_fps"])) // 2 * 2
    factor = 32 if family == "qwen3_vl" else 28
    assert runtime.video_patch_factor() == factor
    assert frames.shape[0] == n and frames.shape[1] % factor == 0 and frames.shape[2] % factor == 0
    assert frames.shape[1] * frames.shape[2] <= values["video_max_pixels"]


def test_sft_forward_of_qwen2_5_vl_uses_reference_mrope_positions(tiny_qwen2_5_vl, sft_videos, tmp_path):
    cfg = SFTConfig(**dict(TINY_OVERRIDES, model_name_or_path=str(tiny_qwen2_5_vl), output_dir=str(tmp_path / "out"),
                           train_file=str(write_rows(tmp_path / "rows.jsonl", make_rows(sft_videos, 2))),
                           per_device_train_batch_size=2, lora_dropout=0.0, gradient_checkpointing=False))
    processor = load_processor(cfg.model_name_or_path)
    train_ds, _ = build_datasets(cfg, processor)
    args = training_arguments(cfg, has_eval=False)
    model = build_model(cfg)
    trainer = build_trainer(cfg, args, model, processor, train_ds, None)
    batch = SFTCollator(processor.tokenizer.pad_token_id)([train_ds[0], train_ds[1]])
    assert int(batch["video_grid_thw"][:, 0].min()) > 1  # several temporal patches per video
    model.eval()
    with torch.no_grad():
        loss, out = trainer.compute_loss(model, dict(batch), return_outputs=True)
        reference = model(**batch, position_ids=reference_mrope_position_ids(model.get_base_model(), batch))
        own = model(**batch)  # transformers' own positions
    assert torch.allclose(loss, reference.loss, rtol=0, atol=1e-6), (loss, reference.loss)
    assert torch.allclose(out.logits, reference.logits, rtol=0, atol=1e-5)
    text_after_video = batch["labels"] != -100
    gap = (own.logits - reference.logits).abs()[text_after_video].max()
    assert gap > 1e-4, gap  # the positions matter: transformers' own would train other logits
