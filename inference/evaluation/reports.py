"""Reports from stored results, offline: nothing here runs a model or a program.

Every number is recomputed from the rounds each result line keeps, so both final-answer rules,
the τ sweep and every breakdown come from one run:

* accuracy overall and by each benchmark's breakdown keys (the categories found in the data;
  a question with several types, LVBench's ``question_type``, counts under each), MLVU's M-Avg
  (the mean of per-task accuracies);
* Table 2 — accuracy, policy output tokens and runtime per paradigm (one results folder per paradigm);
* Table 5 — native / program share of the policy's first choice and the refinement ratio;
* Figure 2 — correct vs wrong final answers per confidence bin;
* Figure 4 — accuracy against τ, replayed from the recorded rounds
  (:func:`inference.runner.final_answer_at_threshold`); a τ above the recorded one cannot be
  replayed (a round that was confident enough then was never refined) and is left out;
* accuracy under the paper's ``last`` rule and under ``max_confidence``;
* failure rates: host errors, unreadable inputs, no valid answer, format and execution failures;
* a comparison with the paper's Tables 1, 2, 4 and 5.

A question counts in the accuracy denominator whatever happened to it: a host error, a crash or
an unparseable answer is a wrong answer (and is counted in the failure table), never dropped and
never replaced by a guess.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.jsonl_io import read_jsonl_tolerant, write_text_atomic
from inference.scoring import is_correct

RULES = ("last", "max_confidence")
SWEEP_THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
CONFIDENCE_BINS = tuple(round(0.1 * i, 1) for i in range(11))
PARADIGM_LABELS = {"native": "Native VideoLLM", "program": "Multi-step Visual Program",
                   "adaptive": "Adaptive Reasoning", "adaptive_refine": "+ Refine"}
BENCHMARK_LABELS = {"lvbench": "LVBench", "videomme": "VideoMME-L", "longvideobench": "LongVideoBench",
                    "mlvu": "MLVU", "cgbench": "CG-Bench"}

# The paper's reported numbers (arXiv version in shared/seeds/videopro_paper.txt), for comparison only.
PAPER_TABLE1 = {  # accuracy (%) by model row and benchmark
    "Qwen2.5-VL-7B": {"lvbench": 38.3, "videomme": 50.0, "longvideobench": 58.6, "mlvu": 48.0},
    "Qwen3-VL-8B": {"lvbench": 40.2, "videomme": 56.3, "longvideobench": 61.5, "mlvu": 53.6},
    "Qwen2.5-VL-7B + VideoPro": {"lvbench": 47.2, "videomme": 56.7, "longvideobench": 60.9, "mlvu": 49.6},
    "Qwen3-VL-8B + VideoPro": {"lvbench": 49.7, "videomme": 68.8, "longvideobench": 64.5, "mlvu": 55.2},
}
PAPER_TABLE2 = {  # Qwen3-VL-8B + VideoPro: (accuracy %, output length tokens, runtime s)
    "videomme": {"native": (56.3, 255, 2.1), "program": (66.7, 1496, 8.2), "adaptive": (66.8, 825, 5.2),
                 "adaptive_refine": (68.8, 1326, 7.1)},
    "lvbench": {"native": (40.2, 255, 2.3), "program": (46.4, 1594, 8.2), "adaptive": (48.1, 1227, 5.9),
                "adaptive_refine": (49.7, 1435, 7.8)},
}
PAPER_TABLE4 = {  # (reasoning, +refine) accuracy by base model and strategy
    ("Qwen3-VL", "SFT"): {"videomme": (61.2, 65.0), "lvbench": (44.5, 49.1)},
    ("Qwen3-VL", "SFT+GRPO"): {"videomme": (66.8, 68.8), "lvbench": (48.1, 49.7)},
    ("Qwen2.5-VL", "SFT"): {"videomme": (52.2, 58.1), "lvbench": (42.1, 46.7)},
    ("Qwen2.5-VL", "SFT+GRPO"): {"videomme": (53.2, 56.7), "lvbench": (45.4, 47.2)},
}
PAPER_TABLE5 = {  # native %, program %, refinement %
    "longvideobench": (29.4, 70.6, 35.9), "lvbench": (17.7, 82.3, 55.5)}


# ------------------------------------------------------------------------------ final-answer rules

def choose_final_round(rounds: Sequence[Any], rule: str = "last", trust_program_confidence: bool = False) -> Any:
    """The round whose answer is final under ``rule`` (:func:`inference.runner.choose_final`)."""
    from inference.runner import choose_final

    if rule not in RULES:
        raise ValueError(f"final-answer rule {rule!r}: choose one of {RULES}")
    return choose_final(rounds, rule, trust_program_confidence)


def answer_at_threshold(rounds: Sequence[Any], threshold: float, rule: str = "last",
                        trust_program_confidence: bool = False) -> Any:
    """The final answer had the run used τ = ``threshold`` (replayed from the recorded rounds by
    :func:`inference.runner.final_answer_at_threshold`)."""
    from inference.runner import final_answer_at_threshold

    return final_answer_at_threshold(rounds, threshold, rule, trust_program_confidence)


def _trusts_program_confidence(row: dict[str, Any]) -> bool:
    """Whether the run counted program-stated confidences (``RunResult.trust_program_confidence``;
    a result written before the setting existed: no)."""
    return bool((row.get("result") or {}).get("trust_program_confidence", False))


# ------------------------------------------------------------------------------ scoring

@dataclass
class ScoredRow:
    """One result line, scored under one final-answer rule."""

    id: str
    labelled: bool
    correct: bool
    answer: str
    confidence: float | None
    status: str
    error_kind: str | None
    host_error: bool
    no_answer: bool
    first_mode: str | None
    final_mode: str | None
    refined: bool
    output_tokens: int
    runtime_s: float
    rounds: list[Any]
    ground_truth: str | None
    num_choices: int
    meta: dict[str, Any] = field(default_factory=dict)
    first_failure: str | None = None


@dataclass
class RunData:
    """One results folder: its provenance and lines."""

    path: Path
    provenance: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def benchmark(self) -> str:
        return str(self.provenance.get("benchmark") or (self.rows[0]["benchmark"] if self.rows else "?"))

    @property
    def paradigm(self) -> str:
        return str(self.provenance.get("paradigm") or (self.rows[0]["paradigm"] if self.rows else "?"))

    @property
    def threshold(self) -> float:
        from inference.confidence import CONFIDENCE_THRESHOLD

        return float((self.provenance.get("runner") or {}).get("confidence_threshold", CONFIDENCE_THRESHOLD))


def load_run(path: str | Path) -> RunData:
    """A results folder (``results.jsonl`` + ``provenance.json``) or a results file."""
    path = Path(path)
    if path.is_dir():
        results, prov = path / "results.jsonl", path / "provenance.json"
        if not results.is_file():
            shards = sorted(path.glob("results.shard-*.jsonl"))
            hint = " (shard files found: run `videopro-eval merge` first)" if shards else ""
            raise FileNotFoundError(f"no results.jsonl in {str(path)!r}{hint}")
    else:
        results, prov = path, path.with_name(path.name.replace("results", "provenance").replace(".jsonl", ".json"))
    provenance = json.loads(prov.read_text(encoding="utf-8")) if prov.is_file() else {}
    return RunData(path, provenance, read_jsonl_tolerant(results))


def score_row(row: dict[str, Any], rule: str = "last") -> ScoredRow:
    from inference.runner import Round

    rounds = [Round.from_dict(r) for r in ((row.get("result") or {}).get("rounds") or [])]
    trust = _trusts_program_confidence(row)
    chosen = choose_final_round(rounds, rule, trust) if rounds else None
    answer = chosen.answer if chosen is not None else None
    truth = row.get("ground_truth")
    n = int(row.get("num_choices") or 0)
    letter = answer.answer if answer is not None else ""
    correct = bool(truth) and is_correct(letter, truth, n or None)
    tokens = sum(int(r.completion_tokens or 0) for r in rounds)
    tokens += sum(int(d.get("completion_tokens") or 0) for d in row.get("program_only_discarded") or [])
    result = row.get("result") or {}
    first_failure = None
    if rounds and rounds[0].answer is None:
        first_failure = rounds[0].execution.error_type or "no answer"
    return ScoredRow(
        id=str(row["id"]), labelled=bool(truth), correct=correct, answer=letter,
        # The effective confidence (a program-stated one counts as 0 unless the run trusted it).
        confidence=chosen.confidence(trust) if answer is not None else None, status=str(row.get("status", "ok")),
        error_kind=row.get("error_kind") if row.get("status") == "error" else None,
        host_error=bool(result.get("host_error")) or (row.get("status") == "error" and row.get("error_kind") == "host"),
        no_answer=answer is None, first_mode=rounds[0].mode if rounds else None,
        final_mode=chosen.mode if chosen is not None else None,
        refined=any(r.kind in ("bugfix", "native_refine", "program_refine") for r in rounds),
        output_tokens=tokens, runtime_s=float(result.get("wall_time_s") or row.get("wall_time_s") or 0.0),
        rounds=rounds, ground_truth=truth, num_choices=n, meta=dict(row.get("meta") or {}),
        first_failure=first_failure)


def _pct(num: float, den: float) -> float | None:
    return 100.0 * num / den if den else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return ["(none)"]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value] or ["(none)"]
    return [str(value)]


def breakdown(scored: Sequence[ScoredRow], key: str) -> list[dict[str, Any]]:
    """Accuracy per value of ``meta[key]`` among labelled rows (list values count under each)."""
    groups: dict[str, list[ScoredRow]] = {}
    for s in scored:
        if s.labelled:
            for v in _values(s.meta.get(key)):
                groups.setdefault(v, []).append(s)
    def order(item: tuple[str, list[ScoredRow]]) -> tuple[int, float, str]:
        name = item[0]
        try:
            return (0, float(name), name)  # numeric groups (LongVideoBench duration_group) in numeric order
        except ValueError:
            return (1, 0.0, name)
    return [{"value": v, "count": len(rows), "correct": sum(r.correct for r in rows),
             "accuracy": _pct(sum(r.correct for r in rows), len(rows))}
            for v, rows in sorted(groups.items(), key=order)]


def headline_accuracy(scored: Sequence[ScoredRow], benchmark: str) -> tuple[float | None, str]:
    """The benchmark's headline number and its definition."""
    from inference.evaluation.benchmarks import BENCHMARKS

    spec = BENCHMARKS.get(benchmark)
    labelled = [s for s in scored if s.labelled]
    if spec is not None and spec.headline == "task_mean" and spec.breakdowns:
        groups = breakdown(labelled, spec.breakdowns[0])
        accs = [g["accuracy"] for g in groups if g["accuracy"] is not None]
        definition = f"M-Avg (mean of {len(accs)} per-{spec.breakdowns[0]} accuracies)"
        return (sum(accs) / len(accs) if accs else None), definition
    return _pct(sum(s.correct for s in labelled), len(labelled)), "accuracy over questions"


