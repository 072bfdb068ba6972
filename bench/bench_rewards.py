"""Benchmark: scoring one GRPO step's completions with the cache and batched VLM calls, versus
executing the same programs one by one with neither.

Workload: 4 questions about the toy synthetic video (40 s, tiny random Qwen3-VL answering
in-process, tiny CLIP/Grounding DINO, packaged MiniLM and EasyOCR) x 8 sampled completions each:
Fig. 8-style programs with the variations a group at temperature 1 produces (native mode,
clip retrieval with top_k 1 or 2, subtitle retrieval then trimming, detection filters, OCR,
repeats of the same program). Both runs score all 32 with ``rewards.score_completions``:

- **ours**: ``exec_workers=8``, the call cache on, VLM calls of concurrent programs batched;
- **baseline**: ``exec_workers=1``, ``use_call_cache=False``, ``batch_vlm_calls=False``.

Reported: wall time of the step's scoring, module calls made and computed, VLM generate calls
(forward passes of the answering model), and that both runs give the same rewards.

Run: ``python bench/bench_rewards.py [--work DIR] [--json out.json]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from inference.backends.vlm import VLMBackend  # noqa: E402


def program(body: str, planning: str = "Find the evidence, then answer.") -> str:
    return f"<planning>{planning}</planning>\n<code>\ndef execute_command(video, question):\n{body}</code>"


def group_for(word: str) -> list[str]:
    """Eight completions sampled around one question (``word``: a scene word it mentions)."""
    return [
        program("    return query_native(video, question, choices)\n"),
        program(f"    intervals, clips = get_informative_clips(video, 'the word {word}', top_k=1)\n"
                "    frames = extract_frames(clips[0], 4)\n    return query_mc(frames, question, choices)\n"),
        program(f"    intervals, clips = get_informative_clips(video, 'the word {word}', top_k=1)\n"
                "    frames = extract_frames(clips[0], 4)\n    return query_mc(frames, question, choices)\n"),
        program(f"    intervals, clips = get_informative_clips(video, 'the word {word}', top_k=2)\n"
                "    frames = [f for c in clips for f in extract_frames(c, 4)]\n"
                "    kept = [f for f in frames if detect_object(f, 'text')] or frames\n"
                "    return query_mc(kept, question, choices)\n"),
        program(f"    windows = get_informative_subtitles(video, '{word}', top_k=1, total_duration=duration)\n"
                "    if not windows:\n        return query_native(video, question, choices)\n"
                "    start, end = windows[0]\n    frames = trim_frames(video, start, end, num_frames=4)\n"
                "    return query_mc(frames, question, choices)\n"),
        program(f"    windows = get_informative_subtitles(video, '{word}', top_k=1, total_duration=duration)\n"
                "    start, end = windows[0] if windows else (0, duration)\n"
                "    frames = trim_around(video, (start + end) / 2, intervals=8, num_frames=4)\n"
                "    text = ' '.join(run_ocr(crop_bottom(f)) for f in frames[:2])\n"
                "    return query_mc(frames, question + ' ' + text, choices)\n"),
        program("    frames = extract_frames(video, 8)\n    return query_mc(frames, question, choices)\n"),
        program("    return query_native(video, question, choices)\n"),
    ]


class CountingVLM(VLMBackend):
    """Counts the answering model's forward passes (generate calls and batches) it is asked for."""

    name = "counting"

    def __init__(self, backend: VLMBackend) -> None:
        self.backend, self.generate_calls, self.requests = backend, 0, 0

    def identity(self) -> str:
        return self.backend.identity()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def generate(self, prompt=None, **kwargs):
        self.generate_calls += 1
        self.requests += 1
        return self.backend.generate(prompt, **kwargs)

    def generate_batch(self, requests):
        self.generate_calls += 1
        self.requests += len(requests)
        return self.backend.generate_batch(requests)


def run(label: str, config: Any, rows: list[dict], completions: list[str], assets: Any, work: Path) -> dict:
    from inference.backends.vlm import TransformersVLM
    from inference.modules import ModuleRuntime
    from rewards import score_completions

    runtime = ModuleRuntime(assets.module_config(clip_dir=str(work / "clips"), video_max_frames=8,
                                                 max_query_frames=8))
    counting = CountingVLM(TransformersVLM(str(assets.qwen3_vl), device="cpu", dtype="float32"))
    runtime.use_vlm(counting)
    # Warm-up outside the timing: model weights, clip split and embeddings, subtitle index.
    runtime.get_informative_clips(rows[0]["videos"][0], "warm-up", top_k=1)
    runtime.get_informative_subtitles(rows[0]["videos"][0], "warm-up")
    runtime.query_native(rows[0]["videos"][0], "warm-up?", ["a", "b"])
    runtime.run_ocr(runtime.extract_frames(rows[0]["videos"][0], 1)[0])
    runtime.detect_object(runtime.extract_frames(rows[0]["videos"][0], 1)[0], "warm-up")
    counting.generate_calls = counting.requests = 0
    t0 = time.perf_counter()
    batch = score_completions(rows, completions, config, runtime=runtime)
    wall = time.perf_counter() - t0
    return {"label": label, "wall_s": round(wall, 2), "module_calls": int(batch.timing["module_calls"]),
            "module_calls_computed": int(batch.timing["module_calls_computed"]) if config.use_call_cache
            else int(batch.timing["module_calls"]),
            "vlm_generate_calls": counting.generate_calls, "vlm_requests": counting.requests,
            "total": batch.total, "mean_total": batch.mean()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=None, help="folder for the toy assets (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    from inference.toy import build_toy_assets
    from rewards import RewardConfig

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_rewards_"))
    assets = build_toy_assets(work)
    records = [r for r in assets.video.qa_records if r.answer][:4]
    rows, completions = [], []
    for record in records:
        word = next((s.text for s in assets.video.scenes if s.text.lower() in record.question.lower()),
                    assets.video.scenes[0].text)
        row = {"id": record.id, "videos": [record.video], "question": record.question,
               "choices": record.choices, "solution": record.answer, "mode_label": "program",
               "duration": assets.video.duration, "subtitles": str(assets.video.subtitle_path)}
        for text in group_for(word):
            rows.append(row)
            completions.append(text)
    common = dict(answering_vlm="module_config", program_timeout_s=600.0)
    ours = run("ours: 8 workers, cache, batched VLM calls",
               RewardConfig(exec_workers=8, use_call_cache=True, batch_vlm_calls=True, **common),
               rows, completions, assets, work / "ours")
    base = run("baseline: one by one, no cache, no batching",
               RewardConfig(exec_workers=1, use_call_cache=False, batch_vlm_calls=False, **common),
               rows, completions, assets, work / "baseline")
    same = ours["total"] == base["total"]
    print(f"Scoring one GRPO step: {len(records)} questions x 8 completions ({len(rows)} programs), "
          f"tiny Qwen3-VL in-process, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| run | wall (s) | module calls | computed | VLM generate calls | VLM requests |")
    print("|---|---|---|---|---|---|")
    for r in (ours, base):
        print(f"| {r['label']} | {r['wall_s']} | {r['module_calls']} | {r['module_calls_computed']} | "
              f"{r['vlm_generate_calls']} | {r['vlm_requests']} |")
    print(f"\nratio ours / baseline wall time: {ours['wall_s'] / base['wall_s']:.2f} (target <= 0.33); "
          f"same rewards: {same}; mean reward {ours['mean_total']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ours": ours, "baseline": base, "same_rewards": same}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
