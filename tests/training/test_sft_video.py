"""Video sampling the Qwen-VL way, and the preprocessed-tensor cache shared by workers."""

from __future__ import annotations

import json

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
