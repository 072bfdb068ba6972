"""Build a standalone release folder from a LoRA adapter or a merged checkpoint.

The folder is what a researcher downloads and serves::

    config.json, model-0000i-of-0000n.safetensors, model.safetensors.index.json   merged weights (sharded)
    processor_config.json, tokenizer*.json, chat_template.jinja ...              the processor, chat template
    generation_config.json     the paper's program sampling (temperature 0.7, the base's top-p/top-k,
                               4,096 new tokens): what `vllm serve` samples with by default
    sft_config.json            the frame policy the model was trained with (and the SFT recipe);
    grpo_config.json           the GRPO recipe, for a GRPO release
    videopro_inference.yaml    `videopro-run/videopro-eval --config`: the frame policy, the vision patch
                               factor and the paper's runner settings, so a client of the served model
                               samples videos as in training
    videopro_versions.json     the prompt and module-library versions the model was trained with
    videopro_release.json      the manifest: source, base chain, licence, versions, data counts,
                               evaluation numbers, warnings, the file list
    evaluation/<name>/report.{json,md}  the evaluation reports the card's tables come from
    README.md                  the model card

It is written to ``<output_dir>.partial-<pid>`` and renamed when complete, so an interrupted
build never leaves a folder that looks finished.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inference.video_sampling import FRAME_POLICY_FIELDS, FramePolicy, checkpoint_patch_factor
from training.common.versions import VERSIONS_FILE, code_versions, read_versions
from training.release.config import ReleaseConfig

RELEASE_MANIFEST = "videopro_release.json"
INFERENCE_CONFIG = "videopro_inference.yaml"
CARD_FILE = "README.md"
EVALUATION_DIR = "evaluation"
RECIPE_FILES = {"sft": "sft_config.json", "grpo": "grpo_config.json"}
MANIFEST_FORMAT = "videopro-release/1"

# Files of a training folder that are no part of a model (a checkpoint-* holds them all).
_TRAINING_LEFTOVERS = re.compile(r"^(optimizer\.pt|scheduler\.pt|rng_state.*\.pth|trainer_state\.json|"
                                 r"training_args\.bin|engine_state\.pt|train_summary\.json)$")
_GENERATED = {CARD_FILE, RELEASE_MANIFEST, INFERENCE_CONFIG}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_CACHE = re.compile(r"models--([^/]+)--([^/]+)/snapshots/")

Warn = Callable[[str], None]


class ReleaseError(RuntimeError):
    """A problem with the user's inputs; the message says what to do."""


@dataclass
class Release:
    """A finished release folder."""

    path: Path
    manifest: dict[str, Any]
    card: str
    warnings: list[str] = field(default_factory=list)

    def files(self) -> list[tuple[str, int]]:
        """``(relative path, size in bytes)`` of every file that would be uploaded, sorted."""
        return release_files(self.path)


def release_files(folder: str | Path) -> list[tuple[str, int]]:
    root = Path(folder)
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def load_release(folder: str | Path) -> Release:
    """An existing release folder (built earlier by :func:`build_release`)."""
    path = Path(folder)
    manifest_path = path / RELEASE_MANIFEST
    if not manifest_path.is_file():
        raise ReleaseError(f"{path} is not a release folder (no {RELEASE_MANIFEST}); build one with --adapter DIR "
                           f"or --checkpoint DIR and --output_dir {path}")
    manifest = json.loads(manifest_path.read_text())
    card = (path / CARD_FILE).read_text() if (path / CARD_FILE).is_file() else ""
    return Release(path, manifest, card, list(manifest.get("warnings") or []))


# ----------------------------------------------------------------------------------- helpers

def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def base_chain(path: str | Path | None, limit: int = 8) -> list[str]:
    """``[path, its base, the base's base, ...]`` following the ``merge_info.json`` that
    ``training.merge_lora`` writes and the manifests of earlier releases. A GRPO adapter's base is
    the merged SFT checkpoint, whose base is the foundation model: the last entry."""
    chain: list[str] = []
    current = str(path) if path else None
    while current and len(chain) < limit and current not in chain:
        chain.append(current)
        folder = Path(current)
        nxt = None
        if folder.is_dir():
            manifest = _read_json(folder / RELEASE_MANIFEST) or {}
            merge = _read_json(folder / "merge_info.json") or {}
            nxt = (manifest.get("base_model") or {}).get("foundation") or merge.get("base_model")
        current = nxt
    return chain


