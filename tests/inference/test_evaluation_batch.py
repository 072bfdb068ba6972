"""Batch evaluation: paradigms, resume after kill -9, shard + merge, the τ replay, and reports.

The scripted policy below stands in for a trained policy's *outputs* (the tiny random model
writes no programs): it returns fixed programs per prompt kind, which the real runner executes
in the real sandbox over the real module library (the tiny Qwen3-VL answers query_native).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from inference.backends.vlm import Generation
from inference.evaluation.batch import EvalConfig, evaluate, merge_shards, results_path
from inference.evaluation.reports import SWEEP_THRESHOLDS, answer_at_threshold, load_run, threshold_sweep, write_report
from inference.jsonl_io import read_jsonl_tolerant
from inference.prompts import ADAPTIVE_INSTRUCTIONS, PROGRAM_ONLY_INSTRUCTIONS
from inference.runner import Round, RunnerConfig
from inference.toy.benchmark import write_synthetic_longvideobench

ROOT = Path(__file__).resolve().parents[2]


def program(body: str) -> str:
    return f"<planning>\nscripted\n</planning>\n<code>\ndef execute_command(video, question):\n    {body}\n</code>"


class ScriptedPolicy:
    """Fixed outputs per (question, prompt kind); every output is a real program for the sandbox."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @staticmethod
    def _question_hash(prompt: str) -> int:
        line = next((ln for ln in prompt.splitlines() if ln.startswith("Question: ") and "vegetables" not in ln), "")
        return int(hashlib.sha1(line.encode()).hexdigest(), 16)

    def output(self, prompt: str) -> str:
        h = self._question_hash(prompt)
        letter = "ABCD"[h % 4]
        if prompt.startswith(ADAPTIVE_INSTRUCTIONS) or prompt.startswith(PROGRAM_ONLY_INSTRUCTIONS):
            kind = h % 5
            if kind == 0 and not prompt.startswith(PROGRAM_ONLY_INSTRUCTIONS):
                return program("return query_native(video, question, choices)")
            return [program(f'return make_result("{letter}", 0.45)'),
                    program(f'return make_result("{letter}", 0.45)'),
                    program("return undefined_name"),
                    program(f'return make_result("{letter}", 0.85)'),
                    program(f'return make_result("{"ABCD"[(h + 1) % 4]}", 0.65)')][kind]
        if "Runtime error log:" in prompt:
            return program(f'return make_result("{"ABCD"[(h + 2) % 4]}", 0.7)')
        if "Current native visual program:" in prompt:
            return program(f'return make_result("{letter}", 0.6)')
        return program(f'return make_result("{"ABCD"[(h + 3) % 4]}", 0.9)')

    def generate(self, prompt=None, **kwargs) -> Generation:
        text = self.output(prompt)
        self.calls.append(prompt)
        return Generation(text=text, num_tokens=len(text.split()), finish_reason="stop")

    def identity(self) -> str:
        return "scripted-policy"


@pytest.fixture(scope="module")
def bench(toy_assets, tmp_path_factory):
    """The toy video's seven QA records as a LongVideoBench-style download."""
    return write_synthetic_longvideobench([toy_assets.video], tmp_path_factory.mktemp("lvb"))


@pytest.fixture
def modules(toy_assets, tmp_path):
    return toy_assets.module_config(video_max_frames=4, max_query_frames=4, clip_dir=str(tmp_path / "clips"))


def run_eval(configs: tuple[EvalConfig, RunnerConfig], modules, **kwargs):
    eval_cfg, runner = configs
    return evaluate(eval_cfg, modules, runner, **kwargs)


RUNNER_FIELDS = {f.name for f in dataclasses.fields(RunnerConfig)}


def cfg(out: Path, bench: Path, **kw) -> tuple[EvalConfig, RunnerConfig]:
    """An EvalConfig and a RunnerConfig from one set of keyword settings."""
    # The scripted programs state their confidences with make_result (the tiny model's are
    # arbitrary): count them, so that refinement and the τ replay have something to decide on.
    kw.setdefault("trust_program_confidence", True)
    runner = RunnerConfig(**{k: kw.pop(k) for k in list(kw) if k in RUNNER_FIELDS})
    kw.setdefault("num_workers", 2)
    return EvalConfig(benchmark="longvideobench", root=str(bench), output_dir=str(out), quiet=True, **kw), runner


def comparable(row: dict) -> dict:
    result = row.get("result") or {}
    return {"id": row["id"], "answer": row["answer"], "correct": row["correct"], "status": row["status"],
            "rounds": [(r["kind"], r["output"], (r["execution"].get("result") or {}).get("answer"),
                        (r["execution"].get("result") or {}).get("confidence")) for r in result.get("rounds", [])]}