def summarize(run: RunData, rule: str = "last") -> dict[str, Any]:
    """All numbers of one run under ``rule``."""
    scored = [score_row(r, rule) for r in run.rows]
    labelled = [s for s in scored if s.labelled]
    headline, definition = headline_accuracy(scored, run.benchmark)
    n = len(scored)
    first = [s for s in scored if s.first_mode is not None]
    non_error = [s for s in labelled if s.status != "error" and not s.host_error]
    return {
        "benchmark": run.benchmark, "paradigm": run.paradigm, "rule": rule, "questions": n,
        "labelled": len(labelled), "correct": sum(s.correct for s in labelled),
        "accuracy": _pct(sum(s.correct for s in labelled), len(labelled)),
        "headline": headline, "headline_definition": definition,
        "accuracy_without_host_errors": _pct(sum(s.correct for s in non_error), len(non_error)),
        "mean_output_tokens": (sum(s.output_tokens for s in scored) / n) if n else None,
        "mean_runtime_s": (sum(s.runtime_s for s in scored) / n) if n else None,
        "native_share": _pct(sum(s.first_mode == "native" for s in first), len(first)),
        "program_share": _pct(sum(s.first_mode == "program" for s in first), len(first)),
        "refinement_ratio": _pct(sum(s.refined for s in scored), n),
        "failures": {
            "errors_host": sum(s.status == "error" and s.error_kind == "host" for s in scored),
            "errors_input": sum(s.status == "error" and s.error_kind == "input" for s in scored),
            "host_error_rate": _pct(sum(s.host_error for s in scored), n),
            "no_valid_answer": sum(s.no_answer for s in scored),
            "no_valid_answer_rate": _pct(sum(s.no_answer for s in scored), n),
            "first_round_failures": _count(s.first_failure for s in scored if s.first_failure),
        },
        "breakdowns": {key: breakdown(scored, key) for key in (run.provenance.get("breakdowns") or [])},
    }


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def confidence_histogram(scored: Sequence[ScoredRow]) -> list[dict[str, Any]]:
    """Figure 2: labelled final answers per confidence bin [0.0, 0.1), ..., [0.9, 1.0], correct vs wrong."""
    bins = [{"low": CONFIDENCE_BINS[i], "high": CONFIDENCE_BINS[i + 1], "correct": 0, "wrong": 0}
            for i in range(len(CONFIDENCE_BINS) - 1)]
    for s in scored:
        if not s.labelled or s.confidence is None:
            continue
        k = min(int(s.confidence * 10), len(bins) - 1)
        bins[k]["correct" if s.correct else "wrong"] += 1
    return bins


