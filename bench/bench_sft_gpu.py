"""SFT training throughput (tokens/s, MFU) of a randomly initialised Qwen3-VL-8B-sized model
with LoRA on one GPU, for a batch of long-video rows.

    python bench/bench_sft_gpu.py --out $OUT/sft_gpu.json            # on a GPU node
    python bench/bench_sft_gpu.py --size tiny --device cpu --steps 2  # smoke test anywhere

Needs torch, transformers and peft only (no DeepSpeed, no weights download). What it runs is
one training step of the SFT stage as ``training.sft`` builds it, minus the data loading:

- model: ``Qwen3VLForConditionalGeneration`` with Qwen3-VL-8B-Instruct's architecture
  (36 layers, hidden 4096, GQA 32/8 heads, head_dim 128, MLP 12288, vocab 151936; vision tower
  27 blocks of width 1152 with deepstack at 8/16/24), random weights in bf16, flash-attention
  2 when installed (else SDPA), gradient checkpointing (non-reentrant);
- LoRA r64/alpha16 on every linear layer of the language model (``training.common.model``),
  AdamW on the adapters, bf16 autocast;
- batch: ``--batch`` rows (the paper's per-device batch 2), each a 64-frame video at the paper's
  pixel cap (a 640x360 source resized to 160x288: 5760 patches, 1440 video tokens) and
  ``--text-tokens`` text tokens (prompt + program), built by ``training.sft.data`` so the video
  placeholders, M-RoPE inputs and labels are those of real training.

Reported: median step time over ``--steps`` timed steps after ``--warmup``, tokens/s (every
non-padding token of the batch, video tokens included), vision patches/s, peak memory, and
MFU = model FLOPs per step / step time / peak bf16 dense FLOP/s of the device. Model FLOPs
count what the step must compute, not what checkpointing recomputes:

- language model linear layers (lm_head included): 2·N·T forward + 2·N·T backward (frozen
  weights need input gradients only); LoRA adapters: 6·N_lora·T;
- causal attention: forward 2·L·s²·d per sequence (QKᵀ and AV, half the matrix), backward 2x;
- vision tower: forward only (frozen, its input needs no gradient): 2·N_vis·P plus full
  attention within each temporal patch, 4·depth·p²·d per frame group.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

# Peak dense bf16 FLOP/s (no sparsity) by device name fragment.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0,
                    "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}

QWEN3_VL_8B = {
    "text": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=262144,
                 rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                  "mrope_section": [24, 20, 20], "mrope_interleaved": True}),
    "vision": dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                   patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                   deepstack_visual_indexes=[8, 16, 24], hidden_act="gelu_pytorch_tanh", in_channels=3),
}
TINY = {
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=32, vocab_size=151936, max_position_embeddings=32768,
                 rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                  "mrope_section": [6, 5, 5], "mrope_interleaved": True}),
    "vision": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=64,
                   patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                   deepstack_visual_indexes=[1], hidden_act="gelu_pytorch_tanh", in_channels=3),
}


def build_model(size: str, processor: Any, device: str, attn: str) -> Any:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    dims = QWEN3_VL_8B if size == "8b" else TINY
    tok = processor.tokenizer
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    config = Qwen3VLConfig(text_config=dict(dims["text"], dtype="bfloat16"), vision_config=dims["vision"],
                           tie_word_embeddings=False, dtype="bfloat16", **ids)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16, attn_implementation=attn)
    model.config.use_cache = False
    return model


def build_batch(processor: Any, batch: int, frames: int, height: int, width: int, text_tokens: int) -> dict:
    """``batch`` rows of one 64-frame video each (random pixels: the weights are random too)
    and about ``text_tokens`` tokens of prompt + program."""
    from training.sft.data import SFTCollator, encode_conversation

    vp = processor.video_processor
    p, m, tp = vp.patch_size, vp.merge_size, vp.temporal_patch_size
    grid = [frames // tp, height // p, width // p]
    fps, total = 4.0, 14_400  # a 60-minute source video at 4 fps
    meta = {"fps": fps, "total_num_frames": total, "duration": total / fps, "video_backend": "pyav",
            "frames_indices": [round(i * (total - 1) / (frames - 1)) for i in range(frames)],
            "width": width, "height": height}
    program = ("<planning>Retrieve the relevant clips, then ask about their frames.</planning>\n<code>\n"
               "def execute_command(video, question):\n    clips = get_informative_clips(video, question, top_k=3)\n"
               "    frames = extract_frames(clips[0], num_frames=16)\n"
               "    return query_mc(frames, question, choices)\n</code>")
    filler = "Select the best option. Use the module library to ground the answer in the video. "
    rows = []
    for _ in range(batch):
        video = {"pixel_values_videos": torch.randn(grid[0] * grid[1] * grid[2], 3 * tp * p * p).to(torch.bfloat16),
                 "video_grid_thw": torch.tensor([grid]), "video_metadata": meta}
        prompt = "Question: what happens after the needle flash? "
        while True:
            enc = encode_conversation(processor, [{"role": "user", "content": "<video>" + prompt},
                                                  {"role": "assistant", "content": program}], [video])
            if int((enc["mm_token_type_ids"] == 0).sum()) >= text_tokens:
                break
            prompt += filler * max(1, (text_tokens - int((enc["mm_token_type_ids"] == 0).sum())) // 90)
        rows.append(enc)
    assert m == 2
    return SFTCollator(processor.tokenizer.pad_token_id)(rows)


def model_flops(model: Any, batch: dict, lora_params: int) -> dict[str, float]:
    tc, vc = model.config.text_config, model.config.vision_config
    d, L = tc.hidden_size, tc.num_hidden_layers
    q_out, kv_out = tc.num_attention_heads * tc.head_dim, tc.num_key_value_heads * tc.head_dim
    n_lm = L * (d * q_out + 2 * d * kv_out + q_out * d + 3 * d * tc.intermediate_size) + d * tc.vocab_size
    lengths = batch["attention_mask"].sum(1).tolist()
    T = sum(lengths)
    attn_fwd = sum(2 * L * s * s * q_out for s in lengths)
    dv, depth = vc.hidden_size, vc.depth
    n_vis_block = 4 * dv * dv + 2 * dv * vc.intermediate_size
    merger_in = dv * vc.spatial_merge_size ** 2  # mergers act on groups of 2x2 patches
    n_mergers = (1 + len(vc.deepstack_visual_indexes)) * (merger_in * merger_in + merger_in * vc.out_hidden_size)
    grids = batch["video_grid_thw"].tolist()
    P = sum(t * h * w for t, h, w in grids)
    vis_attn = sum(t * 4 * depth * (h * w) ** 2 * dv for t, h, w in grids)
    lm = 4 * n_lm * T + 3 * attn_fwd + 6 * lora_params * T
    vis = 2 * depth * n_vis_block * P + 2 * n_mergers * P // vc.spatial_merge_size ** 2 + vis_attn
    return {"lm": float(lm), "vision": float(vis), "total": float(lm + vis), "tokens": T, "patches": P,
            "lm_params_counted": n_lm}


def peak_tflops(device_name: str) -> float | None:
    for frag, tf in PEAK_BF16_TFLOPS.items():
        if frag in device_name:
            return tf
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("8b", "tiny"), default="8b", help="model dimensions")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--batch", type=int, default=2, help="rows per step (paper: 2 per device)")
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--height", type=int, default=160, help="frame height after the pixel cap")
    parser.add_argument("--width", type=int, default=288, help="frame width after the pixel cap")
    parser.add_argument("--text-tokens", type=int, default=2048, help="text tokens per row (prompt + program)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--attn", default="auto", help="auto, flash_attention_2, sdpa or eager")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the device's peak bf16 TFLOP/s")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import peft
    import transformers
    from transformers import AutoProcessor

    from inference.toy.checkpoints import build_tiny_checkpoint
    from training.common.model import apply_lora, resolve_attn_implementation, trainable_summary

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device; pass --device cpu --size tiny for a smoke test")
    attn = resolve_attn_implementation(args.attn)
    # The tiny checkpoint's processor: real Qwen3-VL processor classes and chat template with a
    # small tokenizer (text token ids < 400; the model keeps the 151936-row embedding).
    processor = AutoProcessor.from_pretrained(build_tiny_checkpoint(tempfile.mkdtemp(prefix="bench_sft_gpu_"),
                                                                    family="qwen3_vl"))
    t0 = time.perf_counter()
    model = build_model(args.size, processor, device, attn)
    model = apply_lora(model, rank=64, alpha=16, dropout=0.05)
    build_s = time.perf_counter() - t0
    if not args.no_gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = trainable_summary(model)
    lora_params = params["trainable_params"]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.1,
                            fused=device == "cuda")
    batch = build_batch(processor, args.batch, args.frames, args.height, args.width, args.text_tokens)
    batch = {k: v.to(device) for k, v in batch.items()}
    flops = model_flops(model, batch, lora_params)

    def step() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {loss.item()}")
        return time.perf_counter() - start

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        step()
    times = [step() for _ in range(args.steps)]
    med = statistics.median(times)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops or peak_tflops(name)
    achieved = flops["total"] / med
    res = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": name,
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "size": args.size, "attn_implementation": attn, "gradient_checkpointing": not args.no_gradient_checkpointing,
        "params": params, "model_build_s": round(build_s, 1),
        "batch": {"rows": args.batch, "frames": args.frames, "frame_hw": [args.height, args.width],
                  "tokens": flops["tokens"], "video_tokens": int((batch["mm_token_type_ids"] == 2).sum()),
                  "vision_patches": flops["patches"],
                  "text_tokens": int(((batch["mm_token_type_ids"] == 0) & batch["attention_mask"].bool()).sum())},
        "step_times_s": [round(t, 4) for t in times], "step_time_median_s": round(med, 4),
        "tokens_per_s": round(flops["tokens"] / med, 1), "patches_per_s": round(flops["patches"] / med, 1),
        "model_tflops_per_step": round(flops["total"] / 1e12, 2),
        "model_tflops_split": {"language_model": round(flops["lm"] / 1e12, 2),
                               "vision": round(flops["vision"] / 1e12, 2)},
        "achieved_tflops": round(achieved / 1e12, 1), "peak_bf16_tflops": peak,
        "mfu": round(achieved / (peak * 1e12), 4) if peak else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
    }
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