def hub_id_of(path: str) -> str | None:
    """The hub repository id a base path names: the path itself when it is an id and no local
    folder, or the ``models--org--name`` of a hub-cache snapshot."""
    if not path:
        return None
    match = _HUB_CACHE.search(Path(path).as_posix() + "/")
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    if not Path(path).exists() and _HUB_ID.match(path):
        return path
    return None


def license_of(chain: Iterable[str]) -> str | None:
    """The ``license`` in the model-card metadata of the first folder of ``chain`` that has one."""
    from huggingface_hub.repocard import metadata_load

    for entry in chain:
        readme = Path(entry) / CARD_FILE
        if readme.is_file():
            meta = metadata_load(readme) or {}
            if meta.get("license"):
                return str(meta["license"])
    return None


def _model_type(folder: str | Path) -> str | None:
    cfg = _read_json(Path(folder) / "config.json")
    return cfg.get("model_type") if cfg else None


def _structure(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of a Qwen-VL ``config.json`` that decide the shapes of its layers."""
    text = config.get("text_config") or config
    return {"model_type": config.get("model_type"), "architectures": config.get("architectures"),
            **{k: text.get(k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                        "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size")}}


# --------------------------------------------------------------------- adapter / base checks

def check_adapter_base(adapter_dir: str | Path, base: str | None, warn: Warn) -> str:
    """The base to merge ``adapter_dir`` into (``base`` or the recorded one), after checking that
    every tensor of the adapter fits a layer of that base. Raises :class:`ReleaseError` with what
    to do when the base is missing or does not match."""
    from safetensors import safe_open

    from training.merge_lora import base_model_of

    adapter = Path(adapter_dir)
    if not adapter.is_dir():
        raise ReleaseError(f"--adapter {adapter} does not exist; pass an SFT/GRPO <output_dir>/final or "
                           f"checkpoint-* folder")
    if (adapter / "config.json").is_file() and not (adapter / "adapter_config.json").is_file():
        raise ReleaseError(f"--adapter {adapter} holds a full checkpoint, not a LoRA adapter; release it with "
                           f"--checkpoint {adapter}")
    try:
        recorded = base_model_of(adapter)
    except (FileNotFoundError, ValueError) as exc:
        if base and isinstance(exc, ValueError):
            recorded = None
        else:
            raise ReleaseError(str(exc)) from None
    chosen = base or recorded
    assert chosen
    if not Path(chosen).is_dir():
        if hub_id_of(chosen) and not Path(chosen).is_absolute():
            raise ReleaseError(f"the adapter's base {chosen!r} is not a local folder; download it first (`hf download "
                               f"{chosen} --local-dir models/{chosen.split('/')[-1]}`) and pass --base with that "
                               f"folder, so its layers can be checked against the adapter")
        raise ReleaseError(f"the adapter's base {chosen} does not exist on this machine"
                           + (f" (recorded in {adapter / 'adapter_config.json'})" if chosen == recorded else "")
                           + "; pass --base with the checkpoint the adapter was trained on")
    base_cfg = _read_json(Path(chosen) / "config.json")
    if base_cfg is None:
        raise ReleaseError(f"--base {chosen} has no config.json; pass a transformers checkpoint folder")
    if recorded and chosen != recorded and Path(recorded).is_dir():
        rec_cfg = _read_json(Path(recorded) / "config.json") or {}
        if _structure(rec_cfg) != _structure(base_cfg):
            raise ReleaseError(
                f"--base {chosen} ({_structure(base_cfg)}) does not match the base the adapter was trained on, "
                f"{recorded} ({_structure(rec_cfg)}); pass --base {recorded} or drop --base")
        warn(f"merging into --base {chosen} instead of the recorded base {recorded} (same architecture); make sure "
             f"it holds the weights the adapter was trained on")
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise ReleaseError(f"{adapter} has no adapter_model.safetensors; pass a folder saved by the SFT/GRPO stage")
    with safe_open(str(weights), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    problems = _adapter_misfits(shapes, chosen)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; ... ({len(problems)} in all)" if len(problems) > 3 else "")
        trained_on = f" It was trained on {recorded}." if recorded and recorded != chosen else ""
        raise ReleaseError(f"adapter {adapter} does not fit base {chosen} ({_model_type(chosen)}): {shown}."
                           f"{trained_on} Pass --base with the checkpoint the adapter was trained on.")
    return chosen


def _adapter_misfits(shapes: dict[str, tuple[int, ...]], base: str) -> list[str]:
    """Adapter tensors that no layer of ``base`` takes (built on the meta device: no weights load)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(base)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    modules = dict(model.named_modules())
    params = {name: tuple(p.shape) for name, p in model.named_parameters()}
    problems = []
    for key, shape in sorted(shapes.items()):
        name = key.removeprefix("base_model.model.")
        lora = re.match(r"^(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$", name)
        if lora:
            module = modules.get(lora.group(1))
            weight = getattr(module, "weight", None)
            if weight is None or weight.dim() != 2:
                problems.append(f"{lora.group(1)} (a LoRA target) is no linear layer of the base")
                continue
            out_features, in_features = weight.shape
            want = in_features if lora.group(2) == "A" else out_features
            got = shape[1] if lora.group(2) == "A" else shape[0]
            if got != want:
                side = "in" if lora.group(2) == "A" else "out"
                problems.append(f"{lora.group(1)}: the adapter expects {got} {side}-features, the base has {want}")
        elif name in params and params[name] != shape:
            problems.append(f"{name}: the adapter's fully trained copy has shape {list(shape)}, the base "
                            f"{list(params[name])}")
        elif name not in params:
            problems.append(f"{name} is not a parameter of the base")
    return problems


# ------------------------------------------------------------------- recipes, data, versions

def _find_in(folders: Iterable[str | Path], name: str) -> Path | None:
    for folder in folders:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    return None


def _training_summary(run_folder: Path) -> dict[str, Any] | None:
    """Steps and last logged numbers from the ``train_summary.json`` that SFT (``log_history``)
    and GRPO (``steps``, ``history``) write next to their final adapter, with the ``stage`` that
    wrote it."""
    data = _read_json(run_folder.parent / "train_summary.json")
    if not data:
        return None
    if "log_history" in data:  # SFT: the transformers Trainer's log
        history = data["log_history"] or []
        losses = [e for e in history if "loss" in e]
        evals = [e for e in history if "eval_loss" in e]
        return {"stage": "sft", "steps": max((int(e.get("step", 0)) for e in history), default=None),
                "final_train_loss": losses[-1]["loss"] if losses else None,
                "final_eval_loss": evals[-1]["eval_loss"] if evals else None}
    history = data.get("history") or []  # GRPO: one entry per optimiser step
    last = history[-1] if history else {}
    return {"stage": "grpo", "steps": data.get("steps"), "final_train_loss": last.get("loss"),
            "final_reward_mean": last.get("reward/total/mean")}


def _synthesis_dir_from(train_file: str) -> Path | None:
    """``<synthesis>/dataset/<sft|grpo>/train.jsonl`` -> ``<synthesis>`` (data_synthesis/export.py)."""
    path = Path(train_file)
    if len(path.parents) >= 3 and path.parents[1].name == "dataset":
        return path.parents[2]
    return None


def _count_rows(path: Path) -> dict[str, Any]:
    from inference.jsonl_io import read_jsonl_tolerant

    rows = read_jsonl_tolerant(path)
    return {"file": str(path), "rows": len(rows),
            "by_kind": dict(sorted(Counter(str(r.get("kind") or "unknown") for r in rows).items())),
            "by_refine_type": dict(sorted(Counter(str(r["refine_type"]) for r in rows
                                                  if r.get("refine_type")).items()))}


def data_summary(training: dict[str, dict[str, Any]], synthesis_dir: str) -> tuple[dict[str, Any], list[str]]:
    """Where the training rows came from and how many of each trajectory kind there were: the
    synthesis run's ``stats.json`` and the rows each stage trained on (counted from its
    train_file). Returns the summary and the warnings for what could not be found."""
    warnings: list[str] = []
    out: dict[str, Any] = {"synthesis_dir": None, "synthesis": None, "train_rows": {}}
    train_files = {stage: str(t["config"].get("train_file") or "") for stage, t in training.items()}
    synth = Path(synthesis_dir) if synthesis_dir else None
    if synth is None:
        guesses = [_synthesis_dir_from(tf) for tf in train_files.values() if tf]
        synth = next((g for g in guesses if g is not None and (g / "stats.json").is_file()), None)
    if synth is not None:
        stats = _read_json(synth / "stats.json")
        if stats is None:
            warnings.append(f"--synthesis_dir {synth} has no stats.json; the card's data counts come from the "
                            "training rows only")
        else:
            provenance = synth / "dataset" / "provenance.jsonl"
            teacher = stats.get("teacher") or {}
            out["synthesis_dir"] = str(synth.resolve())
            out["synthesis"] = {
                "questions": stats.get("questions"), "reasoning_samples": stats.get("reasoning_samples"),
                "refine_samples": stats.get("refine_samples"), "by_kind": stats.get("by_kind"),
                "datasets": stats.get("datasets"), "teacher_model": teacher.get("model"),
                "teacher_cost_usd": teacher.get("total_cost_usd"), "versions": stats.get("versions"),
                "provenance_records": (sum(1 for line in provenance.open() if line.strip())
                                       if provenance.is_file() else None)}
    for stage, tf in train_files.items():
        if tf and Path(tf).is_file():
            out["train_rows"][stage] = _count_rows(Path(tf))
        elif tf:
            warnings.append(f"the {stage.upper()} rows {tf} are not on this machine; their counts are not in the card")
    if out["synthesis"] is None and not out["train_rows"]:
        warnings.append("no data provenance found (no synthesis stats.json, no training rows): the card says so; "
                        "pass --synthesis_dir with the data-synthesis output folder")
    return out, warnings


def _versions(folders: list[str | Path], data: dict[str, Any]) -> dict[str, Any]:
    trained = None
    source = None
    for folder in folders:
        found = read_versions(folder) if Path(folder).is_dir() else None
        if found:
            trained, source = found, f"{Path(folder) / VERSIONS_FILE}"
            break
    if trained is None and (data.get("synthesis") or {}).get("versions"):
        trained, source = data["synthesis"]["versions"], f"{data['synthesis_dir']}/stats.json"
    return {"trained_with": trained, "trained_with_source": source, "release_code": code_versions()}


# ------------------------------------------------------------------------------ evaluation

def _paper_value(benchmark: str, paradigm: str, paper_model: str) -> float | None:
    from inference.evaluation.reports import PAPER_TABLE1, PAPER_TABLE2

    t2 = PAPER_TABLE2.get(benchmark, {}).get(paradigm)
    if t2 and paper_model == "Qwen3-VL-8B":
        return t2[0]
    if paradigm == "native":
        return PAPER_TABLE1.get(paper_model, {}).get(benchmark)
    if paradigm == "adaptive_refine":
        return PAPER_TABLE1.get(f"{paper_model} + VideoPro", {}).get(benchmark)
    return None


def load_evaluation(paths: list[str], paper_model: str, warn: Warn) -> list[dict[str, Any]]:
    """The card's evaluation entries from ``videopro-eval report`` outputs (``report.json``)."""
    entries = []
    for given in paths:
        path = Path(given)
        report_json = path / "report.json" if path.is_dir() else path
        if not report_json.is_file():
            warn(f"evaluation report {given} not found (no {report_json}); the card is written without its table. "
                 f"Write one with `videopro-eval report RESULTS_DIR... --out DIR` and pass --eval_report DIR")
            continue
        report = json.loads(report_json.read_text())
        runs = []
        for run in report.get("runs") or []:
            last = run["summaries"]["last"]
            other = run["summaries"].get("max_confidence") or {}
            provenance = _read_json(Path(run.get("path") or "/nonexistent") / "provenance.json") or {}
            model = provenance.get("model") or {}
            runs.append({
                "label": run["label"], "benchmark": last["benchmark"], "paradigm": last["paradigm"],
                "questions": last["questions"], "labelled": last["labelled"], "correct": last["correct"],
                "headline": last["headline"], "headline_definition": last["headline_definition"],
                "accuracy": last["accuracy"], "accuracy_max_confidence": other.get("accuracy"),
                "mean_output_tokens": last["mean_output_tokens"], "mean_runtime_s": last["mean_runtime_s"],
                "native_share": last["native_share"], "program_share": last["program_share"],
                "refinement_ratio": last["refinement_ratio"],
                "no_valid_answer": last["failures"]["no_valid_answer"],
                "host_error_rate": last["failures"]["host_error_rate"],
                "paper": _paper_value(last["benchmark"], last["paradigm"], paper_model),
                "model": model.get("checkpoint") or model.get("model"),
                "prompt_version": provenance.get("prompt_version")})
        entries.append({"source": str(report_json.parent.resolve()), "name": report_json.parent.name,
                        "runs": runs})
    return entries


# ---------------------------------------------------------------------------------- building

def _copy_checkpoint(src: Path, dst: Path) -> None:
    """Copy a merged checkpoint's model files (not training leftovers, not generated files)."""
    if (src / "adapter_config.json").is_file() and not (src / "config.json").is_file():
        raise ReleaseError(f"--checkpoint {src} is a LoRA adapter; release it with --adapter {src}")
    if not (src / "config.json").is_file():
        raise ReleaseError(f"--checkpoint {src} has no config.json; pass a merged checkpoint folder "
                           f"(python -m training.merge_lora output or an earlier release)")
    if not any(src.glob("*.safetensors")):
        raise ReleaseError(f"--checkpoint {src} has no safetensors weights (only .bin?); re-save it with "
                           f"save_pretrained(..., safe_serialization=True) or release the adapter with --adapter")
    for item in sorted(src.iterdir()):
        if item.name in _GENERATED or _TRAINING_LEFTOVERS.match(item.name) or item.name.startswith("."):
            continue
        if item.is_dir():
            if item.name == EVALUATION_DIR or item.name.startswith("global_step"):
                continue
            shutil.copytree(item, dst / item.name)
        elif item.suffix != ".bin":
            shutil.copy2(item, dst / item.name)


def write_generation_config(folder: Path) -> dict[str, Any]:
    """Set the paper's program sampling in ``folder/generation_config.json`` (the runner's
    defaults: temperature 0.7, the checkpoint's own top-p/top-k, 4,096 new tokens) and return it."""
    from transformers import GenerationConfig

    from inference.runner import RunnerConfig

    runner = RunnerConfig()
    gen = (GenerationConfig.from_pretrained(str(folder)) if (folder / "generation_config.json").is_file()
           else GenerationConfig())
    gen.do_sample = runner.temperature > 0
    gen.temperature = runner.temperature
    gen.max_new_tokens = runner.max_new_tokens
    if runner.top_p is not None:
        gen.top_p = runner.top_p
    if runner.top_k is not None:
        gen.top_k = runner.top_k
    gen.save_pretrained(str(folder))
    return {"do_sample": gen.do_sample, "temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k,
            "max_new_tokens": gen.max_new_tokens, "repetition_penalty": gen.repetition_penalty}


def inference_settings(frame_policy: dict[str, Any], patch_factor: int | None) -> dict[str, Any]:
    """What ``videopro_inference.yaml`` holds: the runner's paper settings, the trained frame
    policy and the vision patch factor (a served model does not reveal it)."""
    from inference.runner import RunnerConfig

    runner = RunnerConfig()
    # Every runner setting at its paper default except the sampling seed (a run's own choice).
    values: dict[str, Any] = {f.name: getattr(runner, f.name) for f in dataclasses.fields(runner) if f.name != "seed"}
    values.update(frame_policy)
    if patch_factor:
        values["video_patch_factor"] = int(patch_factor)
    return values


def _write_inference_config(folder: Path, values: dict[str, Any], recorded: bool) -> None:
    header = [
        "# VideoPro inference settings for this checkpoint: pass this file to videopro-run / videopro-eval",
        "#   videopro-run --config videopro_inference.yaml --api-base http://127.0.0.1:8007/v1 --video ... ",
        "# The video_* fields are the frame policy the model was trained with"
        + ("" if recorded else " (NOT recorded with this checkpoint: the paper's defaults)") + "; a client of the",
        "# served model must sample and resize whole videos the same way (the server receives the frames).",
        "# The runner settings are the paper's (docs/inference.md); any flag still overrides this file.",
    ]
    (folder / INFERENCE_CONFIG).write_text("\n".join(header) + "\n" + yaml.safe_dump(values, sort_keys=False))


def build_release(cfg: ReleaseConfig, warn: Warn | None = None) -> Release:
    """Build ``cfg.output_dir`` from ``cfg.adapter`` or ``cfg.checkpoint`` (see the module docstring)."""
    from training.release.card import render_card

    warnings: list[str] = []

    def _warn(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    if not cfg.adapter and not cfg.checkpoint:
        raise ReleaseError("nothing to release: pass --adapter DIR (a LoRA adapter) or --checkpoint DIR (a merged "
                           "checkpoint); --output_dir alone uploads an existing release folder")
    out = Path(cfg.output_dir)
    if out.exists() and not cfg.overwrite:
        raise ReleaseError(f"--output_dir {out} exists; pass --overwrite to replace it, or give only --output_dir "
                           f"{out} (no --adapter/--checkpoint) to upload it as it is")
    source = Path(cfg.adapter or cfg.checkpoint).resolve()
    if cfg.checkpoint and not source.is_dir():
        raise ReleaseError(f"--checkpoint {source} does not exist")
    if source == out.resolve() or out.resolve() in source.parents:
        raise ReleaseError(f"--output_dir {out} must not be (inside) the folder being released, {source}")
    base = check_adapter_base(source, cfg.base or None, _warn) if cfg.adapter else None

    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # 1. Weights, config, processor and chat template.
        if cfg.adapter:
            from training.merge_lora import merge_lora

            merge_lora(source, tmp, base, cfg.dtype, cfg.max_shard_size)
            chain = base_chain(base)
            dtype = cfg.dtype
        else:
            _copy_checkpoint(source, tmp)
            chain = base_chain(source)[1:]
            dtype = (_read_json(source / "config.json") or {}).get("dtype") or (
                _read_json(source / "config.json") or {}).get("torch_dtype")
        previous = _read_json(source / RELEASE_MANIFEST) or {}
        folders: list[str | Path] = [source, *chain]
        # Earlier releases along the chain (nearest first): what they recorded and this machine may lack.
        manifests = [m for m in (_read_json(Path(f) / RELEASE_MANIFEST) for f in folders if Path(f).is_dir()) if m]

        def inherited(get: Callable[[dict[str, Any]], Any]) -> Any:
            return next((value for value in map(get, manifests) if value), None)

        # 2. Training recipes (SFT, GRPO), from the source and then its bases.
        training: dict[str, dict[str, Any]] = {}
        for stage, name in RECIPE_FILES.items():
            found = _find_in(folders, name)
            earlier = inherited(lambda m, stage=stage: (m.get("training") or {}).get(stage))
            if found is None:
                if earlier:
                    training[stage] = earlier
                continue
            run_folder = found.parent
            summary = (_training_summary(run_folder)
                       if run_folder.name == "final" or run_folder.name.startswith("checkpoint-") else None)
            if summary is not None and summary.pop("stage") != stage:
                summary = None  # e.g. the SFT recipe a GRPO adapter carries: the summary next to it is GRPO's
            training[stage] = {"config": json.loads(found.read_text()), "config_file": str(found),
                               "summary": summary or (earlier or {}).get("summary")}
            if not (tmp / name).is_file():  # e.g. a GRPO adapter without the SFT frame policy: its base's
                shutil.copyfile(found, tmp / name)
        stage = "grpo" if "grpo" in training else "sft" if "sft" in training else "unknown"
        if stage == "unknown":
            _warn("no training recipe found (no sft_config.json / grpo_config.json with the weights or their "
                  "base): the card has no recipe section")

        # 3. Frame policy: the last training stage's, as sft_config.json carries it for inference.
        policy_src = training.get(stage, {}).get("config") or {}
        frame_policy = {f: policy_src[f] for f in FRAME_POLICY_FIELDS if f in policy_src}
        recorded_policy = bool(frame_policy)
        if stage == "grpo" and "sft" in training:
            sft_policy = {f: training["sft"]["config"][f] for f in frame_policy if f in training["sft"]["config"]}
            if recorded_policy and sft_policy != frame_policy:
                _warn(f"GRPO ran with another frame policy than SFT ({frame_policy} vs {sft_policy}); the release "
                      "carries GRPO's, the last one the weights were trained with")
                sft_cfg = json.loads((tmp / RECIPE_FILES["sft"]).read_text())
                (tmp / RECIPE_FILES["sft"]).write_text(json.dumps({**sft_cfg, **frame_policy}, indent=2))
        defaults = FramePolicy()
        missing = [f for f in FRAME_POLICY_FIELDS if f not in frame_policy]
        if not recorded_policy:
            _warn("the frame policy the model was trained with is not recorded (no sft_config.json): "
                  "videopro_inference.yaml carries the paper's defaults; check them before serving")
        elif missing:  # a recipe saved before these settings existed
            _warn(f"the training recipe does not record {', '.join(missing)} (saved by an older version); "
                  "videopro_inference.yaml uses the current defaults for them: check they match how it was trained")
        frame_policy = {f: frame_policy.get(f, getattr(defaults, f)) for f in FRAME_POLICY_FIELDS}
        patch_factor = checkpoint_patch_factor(tmp)

        # 4. Sampling settings, inference settings, versions.
        generation = write_generation_config(tmp)
        _write_inference_config(tmp, inference_settings(frame_policy, patch_factor), recorded_policy)
        data, data_warnings = data_summary(training, cfg.synthesis_dir)
        earlier_data = inherited(lambda m: m.get("data"))
        if earlier_data and data["synthesis"] is None and not data["train_rows"]:
            data = earlier_data  # an earlier release's counts (its data is not on this machine)
        else:
            for message in data_warnings:
                _warn(message)
        versions = _versions(folders, data)
        trained = versions["trained_with"]
        if trained is None:
            _warn("the prompt / module-library versions the model was trained with are not recorded; the card "
                  "gives the release code's versions")
        else:
            (tmp / VERSIONS_FILE).write_text(json.dumps(trained, indent=2) + "\n")
            now = versions["release_code"]
            for key in ("prompt_version", "module_library_version"):
                if trained.get(key) and trained[key] != now[key]:
                    _warn(f"the model was trained with {key} {trained[key]}, this code has {now[key]}: run it with "
                          f"the code version it was trained with (git {trained.get('git_commit') or '?'})")

        # 5. Base model, licence.
        foundation = chain[-1] if chain else None
        model_type = _model_type(tmp)
        paper_model = "Qwen2.5-VL-7B" if model_type == "qwen2_5_vl" else "Qwen3-VL-8B"
        hub_id = (cfg.base_model_id or next((h for h in map(hub_id_of, chain) if h), None)
                  or inherited(lambda m: (m.get("base_model") or {}).get("hub_id")))
        if not hub_id:
            _warn("the base model's hub id is unknown (its path is no hub id or hub-cache snapshot): the card's "
                  "base_model metadata is left out; pass --base_model_id (e.g. Qwen/Qwen3-VL-8B-Instruct)")
        licence = (cfg.license or license_of(folders)
                   or inherited(lambda m: (m.get("base_model") or {}).get("license")))
        if not licence:
            _warn("the base model's licence is unknown (no license in its README.md metadata): the card says "
                  "'other'; pass --license with the base model's licence")

        # 6. Evaluation tables.
        evaluation = load_evaluation(cfg.eval_report, paper_model, _warn)
        if not cfg.eval_report:
            if previous.get("evaluation") and (source / EVALUATION_DIR).is_dir():
                evaluation = previous["evaluation"]
                shutil.copytree(source / EVALUATION_DIR, tmp / EVALUATION_DIR)
            else:
                _warn("no evaluation report given (--eval_report): the card is written without evaluation "
                      "tables. Evaluate the release (docs/evaluation.md) and release again with --eval_report")
        if cfg.eval_report:
            for index, entry in enumerate(evaluation):
                src = Path(entry["source"])
                name = entry["name"] if sum(e["name"] == entry["name"] for e in evaluation) == 1 \
                    else f"{index}-{entry['name']}"
                dst = tmp / EVALUATION_DIR / name
                dst.mkdir(parents=True, exist_ok=True)
                for file in ("report.json", "report.md"):
                    if (src / file).is_file():
                        shutil.copyfile(src / file, dst / file)
                entry["copied_to"] = f"{EVALUATION_DIR}/{name}"

        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT, "release_id": uuid.uuid4().hex[:16],
            "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "stage": stage, "stages": [s for s in RECIPE_FILES if s in training],
            "source": {"kind": "adapter" if cfg.adapter else "checkpoint", "path": str(source)},
            "base_model": {"merged_into": base, "chain": chain, "foundation": foundation, "hub_id": hub_id,
                           "license": licence, "model_type": model_type, "paper_model": paper_model},
            "dtype": dtype, "generation_config": generation, "frame_policy": frame_policy,
            "frame_policy_recorded": recorded_policy, "video_patch_factor": patch_factor,
            "versions": versions, "training": training, "data": data, "evaluation": evaluation,
            "model_name": cfg.model_name or (cfg.repo_id.split("/")[-1] if cfg.repo_id else out.name),
            "repo_id": cfg.repo_id or None, "datasets": list(cfg.datasets), "warnings": warnings,
        }
        card = render_card(manifest)
        (tmp / CARD_FILE).write_text(card)
        manifest["files"] = [{"path": p, "size": n} for p, n in release_files(tmp)]
        (tmp / RELEASE_MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Release(out, manifest, card, warnings)