def test_paradigms_record_uniform_rounds(bench, modules, tmp_path):
    policy = ScriptedPolicy()
    native = run_eval(cfg(tmp_path / "native", bench, paradigm="native", limit=2), modules, policy=policy,
                      collect_rows=True)
    assert native.ran == 2 and not policy.calls  # native only: no program is generated
    for row in native.rows:
        rounds = row["result"]["rounds"]
        assert [r["kind"] for r in rounds] == ["given"] and rounds[0]["mode"] == "native"
        assert row["answer"] == (rounds[0]["execution"]["result"] or {}).get("answer", "")
    program = run_eval(cfg(tmp_path / "program", bench, paradigm="program"), modules, policy=policy,
                       collect_rows=True)
    for row in program.rows:
        first = row["result"]["rounds"][0]
        assert first["kind"] == "initial" and first["prompt"].startswith(PROGRAM_ONLY_INSTRUCTIONS)
        assert first["mode"] == "program" and first["completion_tokens"] > 0
        assert len(row["result"]["rounds"]) == 1  # no refinement in this paradigm
    adaptive = run_eval(cfg(tmp_path / "refine", bench, paradigm="adaptive_refine", confidence_threshold=0.75),
                        modules, policy=policy, collect_rows=True)
    kinds = {tuple(r["kind"] for r in row["result"]["rounds"]) for row in adaptive.rows}
    assert ("initial", "bugfix") in kinds and len(kinds) >= 2  # failures and low-confidence refinements
    provenance = json.loads((tmp_path / "refine" / "provenance.json").read_text())
    assert provenance["paradigm"] == "adaptive_refine" and provenance["runner"]["max_refine_rounds"] == 1
    assert provenance["model"]["policy"] == "scripted-policy" and provenance["prompt_version"]
    assert all(len(h) == 64 for h in provenance["dataset_files"].values())
    # a rerun with other settings into the same folder is refused
    with pytest.raises(SystemExit, match="other settings"):
        run_eval(cfg(tmp_path / "refine", bench, paradigm="adaptive_refine", confidence_threshold=0.5), modules,
                 policy=policy)


def test_threshold_sweep_equals_rerunning_at_that_threshold(bench, modules, tmp_path):
    """Figure 4 from recorded rounds == the runner re-run at τ on the same recorded outputs."""
    recorded = run_eval(cfg(tmp_path / "tau1", bench, paradigm="adaptive_refine", confidence_threshold=1.0),
                        modules, policy=ScriptedPolicy(), collect_rows=True)
    outputs = {r["prompt"]: r["output"] for row in recorded.rows for r in row["result"]["rounds"]}

    class Replay:
        def generate(self, prompt=None, **kwargs):
            return Generation(text=outputs[prompt], num_tokens=1)

        def identity(self):
            return "replay"

    run = load_run(tmp_path / "tau1")
    sweep = {p["threshold"]: p for p in threshold_sweep(run)}
    distinct = set()
    for tau in (0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9):
        rerun = run_eval(cfg(tmp_path / f"tau{tau}", bench, paradigm="adaptive_refine", confidence_threshold=tau,
                             call_cache_dir=str(tmp_path / "tau1" / "call_cache")),
                         modules, policy=Replay(), collect_rows=True)
        by_id = {row["id"]: row for row in rerun.rows}
        for row in recorded.rows:
            rounds = [Round.from_dict(r) for r in row["result"]["rounds"]]
            replayed = answer_at_threshold(rounds, tau, "last", trust_program_confidence=True)
            assert (replayed.answer if replayed else "") == by_id[row["id"]]["answer"], (tau, row["id"])
        accuracy = 100.0 * sum(bool(r["correct"]) for r in rerun.rows) / len(rerun.rows)
        assert sweep[tau]["accuracy"] == pytest.approx(accuracy)
        distinct.add(tuple(r["answer"] for r in rerun.rows))
    assert len(distinct) > 1  # the sweep is not trivially constant on this data


def test_shard_and_merge_equal_one_run(bench, modules, tmp_path):
    whole = run_eval(cfg(tmp_path / "whole", bench), modules, policy=ScriptedPolicy(), collect_rows=True)
    for i in range(2):
        run_eval(cfg(tmp_path / "sharded", bench, shard=f"{i}/2"), modules, policy=ScriptedPolicy())
    with pytest.raises(ValueError, match="no result"):
        # drop one line of shard 1: the merge names the missing id
        path = results_path(tmp_path / "sharded", (1, 2))
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:-1]))
        merge_shards(tmp_path / "sharded")
    path.write_text("".join(lines))
    info = merge_shards(tmp_path / "sharded")
    assert info["rows"] == whole.total == 7 and not info["missing"]
    merged = read_jsonl_tolerant(tmp_path / "sharded" / "results.jsonl")
    single = read_jsonl_tolerant(tmp_path / "whole" / "results.jsonl")
    assert [comparable(r) for r in merged] == sorted((comparable(r) for r in single),
                                                     key=lambda r: [x["id"] for x in merged].index(r["id"]))
    reports = [write_report([d], tmp_path / f"report-{d.name}") for d in (tmp_path / "whole", tmp_path / "sharded")]
    def untimed(report):  # runtimes are measured, not derived: everything else must agree
        return {rule: {k: v for k, v in s.items() if k != "mean_runtime_s"}
                for rule, s in report["runs"][0]["summaries"].items()}
    assert untimed(reports[0]) == untimed(reports[1])


