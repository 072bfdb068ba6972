"""One GRPO step of a randomly initialised Qwen3-VL-8B-sized model with LoRA on one GPU, for one
64-frame video row and G = 8 completions: peak memory and the time of each phase.

    python bench/bench_grpo_gpu.py --out $OUT/grpo_gpu.json                        # on a GPU node
    python bench/bench_grpo_gpu.py --size tiny --device cpu --max-new-tokens 16    # smoke test anywhere

Needs torch, transformers and peft (no DeepSpeed, no weights download). The step is the GRPO
stage's own code (``training.grpo``), phase by phase, on one device:

1. **video**: a synthetic 64-s 640x360 video (``inference.toy.synthetic_video``) sampled by the
   frame policy at the paper's caps (64 frames, 50176 pixels: 160x288, 1440 video tokens), and the
   prompt encoded (``training.grpo.data.encode_prompt_row``);
2. **rollout**: ``training.grpo.engines.TransformersEngine`` samples G completions of
   ``--max-new-tokens`` (the paper's budget is 4096; a random model never stops early, so every
   completion has exactly this length), temperature 1.0, top-p 0.9, top-k 50, KV cache on;
3. **reward**: not timed here - the scores are seeded random numbers (the random model writes
   no program); program execution is benchmarked by ``bench/bench_sandbox.py``;
4. **reference**: log-probs of the completions with the adapters disabled (beta 0.04), no grad;
5. **train**: per completion (the paper's per-device batch 1) forward + backward of the GRPO loss
   (``core_algos.policy_loss``, loss ``grpo``), gradient checkpointing, then one AdamW step.

Model: ``Qwen3VLForConditionalGeneration`` with Qwen3-VL-8B-Instruct's architecture (the dims of
``bench_sft_gpu.py``), random bf16 weights, flash-attention 2 when installed (else SDPA), LoRA
r8/alpha32 (the paper's GRPO: ms-swift defaults) on every linear layer of the language model.
Reported: seconds per phase, generated tokens/s, peak memory per phase and overall.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("8b", "tiny"), default="8b", help="model dimensions")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--num-generations", type=int, default=8, help="G (paper: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=1024,
                        help="completion length (paper's budget: 4096; every completion reaches it)")
    parser.add_argument("--frames", type=int, default=64, help="video frames (paper: 64)")
    parser.add_argument("--max-pixels", type=int, default=50176, help="pixels per frame (paper: 50176)")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--attn", default="auto", help="auto, flash_attention_2, sdpa or eager")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import peft
    import transformers
    from transformers import AutoProcessor

    from inference.toy.checkpoints import build_tiny_checkpoint
    from inference.toy.synthetic_video import generate_synthetic_video
    from training.common.model import apply_lora, resolve_attn_implementation, trainable_summary
    from training.common.video import VideoLoader, VideoSampling
    from training.grpo import core_algos as algos
    from training.grpo.config import GRPOConfig
    from training.grpo.data import build_micro_batch, encode_prompt_row
    from training.grpo.engines import RolloutRequest, SamplingSettings, TransformersEngine, vision_placeholder_ids
    from training.grpo.policy import DistInfo, PlainEngine, completion_logprobs, reference_disabled

    build_model = importlib.import_module("bench_sft_gpu").build_model  # the SFT bench's 8B-sized model

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device; pass --device cpu --size tiny for a smoke test")
    work = Path(tempfile.mkdtemp(prefix="bench_grpo_gpu_"))
    attn = resolve_attn_implementation(args.attn)
    processor = AutoProcessor.from_pretrained(build_tiny_checkpoint(work / "tiny", family="qwen3_vl"))
    tok = processor.tokenizer
    phases: dict[str, dict[str, float]] = {}

    def phase(name: str):
        class Timer:
            def __enter__(self):
                _sync(device)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                _sync(device)
                phases[name] = {"seconds": round(time.perf_counter() - self.start, 3)}
                if device == "cuda":
                    phases[name]["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return Timer()

    t0 = time.perf_counter()
    model = build_model(args.size, processor, device, attn)
    model = apply_lora(model, rank=args.lora_rank, alpha=args.lora_alpha, dropout=0.05)
    if not args.no_gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    build_s = time.perf_counter() - t0
    cfg = GRPOConfig(model_name_or_path=str(work / "tiny"), learning_rate=1e-6, num_generations=args.num_generations,
                     per_device_train_batch_size=1, gradient_accumulation_steps=args.num_generations,
                     max_completion_length=args.max_new_tokens, warmup_ratio=0.0)
    engine = PlainEngine(model, cfg, total_steps=10, info=DistInfo())

    video = generate_synthetic_video(work / "video", duration_s=64.0, size=(640, 360), fps=4.0).video_path
    row = {"messages": [{"role": "user", "content": "<video>Question: what happens after the needle flash?\n"
                                                    "Options: (A) a door opens (B) a car passes (C) it rains"}],
           "videos": [str(video)], "solution": "A", "choices": ["a door opens", "a car passes", "it rains"],
           "mode_label": "program"}
    sampling_policy = VideoSampling(fps=2.0, max_frames=args.frames, max_pixels=args.max_pixels)
    with phase("video"):
        prompt = encode_prompt_row(processor, row, 0, VideoLoader(processor, sampling_policy), None, torch.bfloat16)

    sampling = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=0.9, top_k=50,
                                stop_token_ids=(tok.convert_tokens_to_ids("<|im_end|>"),),
                                suppress_token_ids=vision_placeholder_ids(processor))
    rollout = TransformersEngine(model, processor, tok.pad_token_id)
    model.eval()
    with phase("rollout"):
        out = rollout.generate([RolloutRequest(prompt.prompt_ids, prompt.videos, args.num_generations)], sampling)[0]
    completions = out.completions
    generated = sum(len(c.token_ids) for c in completions)

    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(args.num_generations, generator=gen)
    advantages = algos.group_advantages(rewards, args.num_generations).advantages
    micro = [build_micro_batch([prompt], [c.token_ids], [c.truncated], [float(advantages[i])], [i], tok.pad_token_id)
             for i, c in enumerate(completions)]
    suppressed = sampling.suppress_token_ids
    with phase("reference"), torch.no_grad(), reference_disabled(engine):
        refs = [completion_logprobs(engine, mb.inputs, mb.completion_ids, 1.0, suppressed=suppressed)[0]
                for mb in micro]
    model.train()
    losses = []
    with phase("train"):
        for mb, ref in zip(micro, refs):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                logp, _ = completion_logprobs(engine, mb.inputs, mb.completion_ids, 1.0, suppressed=suppressed)
            mask = algos.completion_mask(mb.completion_lengths, mb.width).to(logp.device)
            loss, _ = algos.policy_loss(logp, logp.detach(), mb.advantages.to(logp.device), mask, beta=0.04,
                                        ref_logp=ref.to(logp.device))
            engine.backward(loss)
            engine.step()
            losses.append(float(loss.detach()))
    if not all(torch.isfinite(torch.tensor(losses))):
        raise RuntimeError(f"non-finite loss: {losses}")

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    res: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": name,
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "size": args.size, "attn_implementation": attn, "gradient_checkpointing": not args.no_gradient_checkpointing,
        "params": trainable_summary(model), "model_build_s": round(build_s, 1),
        "row": {"frames": int(prompt.videos[0][0].shape[0]), "frame_hw": list(prompt.videos[0][0].shape[1:3]),
                "video_tokens": prompt.num_visual_tokens, "prompt_tokens": len(prompt.prompt_ids)},
        "num_generations": args.num_generations, "max_new_tokens": args.max_new_tokens,
        "generated_tokens": generated, "rollout_tokens_per_s": round(generated / phases["rollout"]["seconds"], 1),
        "phases": phases, "step_seconds": round(sum(p["seconds"] for p in phases.values()), 2),
        "losses": losses,
        "peak_memory_gib": max((p.get("peak_memory_gib", 0.0) for p in phases.values()), default=None)
        if device == "cuda" else None,
    }
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