def threshold_sweep(run: RunData, rule: str = "last",
                    thresholds: Sequence[float] = SWEEP_THRESHOLDS) -> list[dict[str, Any]]:
    """Figure 4: accuracy at each τ replayed from the recorded rounds; τ above the recorded τ is
    marked ``replayable: False`` and gets no accuracy."""
    from inference.runner import Round

    recorded = run.threshold
    points = sorted(set(thresholds) | {recorded})
    rows = [(r, [Round.from_dict(x) for x in ((r.get("result") or {}).get("rounds") or [])]) for r in run.rows]
    labelled = [(r, rounds) for r, rounds in rows if r.get("ground_truth")]
    out = []
    for tau in points:
        if tau > recorded + 1e-9:
            out.append({"threshold": tau, "replayable": False, "accuracy": None})
            continue
        correct = 0
        for r, rounds in labelled:
            answer = answer_at_threshold(rounds, tau, rule, _trusts_program_confidence(r)) if rounds else None
            correct += is_correct(answer.answer if answer else "", r["ground_truth"],
                                  int(r.get("num_choices") or 0) or None)
        out.append({"threshold": tau, "replayable": True, "accuracy": _pct(correct, len(labelled))})
    return out


# ------------------------------------------------------------------------------ markdown and plots

def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _bin_label(b: dict[str, Any]) -> str:
    return f"[{b['low']:.1f}, {b['high']:.1f}" + ("]" if b["high"] >= 1.0 else ")")