def test_tiny_model_evaluation_writes_every_table_and_plot(bench, toy_assets, modules, tmp_path):
    dirs = []
    for paradigm in ("native", "adaptive_refine"):
        out = tmp_path / paradigm
        outcome = run_eval(cfg(out, bench, paradigm=paradigm, checkpoint=str(toy_assets.qwen3_vl), limit=3,
                               max_new_tokens=24), modules)
        assert outcome.ran == 3 and outcome.errors == 0
        dirs.append(out)
    data = write_report(dirs, tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    for heading in ("Final-answer rules", "Accuracy by `question_category`", "Failures", "Confidence (Figure 2)",
                    "Threshold sweep", "Table 2", "Table 5", "Paper comparison"):
        assert heading in report, heading
    for name in data["files"]:
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    assert any(n.startswith("fig2_") for n in data["files"]) and "fig4_threshold_sweep.png" in data["files"]
    assert (tmp_path / "report" / "fig4_threshold_sweep.png").read_bytes()[:4] == b"\x89PNG"
    summary = data["runs"][1]["summaries"]["last"]
    assert summary["questions"] == 3 and summary["labelled"] == 3
    # an unparseable or missing answer is wrong and counted, never a guessed letter
    for row in read_jsonl_tolerant(tmp_path / "adaptive_refine" / "results.jsonl"):
        if not row["answer"]:
            assert row["correct"] is False
    assert [p["threshold"] for p in threshold_sweep(load_run(dirs[1]))] == sorted(set(SWEEP_THRESHOLDS))


@pytest.mark.slow
def test_resume_after_kill_9_has_no_duplicates_or_lost_lines(bench, toy_assets, tmp_path):
    recipe = tmp_path / "modules.yaml"
    recipe.write_text(yaml.safe_dump(toy_assets.module_fields(video_max_frames=4, max_query_frames=4,
                                                               clip_dir=str(tmp_path / "clips"))))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "inference.evaluation", "run", "--config", str(recipe), "--benchmark",
           "longvideobench", "--root", str(bench), "--output_dir", str(out), "--paradigm", "native",
           "--checkpoint", str(toy_assets.qwen3_vl), "--num_workers", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = results_path(out)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if results.is_file() and len(results.read_bytes().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = read_jsonl_tolerant(results)
    assert 2 <= len(before) < 7
    with results.open("ab") as handle:  # as if the kill had hit mid-write
        handle.write(b'{"id": "torn')
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = read_jsonl_tolerant(results)
    ids = [r["id"] for r in after]
    assert len(ids) == len(set(ids)) == 7
    assert after[: len(before)] == before  # nothing rewritten, nothing lost
    assert all(line.startswith(b"{") and line.endswith(b"}") for line in results.read_bytes().splitlines())


def test_host_errors_are_lines_then_stop_and_retry(bench, modules, tmp_path):
    class Down:
        def generate(self, prompt=None, **kwargs):
            raise ConnectionError("endpoint down")

        def identity(self):
            return "scripted-policy"

    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"[34] questions in a row failed outside the program"):
        run_eval(cfg(out, bench, num_workers=1, max_consecutive_host_errors=3), modules, policy=Down())
    rows = read_jsonl_tolerant(results_path(out))
    # stops at the 3rd; questions already submitted still finish (and are written)
    assert 3 <= len(rows) < 7 and all(r["status"] == "error" and r["error_kind"] == "host" for r in rows)
    assert all(r["correct"] is False and "endpoint down" in r["error"] for r in rows)
    summary = write_report([out], tmp_path / "report")["runs"][0]["summaries"]["last"]
    assert summary["failures"]["errors_host"] == len(rows) and summary["accuracy"] == 0.0
    # a plain rerun keeps the error lines; --retry_errors redoes them
    done = run_eval(cfg(out, bench, retry_errors=True), modules, policy=ScriptedPolicy(), collect_rows=True)
    assert done.ran == 7 and {r["status"] for r in done.rows} == {"ok"}
    assert len(read_jsonl_tolerant(results_path(out))) == 7

