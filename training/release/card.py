"""The model card (``README.md``) of a release, rendered from its manifest.

The YAML header is huggingface_hub's ``ModelCardData`` (licence, base model, tags, datasets and
the headline accuracies as ``model-index`` results); the body is plain Python text: what the
model is, how to serve and run it, the settings that travel with the weights, the training data
(counts per trajectory kind), the SFT/GRPO recipes, the evaluation tables taken from the
``videopro-eval report`` JSON, versions, intended use, the paper's stated limitations, the
citation and the licence.
"""

from __future__ import annotations

from typing import Any

from inference.evaluation.reports import BENCHMARK_LABELS, PARADIGM_LABELS

PAPER_TITLE = "VideoPro: Adaptive Program Reasoning for Long Video Understanding"
PAPER_URL = "https://arxiv.org/abs/2509.17743"
# The release README's BibTeX entry (shared/seeds/videopro_readme.txt).
CITATION = "\n".join([
    "@article{li2025videopro,",
    "title={VideoPro: Adaptive Program Reasoning for Long Video Understanding},",
    "author={Li, Chenglin and Han, Feng and Wang, Yikun and Li, Ruilin and Dong, Shuai and Hou, Haowen and Li, "
    "Haitao and Chen, Qianglong and Tao, Feng and Tong, Jingqi and others},",
    "journal={arXiv preprint arXiv:2509.17743},",
    "year={2025}",
    "}"])
# Hub dataset ids of the benchmarks, for the card's model-index results.
BENCHMARK_DATASETS = {"lvbench": "lmms-lab/LVBench", "videomme": "lmms-lab/Video-MME",
                      "longvideobench": "longvideobench/LongVideoBench", "mlvu": "MLVU/MVLU",
                      "cgbench": "CG-Bench/CG-Bench"}

# The recipe settings each card table shows (the whole config is in sft_config.json / grpo_config.json).
SFT_KEYS = ("model_name_or_path", "lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules",
            "lora_modules_to_save", "learning_rate", "lr_scheduler_type", "warmup_ratio", "weight_decay",
            "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
            "max_length", "train_on", "torch_dtype", "deepspeed", "seed", "train_file")
GRPO_KEYS = ("model_name_or_path", "num_generations", "temperature", "top_p", "top_k", "max_completion_length",
             "learning_rate", "beta", "epsilon", "epsilon_high", "loss_type", "scale_rewards", "num_iterations",
             "reward_funcs", "reward_weights", "reward_vlm", "lora_rank", "lora_alpha", "num_train_epochs",
             "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "rollout_engine", "deepspeed",
             "seed", "train_file")
