"""``videopro-run``: answer one question about one video (generate -> execute -> refine).

Flags follow the original release's ``src/run.py`` (``--video --question --choices
--clip-save-folder --clip-duration --workers --confidence-threshold --max-refine-rounds
--model --code-file --output --quiet``) plus ``--api-base`` for the served model and
``--checkpoint`` to run a local checkpoint in-process instead. Every runner setting
(``inference.runner.RunnerConfig``: the paper's sampling, τ, final-answer rule, ...) and every
module-library setting (``ModuleConfig``) is a flag too, and ``--config recipe.yaml`` sets any
of them (``configs/inference/paper.yaml`` spells out the paper's settings, which are also the
defaults).

    videopro-run --video v.mp4 --question "What colour is the car?" --choices red blue green \\
        --api-base http://127.0.0.1:8007/v1 --model qwen3vl --output result.json
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.config import config_field, parse_configs
from inference.errors import VideoInputError
from inference.modules import ModuleConfig, ModuleRuntime
from inference.runner import AdaptiveRunner, RunnerConfig


@dataclass
class RunConfig:
    """The command's own inputs and outputs (the runner's settings are in ``RunnerConfig``, the
    module library's in ``ModuleConfig``)."""

    video: str = config_field(None, "Path of the input video (required).")
    question: str = config_field(None, "The multiple-choice question (required).")
    choices: list[str] = config_field(None, "The answer options as plain texts, at least two.")
    subtitles: str | None = config_field(None, "Subtitle file (.srt/.json) of the video, if any.")
    code_file: str | None = config_field(None, "Execute this program file instead of generating one (refinement still "
                                               "applies).")
    checkpoint: str | None = config_field(None, "Run this local Qwen-VL checkpoint in-process (transformers) for both "
                                                "program generation and the query_* modules, instead of an "
                                                "OpenAI-compatible server.")
    api_base: str | None = config_field(None, "Base URL of the OpenAI-compatible server (default: $VIDEOPRO_API_BASE, "
                                              "else --vlm_base_url).")
    model: str | None = config_field(None, "Served model name (default: $VIDEOPRO_MODEL, else ask the server).")
    program_timeout_s: float = config_field(1800.0, "Wall-clock limit of one program in the sandbox, module calls "
                                                    "included.")
    call_cache_dir: str | None = config_field(None, "Persist the module-call cache here so reruns and threshold "
                                                    "sweeps reuse calls.")
    output: str | None = config_field(None, "Write the full result (all rounds) as JSON here.")
    quiet: bool = config_field(False, "Print only the final answer.")


def _check_endpoint(base_url: str) -> None:
    """Fail early, and clearly, when the OpenAI-compatible server cannot be reached."""
    url = base_url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=10):
            return
    except urllib.error.HTTPError:
        return  # reachable; an auth or routing problem will surface with its own message
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(
            f"error: cannot reach the VLM endpoint {base_url} ({getattr(exc, 'reason', exc)}). Start a "
            f"server (e.g. `vllm serve MODEL --port 8007`), pass --api-base with its URL, or run a "
            f"local checkpoint in-process with --checkpoint DIR.") from None


def build_runtime(run: RunConfig, modules: ModuleConfig) -> ModuleRuntime:
    """The module runtime with the backend the flags select."""
    if run.checkpoint:
        modules.vlm_backend, modules.vlm_checkpoint = "transformers", run.checkpoint
    else:
        modules.vlm_base_url = run.api_base or os.environ.get("VIDEOPRO_API_BASE") or modules.vlm_base_url
        modules.vlm_model = run.model or os.environ.get("VIDEOPRO_MODEL") or modules.vlm_model
    return ModuleRuntime(modules)


def main(argv: Sequence[str] | None = None) -> int:
    from inference.call_cache import CallCache
    from inference.sandbox import ProgramExecutor, SandboxLimits

    # 1. Configuration: defaults < --config YAML < flags; check the question before loading anything.
    run, runner_config, modules = parse_configs((RunConfig, RunnerConfig, ModuleConfig), argv)
    missing = [name for name in ("video", "question", "choices") if not getattr(run, name)]
    if missing:
        raise SystemExit(f"error: missing required flag(s): {', '.join('--' + m for m in missing)}")
    if len(run.choices) < 2:
        raise SystemExit(f"error: --choices needs at least two options, got {run.choices!r}")
    # A missing video is the commonest mistake: say so before models load and workers start
    # (an unreadable one is reported by the video store's probe, below).
    if not Path(run.video).is_file():
        raise SystemExit(f"error: --video {run.video!r} does not exist (no such file)")
    code = None
    if run.code_file:
        if not Path(run.code_file).is_file():
            raise SystemExit(f"error: --code-file {run.code_file!r} does not exist")
        code = Path(run.code_file).read_text()
    say = (lambda message: None) if run.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    if run.quiet:  # "print only the final answer": no weight-loading progress bars either
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    # 2. Backends: the module runtime (video store, VLM, retrieval, ...) and the sandbox.
    runtime = build_runtime(run, modules)
    if runtime.config.vlm_backend == "openai":
        _check_endpoint(runtime.config.vlm_base_url)
    if run.subtitles:
        runtime.register_subtitles(run.video, run.subtitles)
    cache = CallCache(run.call_cache_dir)
    limits = SandboxLimits(total_time_s=run.program_timeout_s)

    # 3. generate -> execute -> refine (the cache identity is read once per execution).
    with ProgramExecutor(runtime.functions(), limits=limits, cache=cache,
                         cache_identity=runtime.cache_identity, video_context=runtime.subtitle_identity) as executor:
        runner = AdaptiveRunner(runtime.vlm, executor, runtime, runner_config, progress=say)
        try:
            result = runner.run(run.video, run.question, run.choices, code=code)
        except VideoInputError as exc:
            raise SystemExit(f"error: {exc}") from None

    # 4. Report (the JSON record is written whether or not there is an answer).
    print(f"Answer: {result.answer or '(none)'} (confidence={result.confidence:.2f})")
    if run.output:
        out = Path(run.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        # Strict JSON (no NaN/Infinity): the executor nulls non-finite numbers a program returns.
        tmp.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, allow_nan=False))
        os.replace(tmp, out)
        say(f"Saved the result to {out}")
    if not result.answer:
        # No answer is a failure of the run, said on stderr even with --quiet.
        if result.host_error:
            why = (f"a module backend failed outside the program ({result.host_error}); check the "
                   "VLM endpoint / model backend and run again")
        else:
            why = ("no round produced a valid answer"
                   + ("" if runner_config.fallback_native else
                      " and the query_native fallback is off (--fallback_native to answer with it)"))
        print(f"error: no answer: {why} (stopped_reason: {result.stopped_reason})", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
