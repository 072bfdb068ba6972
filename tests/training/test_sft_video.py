"""Video sampling the Qwen-VL way, and the preprocessed-tensor cache shared by workers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inference.video_store import probe_video
from training.common.video import VideoLoader, VideoSampling, frame_size, num_sampled_frames
from training.sft.data import SFTCollator, SFTDataset, encode_conversation, load_sft_rows


@pytest.mark.parametrize("total,fps", [(48, 4.0), (7200, 2.0), (300, 30.0), (5, 25.0), (600, 1.0)])
@pytest.mark.parametrize("max_frames", [8, 64])
def test_frame_count_matches_qwen_vl_utils(total, fps, max_frames):
    from qwen_vl_utils.vision_process import smart_nframes

    want = smart_nframes({"fps": 2.0, "min_frames": 4, "max_frames": max_frames}, total_frames=total, video_fps=fps)
    assert num_sampled_frames(total, fps, VideoSampling(max_frames=max_frames)) == want


@pytest.mark.parametrize("h,w", [(240, 320), (720, 1280), (1080, 1920), (100, 3000), (50, 60)])
@pytest.mark.parametrize("factor", [28, 32])
def test_frame_size_matches_qwen_vl_utils(h, w, factor):
    from qwen_vl_utils.vision_process import smart_resize

    assert frame_size(h, w, factor, 3136, 50176) == smart_resize(h, w, factor, min_pixels=3136, max_pixels=50176)
    rh, rw = frame_size(h, w, factor, 3136, 50176)
    assert rh % factor == 0 and rw % factor == 0 and rh * rw <= 50176


def test_loader_samples_capped_frames_with_source_metadata(tiny_qwen3_vl, sft_videos):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_qwen3_vl)
    out = VideoLoader(proc, VideoSampling(max_frames=8, min_pixels=1024, max_pixels=4096))(sft_videos[0])
    info = probe_video(sft_videos[0])  # 12 s at 4 fps: 2 fps would take 24 frames, capped at 8
    meta = out["video_metadata"]
    assert meta["fps"] == pytest.approx(info.fps) and meta["total_num_frames"] == info.num_frames
    idx = meta["frames_indices"]
    assert len(idx) == 8 and idx == sorted(idx) and idx[-1] < info.num_frames and idx[-1] - idx[0] > 30
    t, gh, gw = out["video_grid_thw"][0].tolist()
    assert t == 4 and gh * gw * 16 * 16 <= 4096  # 8 frames / temporal patch 2; 32x32 px patches
    assert out["pixel_values_videos"].shape[0] == t * gh * gw


def test_cache_decodes_each_video_once_across_dataloader_workers(tiny_qwen2_5_vl, sft_rows_file, tmp_path):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_qwen2_5_vl)
    sampling = VideoSampling(max_frames=8, min_pixels=1024, max_pixels=4096)
    rows = load_sft_rows(sft_rows_file)  # 10 rows over 2 videos
    cached = SFTDataset(rows, proc, VideoLoader(proc, sampling, tmp_path / "cache"))
    collate = SFTCollator(proc.tokenizer.pad_token_id)
    for _ in range(2):  # two epochs, two worker processes
        batches = list(torch.utils.data.DataLoader(cached, batch_size=2, num_workers=2, collate_fn=collate))
        assert len(batches) == 5
    decodes = [json.loads(line) for line in (tmp_path / "cache" / "decodes.jsonl").read_text().splitlines()]
    assert len(decodes) == 2 and len({d["parts"]["path"] for d in decodes}) == 2

    # Cached tensors are the ones an uncached loader computes.
    plain = SFTDataset(rows, proc, VideoLoader(proc, sampling, None))
    for i in (0, 1):
        a, b = cached[i], plain[i]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)

    # A fresh loader on the same directory (another rank) only reads.
    again = VideoLoader(proc, sampling, tmp_path / "cache")
    again(rows[0]["videos"][0])
    assert (again.cache.hits, again.cache.misses) == (1, 0)

    # Other settings are another cache entry.
    other = VideoSampling(max_frames=4, min_pixels=1024, max_pixels=4096)
    VideoLoader(proc, other, tmp_path / "cache")(rows[0]["videos"][0])
    assert len((tmp_path / "cache" / "decodes.jsonl").read_text().splitlines()) == 3


def test_relative_video_paths_resolve_against_the_video_dir(tiny_qwen2_5_vl, sft_videos, tmp_path):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_qwen2_5_vl)
    row = {"messages": [{"role": "user", "content": "<video>Q"}, {"role": "assistant", "content": "A"}],
           "videos": [sft_videos[0].name]}
    loader = VideoLoader(proc, VideoSampling(max_frames=4, min_pixels=1024, max_pixels=4096))
    item = SFTDataset([row], proc, loader, video_dir=sft_videos[0].parent)[0]
    direct = encode_conversation(proc, row["messages"], [loader(sft_videos[0])])
    assert torch.equal(item["input_ids"], direct["input_ids"])
    with pytest.raises(Exception, match="(?i)not exist|no such|missing"):
        SFTDataset([row], proc, loader, video_dir=tmp_path)[0]


# Videos whose frame counts and shapes give qwen-vl-utils' rules different cases: the issue's
# 40-s 4-fps video (64 of 160 frames, capped), 30 fps landscape, 25 fps portrait.
QWEN_VL_UTILS_VIDEOS = {
    "long": dict(duration_s=40.0, fps=4.0, size=(320, 240)),
    "wide": dict(duration_s=12.0, fps=30.0, size=(320, 180), scene_len_s=4.0, needle_len_s=1.0),
    "tall": dict(duration_s=8.0, fps=25.0, size=(180, 320), scene_len_s=4.0, needle_len_s=1.0),
}


@pytest.fixture(scope="module")
def varied_videos(tmp_path_factory):
    from inference.toy.synthetic_video import generate_synthetic_video

    root = tmp_path_factory.mktemp("varied_videos")
    return {name: generate_synthetic_video(root, video_id=name, seed=i, **spec).video_path
            for i, (name, spec) in enumerate(QWEN_VL_UTILS_VIDEOS.items())}


@pytest.mark.parametrize("factor", [32, 28])
@pytest.mark.parametrize("pixel_rule", ["stated", "qwen_vl_utils"])
def test_sampled_frames_equal_qwen_vl_utils_fetch_video(pixel_rule, factor, varied_videos, tmp_path, monkeypatch):
    """Frame numbers, pixels and sizes equal qwen-vl-utils' ``fetch_video`` (decord) as ms-swift
    drives it: ``FPS_MAX_FRAMES=64``; ``stated``: per-video bounds [3136, 50176] (what
    ``VIDEO_MIN_PIXELS=3136`` gives); ``qwen_vl_utils``: only ``VIDEO_MAX_PIXELS=50176``, which
    ms-swift turns into ``VIDEO_MAX_TOKEN_NUM = 50176 // factor**2``."""
    from qwen_vl_utils import vision_process

    from inference.video_sampling import sample_video
    from inference.video_store import VideoStore

    assert vision_process.get_video_reader_backend() == "decord"
    monkeypatch.setattr(vision_process, "FPS_MAX_FRAMES", 64)
    if pixel_rule == "qwen_vl_utils":
        monkeypatch.setattr(vision_process, "VIDEO_MAX_TOKEN_NUM", 50176 // factor ** 2)
    store = VideoStore(tmp_path / "clips", frame_cache_size=0)
    sizes = set()
    for path in varied_videos.values():
        ele = {"video": str(path)} | ({"min_pixels": 3136, "max_pixels": 50176} if pixel_rule == "stated" else {})
        video, meta = vision_process.fetch_video(ele, image_patch_size=factor // 2, return_video_metadata=True)
        frames, ours = sample_video(path, VideoSampling(pixel_rule=pixel_rule), factor, store)
        assert ours["frames_indices"] == list(meta["frames_indices"])
        assert ours["total_num_frames"] == meta["total_num_frames"] and ours["fps"] == pytest.approx(meta["fps"])
        assert frames.shape == tuple(video.permute(0, 2, 3, 1).shape)
        assert np.array_equal(frames, video.to(torch.uint8).permute(0, 2, 3, 1).numpy())
        sizes.add(frames.shape[1] * frames.shape[2])
    # The rules differ: qwen-vl-utils' 128-token minimum lifts every frame above 50176 pixels.
    assert all((s <= 50176) == (pixel_rule == "stated") for s in sizes)


def test_frame_rules_linspace_and_centres(varied_videos, tmp_path):
    from inference.video_sampling import frame_indices, sample_video
    from inference.video_store import VideoStore

    store = VideoStore(tmp_path / "clips", frame_cache_size=0)
    path = varied_videos["long"]  # 160 frames at 4 fps: 64 sampled
    _, linspace = sample_video(path, VideoSampling(), 32, store)
    _, centres = sample_video(path, VideoSampling(frame_rule="centres"), 32, store)
    assert linspace["frames_indices"] == frame_indices(160, 64) and linspace["frames_indices"][::63] == [0, 159]
    # "centres" is the store's uniform sampling (what programs' extract_frames uses).
    want = [round(f.time * 4.0) for f in store.sample_frames(path, 64)]
    assert centres["frames_indices"] == want
    assert sum(a != b for a, b in zip(linspace["frames_indices"], centres["frames_indices"])) == 22
    with pytest.raises(ValueError, match="frame_rule must be one of linspace, centres"):
        VideoSampling(frame_rule="uniform")
    with pytest.raises(ValueError, match="pixel_rule must be one of stated, qwen_vl_utils"):
        VideoSampling(pixel_rule="ms_swift")