def _plot_confidence(bins: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [_bin_label(b) for b in bins]
    xs = range(len(bins))
    ax.bar([x - 0.2 for x in xs], [b["correct"] for b in bins], width=0.4, label="correct", color="#4c9a5b")
    ax.bar([x + 0.2 for x in xs], [b["wrong"] for b in bins], width=0.4, label="wrong", color="#c8553d")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("confidence of the final answer")
    ax.set_ylabel("questions")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_sweep(series: dict[str, list[dict[str, Any]]], path: Path, recorded: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, points in series.items():
        pts = [(p["threshold"], p["accuracy"]) for p in points if p["replayable"] and p["accuracy"] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    label=f"{label} (recorded τ={recorded[label]:g})")
    ax.set_xlabel("confidence threshold τ")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy against τ, replayed from recorded rounds", fontsize=9)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_breakdown(groups: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(groups) + 2), 3.5))
    ax.bar(range(len(groups)), [g["accuracy"] or 0.0 for g in groups], color="#3d7ec8")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{g['value']} (n={g['count']})" for g in groups], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower() or "x"


def write_report(run_paths: Sequence[str | Path], out_dir: str | Path, *, paper_model: str = "Qwen3-VL-8B",
                 thresholds: Sequence[float] = SWEEP_THRESHOLDS) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and the PNG plots for one or several results folders
    (e.g. the four paradigm runs of one benchmark, or one run per benchmark) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(p) for p in run_paths]
    if not runs:
        raise ValueError("no results folders given")
    md: list[str] = ["# Evaluation report", ""]
    data: dict[str, Any] = {"runs": []}
    sweep_series: dict[str, list[dict[str, Any]]] = {}
    recorded: dict[str, float] = {}
    files: list[str] = []
    for k, run in enumerate(runs):
        label = f"{run.benchmark}/{run.paradigm}"
        if sum(1 for r in runs if f"{r.benchmark}/{r.paradigm}" == label) > 1:
            label += f"#{k}"
        summaries = {rule: summarize(run, rule) for rule in RULES}
        main = summaries["last"]
        prov = run.provenance
        scored = [score_row(r, "last") for r in run.rows]
        bins = confidence_histogram(scored)
        sweep = threshold_sweep(run, "last", thresholds)
        sweep_series[label], recorded[label] = sweep, run.threshold
        slug = _slug(label)
        fig2 = out / f"fig2_confidence_{slug}.png"
        _plot_confidence(bins, fig2, f"{label}: correct vs wrong per confidence bin (rule: last)")
        files.append(fig2.name)
        model = prov.get("model") or {}
        md += [f"## {label}", "",
               f"- results: `{run.path}`; {main['questions']} questions ({main['labelled']} labelled)",
               f"- model: {model.get('checkpoint') or model.get('model') or '?'}"
               + (f" (root `{model.get('root')}`)" if model.get("root") else "")
               + (f"; programs written by {model['policy']}" if model.get("policy") else ""),
               f"- prompt version {prov.get('prompt_version', '?')}, τ={run.threshold:g}, refine rounds "
               f"{(prov.get('runner') or {}).get('max_refine_rounds', '?')}, temperature "
               f"{(prov.get('runner') or {}).get('temperature', '?')}, seed {prov.get('seed', '?')}, "
               f"git {prov.get('git_commit') or '?'}"]
        settings = prov.get("loader_settings") or {}
        if settings.get("subset_rule"):
            md.append(f"- subset rule: {settings['subset_rule']}")
        load = prov.get("load_summary") or {}
        if load:
            md.append(f"- loaded {load.get('records')} records; skipped {load.get('skipped')}, unscorable "
                      f"{load.get('unscorable')} (excluded; reasons in provenance.json)")
            for group in (load.get("skipped_by_reason") or []) + (load.get("unscorable_by_reason") or []):
                md.append(f"  - {group['count']} × {group['reason']}")
        overlap = settings.get("training_overlap")
        if overlap and overlap.get("sources"):
            for name, o in overlap["sources"].items():
                md.append(f"- **training overlap** with {name}: {o['questions_on_shared_videos']} of "
                          f"{main['questions']} questions are on {o['shared_videos']} videos that also carry "
                          "training questions")
        elif overlap:
            md.append(f"- training overlap: {overlap.get('note')}")
        md += ["", f"**{main['headline_definition']}: {_fmt(main['headline'])}%** (rule `last`)", ""]
        md += ["### Final-answer rules", "", _table(
            ["rule", "accuracy %", "headline %", "accuracy w/o host errors %"],
            [[rule, _fmt(s["accuracy"]), _fmt(s["headline"]), _fmt(s["accuracy_without_host_errors"])]
             for rule, s in summaries.items()]), ""]
        for key, groups in main["breakdowns"].items():
            table = _table([key, "n", "accuracy %"], [[g["value"], g["count"], _fmt(g["accuracy"])] for g in groups])
            md += [f"### Accuracy by `{key}`", "", table, ""]
            if 1 < len(groups) <= 40:
                png = out / f"accuracy_by_{_slug(key)}_{slug}.png"
                _plot_breakdown(groups, png, f"{label}: accuracy by {key}")
                files.append(png.name)
        f = main["failures"]
        md += ["### Failures", "", _table(["what", "count / rate"], [
            ["host errors (line)", f["errors_host"]], ["unreadable inputs (line)", f["errors_input"]],
            ["host error rate %", _fmt(f["host_error_rate"])],
            ["no valid answer", f"{f['no_valid_answer']} ({_fmt(f['no_valid_answer_rate'])}%)"],
            *[[f"first round failed: {k}", v] for k, v in f["first_round_failures"].items()]]), ""]
        table = _table(["bin", "correct", "wrong"],
                       [[_bin_label(b), b["correct"], b["wrong"]] for b in bins])
        md += ["### Confidence (Figure 2)", "", table, "", f"![confidence]({fig2.name})", ""]
        md += ["### Threshold sweep (Figure 4, rule `last`)", "", _table(
            ["τ", "accuracy %"], [[f"{p['threshold']:g}", _fmt(p["accuracy"]) if p["replayable"] else
                                   "not replayable (above the recorded τ)"] for p in sweep]), ""]
        data["runs"].append({"label": label, "path": str(run.path), "summaries": summaries, "confidence_bins": bins,
                             "threshold_sweep": sweep})
    fig4 = out / "fig4_threshold_sweep.png"
    _plot_sweep(sweep_series, fig4, recorded)
    files.append(fig4.name)
    md += ["## Figure 4: accuracy against τ", "", f"![threshold sweep]({fig4.name})", ""]
    md += _paradigm_and_mode_tables(data["runs"], runs)
    md += _paper_comparison(data["runs"], runs, paper_model)
    data["files"] = files + ["report.md", "report.json"]
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")
    write_text_atomic(out / "report.json", json.dumps(data, indent=2, default=str) + "\n")
    return data


def _paradigm_and_mode_tables(summaries: list[dict[str, Any]], runs: list[RunData]) -> list[str]:
    md = ["## Table 2: accuracy, output length and runtime per paradigm", "",
          "Output length: the policy's generated tokens per question, all rounds (native: 0, no program "
          "is generated). Runtime: wall time per question, one question at a time per worker.", "",
          _table(["benchmark", "method", "acc. %", "output len.", "avg. runtime s"],
                 [[BENCHMARK_LABELS.get(r.benchmark, r.benchmark), PARADIGM_LABELS.get(r.paradigm, r.paradigm),
                   _fmt(s["summaries"]["last"]["headline"]), _fmt(s["summaries"]["last"]["mean_output_tokens"], 0),
                   _fmt(s["summaries"]["last"]["mean_runtime_s"], 2)] for s, r in zip(summaries, runs)]), ""]
    md += ["## Table 5: execution modes and refinement", "",
           "Native / program: the mode of the policy's first program; refinement: questions with at least one "
           "refinement round.", "",
           _table(["benchmark", "method", "native %", "program %", "refinement %"],
                  [[BENCHMARK_LABELS.get(r.benchmark, r.benchmark), PARADIGM_LABELS.get(r.paradigm, r.paradigm),
                    _fmt(s["summaries"]["last"]["native_share"]), _fmt(s["summaries"]["last"]["program_share"]),
                    _fmt(s["summaries"]["last"]["refinement_ratio"])] for s, r in zip(summaries, runs)]), ""]
    return md


def _paper_comparison(summaries: list[dict[str, Any]], runs: list[RunData], paper_model: str) -> list[str]:
    ours_row = f"{paper_model} + VideoPro"
    md = ["## Paper comparison", "",
          f"Paper rows: {paper_model} (native) and {ours_row} (Table 1), Table 2 ({'Qwen3-VL-8B'} + VideoPro), "
          "Table 5. Ours: the runs of this report.", ""]
    rows = []
    for s, r in zip(summaries, runs):
        head = s["summaries"]["last"]["headline"]
        paper_native = PAPER_TABLE1.get(paper_model, {}).get(r.benchmark)
        paper_ours = PAPER_TABLE1.get(ours_row, {}).get(r.benchmark)
        t2 = PAPER_TABLE2.get(r.benchmark, {}).get(r.paradigm)
        paper_value = t2[0] if t2 else (paper_native if r.paradigm == "native" else paper_ours
                                        if r.paradigm == "adaptive_refine" else None)
        rows.append([BENCHMARK_LABELS.get(r.benchmark, r.benchmark), PARADIGM_LABELS.get(r.paradigm, r.paradigm),
                     _fmt(head), _fmt(paper_value),
                     _fmt(head - paper_value) if head is not None and paper_value is not None else "–",
                     f"{t2[1]} tok / {t2[2]} s" if t2 else "–"])
    md += [_table(["benchmark", "method", "ours %", "paper %", "Δ", "paper output len. / runtime"], rows), ""]
    t5 = [[BENCHMARK_LABELS.get(r.benchmark, r.benchmark), _fmt(s["summaries"]["last"]["native_share"]),
           _fmt(s["summaries"]["last"]["program_share"]), _fmt(s["summaries"]["last"]["refinement_ratio"]),
           " / ".join(str(v) for v in PAPER_TABLE5[r.benchmark])]
          for s, r in zip(summaries, runs) if r.benchmark in PAPER_TABLE5 and r.paradigm == "adaptive_refine"]
    if t5:
        headers = ["benchmark", "native %", "program %", "refinement %", "paper native / program / refine"]
        md += [_table(headers, t5), ""]
    t4 = [[f"{base} {strategy}", BENCHMARK_LABELS.get(b, b), f"{v[0]} / {v[1]}"]
          for (base, strategy), values in PAPER_TABLE4.items() for b, v in values.items()]
    md += ["Paper Table 4 (training strategy ablation; reasoning / + refine), for checkpoints trained with "
           "each strategy:", "", _table(["model, strategy", "benchmark", "paper acc. % (reasoning / +refine)"], t4), ""]
    return md
