"""The colocated vLLM rollout engine against the transformers engine, and what a weight sync costs.

    python bench/bench_grpo_vllm.py cpu --out cpu.json                   # this machine: tiny Qwen3-VL
    python bench/bench_grpo_vllm.py gpu --sleep-levels 0 1 2 --out gpu.json   # a GPU node: 8B-sized model

``cpu``: the tiny random Qwen3-VL (``inference.toy``), fp32, the GRPO rows of two 12-s synthetic
videos under the tiny frame policy (8 frames, <= 4096 pixels). Rollouts: the same requests (two
prompts x G = 8, temperature 1.0, top-p 0.9, top-k 50, ``--max-new-tokens``, the vision
placeholders suppressed) through ``training.grpo.vllm_engine.VLLMEngine`` and
``training.grpo.engines.TransformersEngine``; one warm-up call each, then ``--repeats`` timed calls
each, first in blocks (all vLLM calls, then all transformers calls), then interleaved;
tokens/s = generated tokens / wall time (and of the fastest call: on a shared machine the
mean follows the other sessions' load). Weight sync: the LoRA matrices are moved (a stand-in for an
optimiser step) and ``sync_weights`` timed, ``--repeats`` times, for the merged sync of the trainable
groups (the default), of every weight (``vllm_sync_all_weights``) and the adapter-only sync.

``gpu``: a randomly initialised Qwen3-VL-8B-sized model (``bench_sft_gpu.build_model``: Qwen3-VL-8B's
dimensions, bf16), saved once as the checkpoint vLLM loads, LoRA r8/alpha32 on the language model
(the paper's GRPO). One subprocess per sleep level (so memory is measured from a clean device):
trainer on the GPU, the engine beside it (``vllm_gpu_memory_utilization`` 0.75 for level 0 as in
the paper, ``--gpu-memory-utilization`` otherwise), one 64-frame video row (the paper's frame caps),
G = 8 completions of ``--max-new-tokens``. Per level: engine start, rollout seconds and tokens/s,
sync seconds, sleep/wake seconds, device memory in use (``torch.cuda.mem_get_info``: the whole
device, vLLM's pool included) during the rollout and during the training phase, and the largest
|vLLM - trainer| log-prob gap of the sampled tokens after a sync (bf16 on both sides).

Prints the results as JSON (and writes them to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402


def _versions() -> dict[str, str]:
    import transformers
    import vllm

    return {"torch": torch.__version__, "transformers": transformers.__version__, "vllm": vllm.__version__,
            "python": platform.python_version()}


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.02) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_((torch.randn(p.shape, generator=gen) * scale).to(p.dtype))


def _sampling(processor: Any, max_new_tokens: int) -> Any:
    from training.grpo.engines import SamplingSettings, vision_placeholder_ids

    tok = processor.tokenizer
    return SamplingSettings(max_new_tokens=max_new_tokens, temperature=1.0, top_p=0.9, top_k=50,
                            stop_token_ids=(tok.convert_tokens_to_ids("<|im_end|>"),),
                            suppress_token_ids=vision_placeholder_ids(processor))


def _logprob_gap(engine: Any, prompt: Any, completions: list[Any], processor: Any, temperature: float = 1.0) -> float:
    """Largest |sampler - trainer| log-prob over the sampled tokens (top-p/top-k off for this check)."""
    from training.grpo.data import build_micro_batch
    from training.grpo.engines import vision_placeholder_ids
    from training.grpo.policy import completion_logprobs

    n = len(completions)
    mb = build_micro_batch([prompt] * n, [c.token_ids for c in completions], [c.truncated for c in completions],
                           [0.0] * n, list(range(n)), processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = completion_logprobs(engine, mb.inputs, mb.completion_ids, temperature,
                                      suppressed=vision_placeholder_ids(processor))
    return max(abs(float(logp[i, k]) - lp) for i, c in enumerate(completions) for k, lp in enumerate(c.logprobs))


# ---------------------------------------------------------------------------------------------
# CPU: tiny model, vLLM vs transformers rollouts, sync time
# ---------------------------------------------------------------------------------------------

def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    from inference.toy.checkpoints import build_tiny_checkpoint
    from inference.toy.synthetic_video import generate_synthetic_video
    from tests.training.conftest import GRPO_TINY_OVERRIDES, make_grpo_rows
    from training.common.model import load_processor
    from training.common.video import VideoLoader
    from training.grpo.config import GRPOConfig
    from training.grpo.data import encode_prompt_row
    from training.grpo.engines import RolloutRequest, SamplingSettings, TransformersEngine
    from training.grpo.policy import DistInfo, build_policy
    from training.grpo.vllm_engine import VLLMEngine

    work = Path(tempfile.mkdtemp(prefix="bench_grpo_vllm_"))
    ckpt = build_tiny_checkpoint(work / "tiny", family="qwen3_vl", seed=0)
    videos = [generate_synthetic_video(work / f"v{i}", duration_s=12.0, seed=i).video_path for i in range(2)]
    rows = make_grpo_rows(videos, 2)
    base = {**GRPO_TINY_OVERRIDES, "video_max_frames": 8, "model_name_or_path": str(ckpt), "train_file": "unused",
            "rollout_engine": "vllm", "vllm_tensor_parallel_size": 1, "offload_model": False,
            "offload_optimizer": False, "move_model_batches": 2, "max_completion_length": args.max_new_tokens}
    processor = load_processor(ckpt)
    out: dict[str, Any] = {"mode": "cpu", "model": "tiny random Qwen3-VL (2 layers, hidden 64, fp32)",
                           "num_generations": args.num_generations, "max_new_tokens": args.max_new_tokens,
                           "prompts": len(rows), "repeats": args.repeats}
    cfg = GRPOConfig(**{**base, "output_dir": str(work / "merged")})
    trainer, _ = build_policy(cfg, DistInfo(), total_steps=1)
    trainer.module.eval()
    loader = VideoLoader(processor, cfg.video_sampling())
    prompts = [encode_prompt_row(processor, r, i, loader, None) for i, r in enumerate(rows)]
    out["prompt_tokens"] = [len(p.prompt_ids) for p in prompts]
    out["video_tokens"] = [p.num_visual_tokens for p in prompts]
    requests = [RolloutRequest(p.prompt_ids, p.videos, args.num_generations) for p in prompts]
    sampling = _sampling(processor, args.max_new_tokens)

    start = time.perf_counter()
    engine = VLLMEngine(cfg, trainer.module, processor, rows, DistInfo())
    out["vllm_engine_start_s"] = round(time.perf_counter() - start, 2)
    out["vllm_max_model_len"] = engine.lengths.max_model_len
    hf = TransformersEngine(trainer.module, processor, processor.tokenizer.pad_token_id)
    torch.manual_seed(0)
    calls = {"vllm": lambda: engine.generate(requests, sampling),
             "transformers": lambda: hf.generate(requests, sampling)}
    def record(timings: dict[str, dict[str, list[float]]], name: str) -> None:
        t0 = time.perf_counter()
        outs = calls[name]()
        timings[name]["seconds"].append(time.perf_counter() - t0)
        timings[name]["tokens"].append(sum(len(c.token_ids) for o in outs for c in o.completions))

    with engine.rollout_context(trainer), torch.no_grad():
        for fn in calls.values():  # warm-up
            fn()
        # "blocks": all vLLM calls, then all transformers calls. "interleaved": alternating, so a
        # load change on the shared machine hits both alike - but each transformers call then
        # starts right after a vLLM call, whose CPU kernels' worker threads still hold the cores.
        for order in ("blocks", "interleaved"):
            timings: dict[str, dict[str, list[float]]] = {k: {"seconds": [], "tokens": []} for k in calls}
            names = [n for n in calls for _ in range(args.repeats)] if order == "blocks" \
                else [n for _ in range(args.repeats) for n in calls]
            for name in names:
                record(timings, name)
            result = {}
            for name, t in timings.items():
                best = min(range(len(t["seconds"])), key=lambda i: t["seconds"][i])
                result[name] = {"seconds": [round(x, 3) for x in t["seconds"]], "tokens_per_call": t["tokens"],
                                "tokens_per_s": round(sum(t["tokens"]) / sum(t["seconds"]), 1),
                                "best_call_tokens_per_s": round(t["tokens"][best] / t["seconds"][best], 1)}
            result["vllm_speedup"] = round(result["vllm"]["tokens_per_s"] / result["transformers"]["tokens_per_s"], 2)
            out[f"rollout_{order}"] = result

    def sync_times(eng: Any, label: str) -> None:
        seconds = []
        for k in range(args.repeats):
            _perturb(trainer.module, seed=k + 1)
            start = time.perf_counter()
            eng.sync_weights(trainer.module)
            seconds.append(time.perf_counter() - start)
        stats = eng.last_sync
        exact = SamplingSettings(max_new_tokens=16, temperature=1.0, stop_token_ids=sampling.stop_token_ids,
                                 suppress_token_ids=sampling.suppress_token_ids)
        check = eng.generate([RolloutRequest(prompts[0].prompt_ids, prompts[0].videos, 4)], exact)[0]
        out[f"sync_{label}"] = {"seconds_median": round(statistics.median(seconds), 4),
                                "tensors": stats.tensors, "megabytes": round(stats.megabytes, 3),
                                "groups": stats.groups,
                                "logprob_gap_after_sync": _logprob_gap(trainer, prompts[0], check.completions,
                                                                       processor)}

    sync_times(engine, "merged_trainable_groups")
    engine.cfg = GRPOConfig(**{**base, "output_dir": str(work / "merged"), "vllm_sync_all_weights": True})
    sync_times(engine, "merged_all_weights")
    engine.close()
    cfg_adapter = GRPOConfig(**{**base, "output_dir": str(work / "adapter"), "vllm_weight_sync": "adapter"})
    adapter_engine = VLLMEngine(cfg_adapter, trainer.module, processor, rows, DistInfo())
    sync_times(adapter_engine, "adapter")
    adapter_engine.close()
    return out


# ---------------------------------------------------------------------------------------------
# GPU: 8B-sized model, sleep level 0 / 1 / 2
# ---------------------------------------------------------------------------------------------

def _used_gib() -> float:
    free, total = torch.cuda.mem_get_info()
    return round((total - free) / 2**30, 2)


def run_gpu_level(args: argparse.Namespace) -> dict[str, Any]:
    """One sleep level in this process (``gpu`` runs one subprocess per level)."""
    from transformers import AutoProcessor

    from inference.toy.synthetic_video import generate_synthetic_video
    from training.common.model import apply_lora
    from training.common.video import VideoLoader, VideoSampling
    from training.grpo.config import GRPOConfig
    from training.grpo.data import encode_prompt_row
    from training.grpo.engines import RolloutRequest
    from training.grpo.policy import DistInfo, PlainEngine
    from training.grpo.vllm_engine import VLLMEngine

    ckpt = Path(args.checkpoint)
    processor = AutoProcessor.from_pretrained(ckpt)
    level = int(args.sleep_level)
    res: dict[str, Any] = {"sleep_level": level, "memory_gib": {"start": _used_gib()}}
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(ckpt, dtype=torch.bfloat16).to("cuda")
    model = apply_lora(model, rank=8, alpha=32, dropout=0.05)
    cfg = GRPOConfig(model_name_or_path=str(ckpt), train_file="unused", output_dir=str(ckpt.parent / f"out{level}"),
                     torch_dtype="bfloat16", rollout_engine="vllm", vllm_tensor_parallel_size=1, sleep_level=level,
                     vllm_gpu_memory_utilization=0.75 if level == 0 else args.gpu_memory_utilization,
                     offload_model=level == 0, offload_optimizer=level == 0, move_model_batches=16,
                     max_completion_length=args.max_new_tokens, video_max_frames=args.frames,
                     video_max_pixels=args.max_pixels, per_device_train_batch_size=1,
                     gradient_accumulation_steps=8, reward_vlm="runtime", learning_rate=1e-6)
    trainer = PlainEngine(model, cfg, total_steps=10, info=DistInfo())
    res["memory_gib"]["trainer_loaded"] = _used_gib()
    video = generate_synthetic_video(ckpt.parent / "video", duration_s=64.0, size=(640, 360), fps=4.0).video_path
    row = {"messages": [{"role": "user", "content": "<video>Question: what happens after the needle flash?\n"
                                                    "Options: (A) a door opens (B) a car passes (C) it rains"}],
           "videos": [str(video)], "solution": "A", "choices": ["a door opens", "a car passes", "it rains"],
           "mode_label": "program"}
    prompt = encode_prompt_row(processor, row, 0, VideoLoader(processor, VideoSampling(
        fps=2.0, max_frames=args.frames, max_pixels=args.max_pixels)), None, torch.bfloat16)
    res["row"] = {"frames": int(prompt.videos[0][0].shape[0]), "video_tokens": prompt.num_visual_tokens,
                  "prompt_tokens": len(prompt.prompt_ids)}
    start = time.perf_counter()
    engine = VLLMEngine(cfg, model, processor, [row], DistInfo())
    res["engine_start_s"] = round(time.perf_counter() - start, 1)
    res["memory_gib"]["engine_started"] = _used_gib()
    sampling = _sampling(processor, args.max_new_tokens)
    request = RolloutRequest(prompt.prompt_ids, prompt.videos, args.num_generations)
    for round_ in range(2):
        start = time.perf_counter()
        with engine.rollout_context(trainer):
            t0 = time.perf_counter()
            out = engine.generate([request], sampling)[0]
            rollout_s = time.perf_counter() - t0
            res["memory_gib"][f"rollout_{round_}"] = _used_gib()
        context_s = time.perf_counter() - start
        res["memory_gib"][f"training_phase_{round_}"] = _used_gib()
        tokens = sum(len(c.token_ids) for c in out.completions)
        res[f"rollout_{round_}"] = {"seconds": round(rollout_s, 2), "tokens": tokens,
                                    "tokens_per_s": round(tokens / rollout_s, 1),
                                    "context_overhead_s": round(context_s - rollout_s, 2),
                                    "offloaded_mb": round(getattr(engine, "offloaded_megabytes", 0.0), 1)}
        _perturb(model, seed=round_ + 1)
        torch.cuda.synchronize()
        start = time.perf_counter()
        engine.sync_weights(model)  # level 0: pushed now; 1/2: pending until the next wake-up
        res[f"sync_call_s_{round_}"] = round(time.perf_counter() - start, 2)
        res[f"sync_{round_}"] = {"seconds": round(engine.last_sync.seconds, 2), "tensors": engine.last_sync.tensors,
                                 "megabytes": round(engine.last_sync.megabytes, 1), "full": engine.last_sync.full}
    from training.grpo.engines import SamplingSettings

    exact = SamplingSettings(max_new_tokens=32, temperature=1.0, stop_token_ids=sampling.stop_token_ids,
                             suppress_token_ids=sampling.suppress_token_ids)
    with engine.rollout_context(trainer):
        check = engine.generate([RolloutRequest(prompt.prompt_ids, prompt.videos, 4)], exact)[0]
    res["last_sync"] = {"seconds": round(engine.last_sync.seconds, 2), "full": engine.last_sync.full}
    model.eval()
    res["logprob_gap_after_sync_bf16"] = round(_logprob_gap(trainer, prompt, check.completions, processor), 4)
    engine.close()
    return res


def run_gpu(args: argparse.Namespace) -> dict[str, Any]:
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device (the gpu mode measures sleep levels on a GPU node)")
    from transformers import AutoProcessor

    from inference.toy.checkpoints import build_tiny_checkpoint

    build_model = __import__("bench_sft_gpu").build_model
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_grpo_vllm_gpu_"))
    ckpt = work / "qwen3_vl_8b_random"
    if not (ckpt / "config.json").is_file():
        start = time.perf_counter()
        processor = AutoProcessor.from_pretrained(build_tiny_checkpoint(work / "tiny", family="qwen3_vl"))
        model = build_model("8b", processor, "cpu", "sdpa")
        model.config.use_cache = True
        model.save_pretrained(ckpt, max_shard_size="5GB")
        processor.save_pretrained(ckpt)
        del model
        print(f"saved the 8B-sized checkpoint in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    results: dict[str, Any] = {"mode": "gpu", "device": torch.cuda.get_device_name(),
                               "model": "random Qwen3-VL-8B-sized (bf16), LoRA r8/a32", "levels": {}}
    for level in args.sleep_levels:
        out = work / f"level{level}.json"
        cmd = [sys.executable, __file__, "gpu-level", "--checkpoint", str(ckpt), "--sleep-level", str(level),
               "--out", str(out), "--max-new-tokens", str(args.max_new_tokens), "--frames", str(args.frames),
               "--max-pixels", str(args.max_pixels), "--num-generations", str(args.num_generations),
               "--gpu-memory-utilization", str(args.gpu_memory_utilization)]
        proc = subprocess.run(cmd, env=dict(os.environ), timeout=args.level_timeout_s)
        results["levels"][str(level)] = json.loads(out.read_text()) if proc.returncode == 0 and out.is_file() \
            else {"error": f"exit code {proc.returncode}"}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("cpu", "gpu", "gpu-level"))
    parser.add_argument("--num-generations", type=int, default=8, help="G (paper: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="completion budget (cpu 64, gpu 1024)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (cpu)")
    parser.add_argument("--sleep-levels", type=int, nargs="+", default=[0, 1, 2], help="gpu: levels to measure")
    parser.add_argument("--sleep-level", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=64, help="gpu: video frames (paper: 64)")
    parser.add_argument("--max-pixels", type=int, default=50176, help="gpu: pixels per frame (paper: 50176)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.6,
                        help="gpu: vLLM's share for sleep levels 1 and 2 (level 0 uses the paper's 0.75)")
    parser.add_argument("--level-timeout-s", type=int, default=900, help="gpu: limit per sleep level")
    parser.add_argument("--workdir", default="", help="gpu: where the 8B-sized checkpoint is saved (reused)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.max_new_tokens is None:
        args.max_new_tokens = 64 if args.mode == "cpu" else 1024
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if args.mode == "cpu":
        res = run_cpu(args)
    elif args.mode == "gpu":
        res = run_gpu(args)
    else:
        res = run_gpu_level(args)
    res.update({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "host": platform.processor() or platform.machine(), "cpus": os.cpu_count(), **_versions()})
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