KIND_LABELS = {"R1": "R1 native reasoning (native answer correct and confident)",
               "R2": "R2 program reasoning (a teacher program that answered correctly)",
               "R3": "R3 bug fix (a failed program and its error log, then a fixed program)",
               "R4": "R4 refinement (a low-confidence or wrong answer, then a revised program)"}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def card_metadata(manifest: dict[str, Any]) -> Any:
    """The card's YAML metadata as ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import EvalResult, ModelCardData

    base = manifest["base_model"]
    results = []
    for entry in manifest.get("evaluation") or []:
        for run in entry["runs"]:
            if run["headline"] is None:
                continue
            bench, paradigm = run["benchmark"], run["paradigm"]
            results.append(EvalResult(
                task_type="video-text-to-text", task_name="Long video question answering",
                dataset_type=BENCHMARK_DATASETS.get(bench, bench),
                dataset_name=f"{BENCHMARK_LABELS.get(bench, bench)} ({PARADIGM_LABELS.get(paradigm, paradigm)})",
                metric_type="accuracy", metric_name=run["headline_definition"],
                metric_value=round(float(run["headline"]), 2)))
    tags = ["videopro", "video-understanding", "long-video", "visual-programming", "program-reasoning",
            *(s for s in manifest.get("stages") or []), base.get("model_type") or "qwen-vl"]
    return ModelCardData(
        license=base.get("license") or "other", base_model=base.get("hub_id") or None, library_name="transformers",
        pipeline_tag="video-text-to-text", tags=tags, datasets=manifest.get("datasets") or None,
        model_name=manifest["model_name"], eval_results=results or None)


def _usage(m: dict[str, Any]) -> list[str]:
    name = m["model_name"]
    folder = f"models/{name}"
    download = (f"hf download {m['repo_id']} --local-dir {folder}" if m.get("repo_id")
                else f"# copy the release folder to {folder}")
    served = "qwen3vl"
    patch = m.get("video_patch_factor")
    return [
        "## How to use", "",
        "The model writes `<planning>` + `<code>` programs over the VideoPro module library; the VideoPro runtime "
        "executes them in its sandbox and refines them (bug fix, native or program refinement). Serve the "
        "weights with vLLM and run the questions with `videopro-run` (or `videopro-eval` for a benchmark):", "",
        "```bash", download,
        f"bash launch/serve.sh {folder} --name {served}        # vllm serve + the frame/pixel limits, "
        "--trust-request-mm-kwargs",
        f"videopro-run --config {folder}/videopro_inference.yaml --api-base http://127.0.0.1:8007/v1 "
        f"--model {served} \\",
        "    --video video.mp4 --question \"What is the person doing?\" --choices \"Cooking\" \"Playing guitar\" "
        "\"Cycling\" \"Swimming\"",
        f"# or in-process with transformers, no server: videopro-run --config {folder}/videopro_inference.yaml "
        f"--checkpoint {folder} ...",
        "```", "",
        "`videopro_inference.yaml` carries the frame policy the model was trained with: a client of the served model "
        "samples and resizes whole videos itself and sends the frames, so it must use the training values"
        + (f" (and `video_patch_factor: {patch}`, which a server does not reveal)" if patch else "") + ". "
        "It also spells out the paper's runner settings (τ = 0.75, one refinement round, final answer = last valid "
        "round).", "",
    ]


def _settings(m: dict[str, Any]) -> list[str]:
    gen = m["generation_config"]
    policy = m["frame_policy"]
    recorded = m.get("frame_policy_recorded")
    lines = ["## Settings that travel with the weights", "",
             _table(["file", "what it holds"], [
                 ["`generation_config.json`", f"program sampling, as in the paper: temperature {gen['temperature']}, "
                  f"top-p {_fmt(gen['top_p'], 2)}, top-k {_fmt(gen['top_k'])} (the base model's), at most "
                  f"{gen['max_new_tokens']} new tokens: what `vllm serve` samples with by default"],
                 ["`chat_template.jinja`, processor files", "the base model's chat template and processors"],
                 ["`sft_config.json`" + (", `grpo_config.json`" if "grpo" in (m.get("stages") or []) else ""),
                  "the training recipes; `video_*`: the frame policy (the runtime warns when it differs)"],
                 ["`videopro_inference.yaml`", "`--config` for `videopro-run` / `videopro-eval`: frame policy, "
                  "patch factor, the paper's runner settings"],
                 ["`videopro_versions.json`", "prompt and module-library versions the model was trained with"],
                 ["`videopro_release.json`", "this release's manifest: sources, counts, numbers, files"]]), "",
             "Frame policy (whole videos, qwen-vl-utils style sampling)"
             + ("" if recorded else " — **not recorded with the checkpoint: the paper's defaults**") + ":", "",
             _table(["setting", "value"], [[f"`{k}`", v] for k, v in policy.items()]), ""]
    return lines


def _data(m: dict[str, Any]) -> list[str]:
    data = m.get("data") or {}
    synth = data.get("synthesis")
    rows = data.get("train_rows") or {}
    lines = ["## Training data", ""]
    if not synth and not rows:
        return lines + ["The data provenance of this checkpoint was not recorded.", ""]
    if synth:
        lines += [f"Synthesized by VideoPro's `data_synthesis` from {synth.get('questions')} multiple-choice "
                  f"questions: a teacher LLM (`{synth.get('teacher_model') or '?'}`) wrote programs, the native "
                  "model's confidence labelled each question, every program was executed and only verified "
                  f"trajectories were kept ({synth.get('provenance_records') or '?'} provenance records; "
                  f"synthesis output `{data.get('synthesis_dir')}`).", ""]
    kinds = sorted({*((synth or {}).get("by_kind") or {}), *(k for r in rows.values() for k in r["by_kind"])})
    headers = ["trajectory kind"] + (["synthesized"] if synth else []) + [f"{s.upper()} rows" for s in rows]
    table = []
    for kind in kinds:
        table.append([KIND_LABELS.get(kind, kind)] + ([((synth or {}).get("by_kind") or {}).get(kind, 0)]
                                                      if synth else [])
                     + [r["by_kind"].get(kind, 0) for r in rows.values()])
    table.append(["**total**"] + ([sum(((synth or {}).get("by_kind") or {}).values())] if synth else [])
                 + [r["rows"] for r in rows.values()])
    lines += [_table(headers, table), ""]
    if synth and synth.get("refine_samples"):
        refine = synth["refine_samples"]
        lines += ["Refinement samples by type (synthesized): " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in refine.items() if k != "total") + ".", ""]
    for stage, r in rows.items():
        lines.append(f"- {stage.upper()} rows: `{r['file']}`")
    return lines + [""]


def _recipes(m: dict[str, Any]) -> list[str]:
    training = m.get("training") or {}
    if not training:
        return []
    lines = ["## Training recipe", "",
             "LoRA on every linear layer of the language model (vision tower frozen), merged into the base weights "
             "for this release. SFT on R1–R4 trajectories, then GRPO with rewards from executing every sampled "
             "program (R = 0.5 accuracy + 0.2 format + 0.3 mode in the paper).", ""]
    for stage, keys in (("sft", SFT_KEYS), ("grpo", GRPO_KEYS)):
        if stage not in training:
            continue
        cfg, summary = training[stage]["config"], training[stage].get("summary") or {}
        rows = [[f"`{k}`", f"`{cfg[k]}`" if isinstance(cfg[k], str) else cfg[k]]
                for k in keys if k in cfg and cfg[k] not in ("", None)]
        if summary.get("steps") is not None:
            rows.append(["optimiser steps run", summary["steps"]])
        if summary.get("final_train_loss") is not None:
            rows.append(["last logged training loss", _fmt(float(summary["final_train_loss"]), 4)])
        if summary.get("final_reward_mean") is not None:
            rows.append(["last mean reward", _fmt(float(summary["final_reward_mean"]), 4)])
        lines += [f"### {stage.upper()}", "", _table(["setting", "value"], rows), "",
                  f"The whole configuration is in `{'sft_config.json' if stage == 'sft' else 'grpo_config.json'}`.",
                  ""]
    return lines


def _evaluation(m: dict[str, Any]) -> list[str]:
    entries = m.get("evaluation") or []
    lines = ["## Evaluation", ""]
    if not entries:
        return lines + ["> **No evaluation report was supplied with this release**, so there are no numbers here. "
                        "Evaluate it with `videopro-eval` (docs/evaluation.md) before relying on it.", ""]
    lines += ["Numbers from `videopro-eval report` (copied under `evaluation/`): every question counts, an error "
              "or an unparseable answer is wrong; final answer = the latest valid round (the paper's rule). "
              "Paper: the paper's value for the same benchmark and reasoning paradigm, "
              f"{m['base_model'].get('paper_model')} rows.", ""]
    for entry in entries:
        rows = [[BENCHMARK_LABELS.get(r["benchmark"], r["benchmark"]),
                 PARADIGM_LABELS.get(r["paradigm"], r["paradigm"]), r["labelled"],
                 f"{_fmt(r['headline'])} ({r['headline_definition']})", _fmt(r["accuracy_max_confidence"]),
                 _fmt(r["paper"]), _fmt(r["mean_output_tokens"], 0), _fmt(r["mean_runtime_s"], 2),
                 f"{_fmt(r['native_share'])} / {_fmt(r['program_share'])}", _fmt(r["refinement_ratio"]),
                 r["no_valid_answer"]] for r in entry["runs"]]
        lines += [f"Report `{entry.get('copied_to') or entry['name']}`:", "", _table(
            ["benchmark", "method", "questions", "accuracy %", "acc. % (max-confidence rule)", "paper %",
             "output tokens", "runtime s", "native / program %", "refined %", "no valid answer"], rows), ""]
        models = sorted({str(r["model"]) for r in entry["runs"] if r.get("model")})
        if models:
            lines += ["Evaluated model: " + ", ".join(f"`{x}`" for x in models) + ".", ""]
    return lines


def _versions(m: dict[str, Any]) -> list[str]:
    v = m["versions"]
    trained, now = v.get("trained_with"), v["release_code"]
    rows = []
    for key, label in (("prompt_version", "prompt version (`inference.prompts.PROMPT_VERSION`)"),
                       ("module_library_version", "module library (`inference.modules.module_library_version()`)"),
                       ("git_commit", "code commit")):
        rows.append([label, f"`{(trained or {}).get(key)}`" if trained and trained.get(key) else "not recorded",
                     f"`{now.get(key)}`"])
    return ["## Versions", "", _table(["", "trained with", "release made with"], rows), "",
            "Run the model with the prompts and module library it was trained with (the code at the training "
            "commit); a different prompt version changes what the model is asked.", ""]


def render_card(manifest: dict[str, Any]) -> str:
    """The whole ``README.md`` of a release."""
    m = manifest
    base = m["base_model"]
    stages = " + ".join(s.upper() for s in m.get("stages") or []) or "unknown training"
    foundation = base.get("hub_id") or base.get("foundation") or "?"
    body = [
        f"# {m['model_name']}", "",
        f"A VideoPro checkpoint ({stages}) of `{foundation}` for multiple-choice question answering over long "
        "videos. For each question it decides whether to answer natively or to write an executable visual "
        "program over a library of video modules (clip retrieval, temporal trimming, detection, OCR, subtitle "
        "hints, frame queries), and it refines a program that failed or answered with low confidence "
        f"([{PAPER_TITLE}]({PAPER_URL})).", "",
        _table(["", ""], [
            ["base model", f"`{foundation}`" + (f" (merged into `{base['merged_into']}`)"
                                                if base.get("merged_into") and base.get("merged_into") != foundation
                                                else "")],
            ["training", stages], ["weights", f"{m.get('dtype') or '?'} safetensors, LoRA merged"],
            ["licence", base.get("license") or "other (unknown: see the base model)"],
            ["release", f"`{m['release_id']}`, {m['created']}"]]), "",
        *_usage(m), *_settings(m), *_data(m), *_recipes(m), *_evaluation(m), *_versions(m),
        "## Intended use", "",
        "Research on long-video understanding: answering multiple-choice questions about long videos with the "
        "VideoPro runtime, reproducing and extending the paper's experiments. The model's outputs are programs that "
        "must be run in VideoPro's sandbox; it is not a general chat model, and its answers are not fit for "
        "decisions about people.", "",
        "## Limitations", "",
        "As the paper states them:", "",
        "- Temporal grounding rests on a hand-built library of vision modules: new categories or domains need new "
        "modules or task-specific training, which limits zero-shot flexibility.",
        "- The model can be overconfident — confidences above 0.9 on wrong reasoning or answers occur — and "
        "self-refinement cannot help when the model is confidently wrong, which may mislead users.", "",
        "The paper also names risks: in high-stakes uses (e.g. forensics, autonomous monitoring) overconfident wrong "
        "answers fail silently and can bias human decisions; the LLMs used for program synthesis and summaries can "
        "hallucinate; and the teacher-synthesized training data, further optimised with GRPO, can carry and amplify "
        "the teacher models' social and cultural biases.", "",
        "## Citation", "", "```bibtex", CITATION, "```", "",
        "## Licence", "",
        f"The weights derive from `{foundation}` and are released under its licence: "
        f"{base.get('license') or 'unknown — check the base model card before using or redistributing them'}.", "",
    ]
    if m.get("warnings"):
        body += ["## Release notes", "", "Warnings raised while building this release:", "",
                 *[f"- {w}" for w in m["warnings"]], ""]
    metadata = card_metadata(m)
    return f"---\n{metadata.to_yaml()}\n---\n\n" + "\n".join(body)
