"""R1-R4 from purpose-built cases, verified by running the programs in the real sandbox;
crash-and-resume; export that loads with ``datasets``."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_synthesis.config import SynthesisConfig
from data_synthesis.labeling import ModuleLibraryNativeAnswerer
from data_synthesis.pipeline import run_pipeline
from data_synthesis.runtime import SandboxProgramRunner
from data_synthesis.sharding import read_jsonl
from data_synthesis.teacher import TeacherClient, TeacherError, TeacherSettings
from data_synthesis.trajectories import StageFailures
from inference.types import ExecutionRecord, QARecord
from tests.data_synthesis import scenario

REPO = Path(__file__).resolve().parents[2]

EXPECTED_KEPT = {
    "q-sky#R1": ("R1", None),
    "q-word#R2": ("R2", None),
    "q-word#R4-native": ("R4", "low_confidence_native"),
    "q-balls#R3": ("R3", "buggy_program"),
    "q-flash#R4-native": ("R4", "low_confidence_native"),
    "q-flash#R4-program": ("R4", "low_confidence_program"),
}


def synth_config(tmp_path: Path, **overrides) -> SynthesisConfig:
    values = dict(source=str(tmp_path / "qa.jsonl"), output_dir=str(tmp_path / "out"), teacher_backoff_s=0.01,
                  teacher_concurrency=2, max_repair_rounds=2, sft_kinds="R1,R2,R3,R4", grpo_kinds="R1,R2,R3,R4")
    values.update(overrides)
    return SynthesisConfig(**values)


def components(cfg: SynthesisConfig, executor):
    client = scenario.FakeChatClient()
    teacher = TeacherClient(TeacherSettings.from_config(cfg), client=client)
    return dict(teacher=teacher, run_program=SandboxProgramRunner(executor, roots_for=scenario.clip_roots),
                native=ModuleLibraryNativeAnswerer(scenario.query_native), video_check=scenario.accept_video), client


@pytest.fixture(scope="module")
def executor():
    from inference.sandbox.host import ProgramExecutor

    ex = ProgramExecutor(scenario.FAKE_MODULES, workers=1)
    yield ex
    close = getattr(ex, "close", None)
    if close:
        close()


def test_r1_to_r4_from_purpose_built_cases(tmp_path, executor):
    scenario.write_qa_jsonl(tmp_path)
    cfg = synth_config(tmp_path)
    parts, client = components(cfg, executor)
    summary = run_pipeline(cfg, **parts)
    out = Path(cfg.output_dir)

    rows = {r["id"]: r for stage in ("r1", "r2", "r3", "r4") for r in read_jsonl(out / stage / "shard-0-of-1.jsonl")}
    kept = {tid: (r["kind"], r["refine_type"]) for tid, r in rows.items() if r["verified"]}
    assert kept == EXPECTED_KEPT
    assert not rows["q-balls#R4-native"]["verified"]
    rejected = rows["q-balls#R4-native"]["attempts"]
    assert len(rejected) == 2 and "multi-step" in rejected[0]["rejected_because"]
    assert rejected[1]["kind"] == "R4" and "answered A, truth C" in rejected[1]["rejected_because"]

    # Every kept trajectory was verified by an execution that answered the ground truth.
    for tid in kept:
        row = rows[tid]
        execution = row["provenance"]["execution"]
        assert execution["success"] and execution["result"]["answer"] == scenario.QUESTIONS[row["question_id"]][1]
        assert row["provenance"]["question_id"] == row["question_id"] and row["provenance"]["prompt_hash"]
        if row["kind"] != "R1":
            assert row["provenance"]["teacher"]["model"] == "gpt-5" and row["provenance"]["teacher"]["request_key"]
    # R1's target is the Fig. 10 native program; R3's prompt carries the real error log.
    from inference.prompts import NATIVE_OUTPUT

    assert rows["q-sky#R1"]["output"] == NATIVE_OUTPUT and rows["q-sky#R1"]["mode"] == "native"
    assert "IndexError" in rows["q-balls#R3"]["prompt"] and "clips[5]" in rows["q-balls#R3"]["prompt"]
    assert "unrelated focus" in rows["q-flash#R4-program"]["prompt"]
    assert rows["q-word#R4-native"]["mode"] == "program"
    # Labels: m* per the native table.
    labels = {r["id"]: r for r in read_jsonl(out / "label" / "shard-0-of-1.jsonl")}
    assert {k: v["mode_label"] for k, v in labels.items()} == {
        "q-sky": "native", "q-word": "program", "q-balls": "program", "q-flash": "program"}

    # Statistics follow the release's breakdown.
    stats = summary["stats"]
    assert stats["reasoning_samples"] == {"native_R1": 1, "program_R2": 1, "total": 2}
    assert stats["refine_samples"] == {"low_confidence_native": 2, "buggy_program": 1,
                                       "low_confidence_program": 1, "total": 4}
    assert stats["stages"]["programs"] == {"requested": 4, "correct": 2, "wrong": 1, "failed": 1,
                                           "unparsable": 0, "teacher_error": 0, "host_error": 0, "executed_rate": 0.75,
                                           "correct_rate": 0.5}
    assert stats["teacher"]["errors"] == {"programs": 0, "r3": 0, "r4": 0, "total": 0}
    assert stats["stages"]["r4"]["low_confidence_native"] == {"candidates": 3, "kept": 2, "pass_rate": 0.6667}
    assert stats["teacher"]["total_cost_usd"] > 0
    assert (out / "stats.md").read_text().count("buggy program") == 1

    # A rerun of the whole pipeline is answered from the request cache and changes nothing.
    before = {p: p.read_bytes() for p in (out / "dataset").rglob("*.jsonl")}
    calls = len(client.calls)
    parts2, client2 = components(cfg, executor)
    run_pipeline(cfg, **parts2)
    assert len(client2.calls) == 0 and calls > 0
    assert {p: p.read_bytes() for p in (out / "dataset").rglob("*.jsonl")} == before


def test_export_rows_load_with_datasets(tmp_path, executor):
    scenario.write_qa_jsonl(tmp_path)
    cfg = synth_config(tmp_path, sft_kinds="R1,R2", grpo_kinds="R3,R4")
    parts, _ = components(cfg, executor)
    run_pipeline(cfg, **parts)
    dataset_dir = Path(cfg.output_dir) / "dataset"
    import datasets

    sft = datasets.load_dataset(str(dataset_dir), "sft", split="train")
    grpo = datasets.load_dataset(str(dataset_dir), "grpo", split="train")
    assert len(sft) == 2 and len(grpo) == 4
    row = sft[0]
    assert row["messages"][0]["role"] == "user" and row["messages"][0]["content"].startswith("<video>")
    assert row["messages"][0]["content"].count("<video>") == len(row["videos"]) == 1
    assert row["messages"][1]["role"] == "assistant" and "<code>" in row["messages"][1]["content"]
    assert Path(row["videos"][0]).is_absolute()
    g = grpo[0]
    assert set(g) >= {"messages", "videos", "solution", "choices", "mode_label", "kind", "duration", "subtitles"}
    assert g["solution"] in "ABCD" and g["choices"] == scenario.CHOICES and g["mode_label"] == "program"
    assert {r["kind"] for r in grpo} == {"R3", "R4"}
    provenance = list(read_jsonl(dataset_dir / "provenance.jsonl"))
    assert len(provenance) == 6 and all(p["execution"]["success"] for p in provenance)

    # Round trip through the SFT data loader (GRPO rows are SFT rows plus reward columns).
    from training.sft.data import load_sft_rows, to_chat_messages

    for name, count in (("sft", 2), ("grpo", 4)):
        loaded = load_sft_rows(dataset_dir / name / "train.jsonl")
        assert len(loaded) == count
        chat = to_chat_messages(loaded[0]["messages"])
        assert chat[0]["content"][0] == {"type": "video"} and chat[1]["role"] == "assistant"


CRASH_DRIVER = """
import os, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from data_synthesis.config import SynthesisConfig
from data_synthesis.labeling import ModuleLibraryNativeAnswerer
from data_synthesis.pipeline import run_pipeline
from data_synthesis.runtime import SandboxProgramRunner
from data_synthesis.teacher import TeacherClient, TeacherSettings
from inference.sandbox.host import ProgramExecutor
from tests.data_synthesis import scenario

crash_at = int(os.environ.get("CRASH_AT_EXECUTION", "0"))
count = [0]
runner = SandboxProgramRunner(ProgramExecutor(scenario.FAKE_MODULES, workers=1), roots_for=scenario.clip_roots)

def run_program(code, record):
    count[0] += 1
    if count[0] == crash_at:
        os.kill(os.getpid(), 9)  # killed mid-stage, like an OOM kill or a preempted node
    return runner(code, record)

cfg = SynthesisConfig(source=sys.argv[1], output_dir=sys.argv[2], teacher_backoff_s=0.01, teacher_concurrency=1,
                      sft_kinds="R1,R2,R3,R4", grpo_kinds="R1,R2,R3,R4")
teacher = TeacherClient(TeacherSettings.from_config(cfg), client=scenario.FakeChatClient())
run_pipeline(cfg, teacher=teacher, run_program=run_program,
             native=ModuleLibraryNativeAnswerer(scenario.query_native), video_check=scenario.accept_video)
"""


@pytest.mark.parametrize("crash_at", [3, 9, 11])
def test_kill_mid_stage_and_rerun_gives_identical_output(tmp_path, crash_at):
    qa = scenario.write_qa_jsonl(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(CRASH_DRIVER.format(repo=str(REPO)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

    def run(out: Path, crash: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(driver), str(qa), str(out)], cwd=REPO, capture_output=True,
                              text=True, timeout=120, env=dict(env, CRASH_AT_EXECUTION=str(crash)))

    clean = run(tmp_path / "clean", 0)
    assert clean.returncode == 0, clean.stderr
    killed = run(tmp_path / "resumed", crash_at)
    assert killed.returncode == -9, killed.stderr  # it really died mid-run
    partials = list((tmp_path / "resumed").rglob("*.partial.jsonl"))
    assert partials, "the kill should leave a stage half-written"
    resumed = run(tmp_path / "resumed", 0)
    assert resumed.returncode == 0, resumed.stderr

    for name in ("dataset/sft/train.jsonl", "dataset/grpo/train.jsonl", "trajectories.jsonl"):
        a = (tmp_path / "clean" / name).read_text()
        b = (tmp_path / "resumed" / name).read_text()
        if name == "trajectories.jsonl":  # execution timings differ between runs; the rest must not
            a, b = _without_timing(a), _without_timing(b)
        assert a == b, name
    for stage in ("label", "programs", "r1", "r2", "r3", "r4"):
        ids = [r["id"] for r in read_jsonl(tmp_path / "resumed" / stage / "shard-0-of-1.jsonl")]
        clean_ids = [r["id"] for r in read_jsonl(tmp_path / "clean" / stage / "shard-0-of-1.jsonl")]
        assert ids == clean_ids and len(ids) == len(set(ids)), stage
    assert not list((tmp_path / "resumed").rglob("*.partial.jsonl"))


def _without_timing(text: str) -> list:
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items()
                    if k not in ("wall_time_s", "duration_s", "teacher_cached", "cached")}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    return [strip(json.loads(line)) for line in text.splitlines()]


def test_shards_partition_the_work_and_export_merges_them(tmp_path, executor):
    scenario.write_qa_jsonl(tmp_path)
    single = synth_config(tmp_path, output_dir=str(tmp_path / "single"))
    parts, _ = components(single, executor)
    run_pipeline(single, **parts)
    for i in range(2):
        cfg = synth_config(tmp_path, output_dir=str(tmp_path / "sharded"), shard=f"{i}/2",
                           stages="label,programs,r1,r2,r3,r4")
        parts, _ = components(cfg, executor)
        run_pipeline(cfg, **parts)
    with pytest.raises(RuntimeError, match="not finished"):
        run_pipeline(synth_config(tmp_path, output_dir=str(tmp_path / "sharded"), shard="0/3", stages="export"))
    run_pipeline(synth_config(tmp_path, output_dir=str(tmp_path / "sharded"), shard="0/2", stages="export"))
    for name in ("dataset/sft/train.jsonl", "dataset/grpo/train.jsonl"):
        assert (tmp_path / "single" / name).read_text() == (tmp_path / "sharded" / name).read_text()


def test_shipped_teacher_cache_covers_the_quickstart_questions(tmp_path):
    """The quickstart replays data_synthesis/fixtures/teacher_cache_synthetic; if a prompt, the
    module spec or a teacher setting changes, its requests miss - re-record with
    `python -m data_synthesis.record_fixture_cache`."""
    from data_synthesis.quickstart import FIXTURE_CACHE, QUICKSTART_CONFIG
    from data_synthesis.record_fixture_cache import FIXTURE_NOTE
    from data_synthesis.teacher_prompts import StudentPrompts, teacher_messages, teacher_system_prompt
    from inference.config import parse_config
    from inference.toy import TOY_VIDEO_DURATION_S, TOY_VIDEO_SEED
    from inference.toy.synthetic_video import generate_synthetic_video

    video = generate_synthetic_video(tmp_path, duration_s=TOY_VIDEO_DURATION_S, seed=TOY_VIDEO_SEED)
    cfg = parse_config(SynthesisConfig, ["--config", str(QUICKSTART_CONFIG), "--source", str(video.qa_path),
                                         "--output_dir", str(tmp_path / "run"),
                                         "--teacher_cache_dir", str(FIXTURE_CACHE)])
    teacher = TeacherClient(TeacherSettings.from_config(cfg))
    assert teacher.settings.mode == "replay"
    adaptive = teacher_system_prompt(cfg.num_few_shot, with_module_spec=False)
    refine = teacher_system_prompt(cfg.num_few_shot, with_module_spec=True)
    for record in video.qa_records:
        prompts = ((adaptive, StudentPrompts.adaptive(record)), (refine, StudentPrompts.native_refine(record)))
        for system, prompt in prompts:
            reply = teacher.complete(teacher.build_request(teacher_messages(system, prompt)))
            assert reply.cached and "<code>" in reply.text
    entries = [json.loads(p.read_text()) for p in FIXTURE_CACHE.glob("*/*.json")]
    assert entries and all(e["note"] == FIXTURE_NOTE and e["via"] == "fixture" and e["cost_usd"] == 0 for e in entries)


# ------------------------------------------------------------ failures that are not data

def _kept(out: Path) -> dict:
    rows = {r["id"]: r for stage in ("r1", "r2", "r3", "r4") for r in read_jsonl(out / stage / "shard-0-of-1.jsonl")}
    return {tid: (r["kind"], r["refine_type"]) for tid, r in rows.items() if r["verified"]}


class FlakyRunner:
    """Wraps a program runner; for chosen (code, question) pairs the host fails instead: a
    record with ``host_error`` (a module backend down) or a raised ``SandboxStartupError``."""

    def __init__(self, inner, fail_when, how="record"):
        self.inner, self.fail_when, self.how, self.failed = inner, fail_when, how, []

    def __call__(self, code: str, record: QARecord) -> ExecutionRecord:
        if self.fail_when(code, record):
            self.failed.append(record.id)
            if self.how == "raise":
                from inference.sandbox.host import SandboxStartupError

                raise SandboxStartupError("could not start a sandbox worker: fork failed")
            return ExecutionRecord(success=False, error_type="ModuleError",
                                   error_message="query_mc: CUDA out of memory", mode="program",
                                   host_error="query_mc backend: CUDA out of memory")
        return self.inner(code, record)


@pytest.mark.parametrize("how", ["record", "raise"])
def test_host_failures_of_first_programs_are_not_buggy_programs(tmp_path, executor, how):
    """q-balls' program crashes for real (-> R3); here the host fails first: no programs row,
    no R3 candidate, the stage stops, and the rerun retries exactly that question."""
    scenario.write_qa_jsonl(tmp_path)
    cfg = synth_config(tmp_path)
    parts, _ = components(cfg, executor)
    flaky = FlakyRunner(parts["run_program"], lambda code, r: r.id == "q-balls" and "clips[5]" in code, how)
    with pytest.raises(StageFailures, match="programs.*q-balls.*(out of memory|SandboxStartupError)"):
        run_pipeline(cfg, **dict(parts, run_program=flaky))
    out = Path(cfg.output_dir)
    partial = {r["id"]: r for r in read_jsonl(out / "programs" / "shard-0-of-1.partial.jsonl")}
    assert flaky.failed == ["q-balls"] and sorted(partial) == ["q-flash", "q-sky", "q-word"]
    assert not (out / "programs" / "shard-0-of-1.jsonl").exists() and not (out / "r3").exists()

    parts, _ = components(cfg, executor)  # the backend is back
    run_pipeline(cfg, **parts)
    assert _kept(out) == EXPECTED_KEPT
    r3 = list(read_jsonl(out / "r3" / "shard-0-of-1.jsonl"))
    assert [r["id"] for r in r3] == ["q-balls#R3"] and "IndexError" in r3[0]["prompt"]


def test_host_failure_during_a_repair_is_retried_not_sent_back_as_a_bug(tmp_path, executor):
    scenario.write_qa_jsonl(tmp_path)
    cfg = synth_config(tmp_path, max_host_failure_rate=1.0)
    parts, _ = components(cfg, executor)
    # The repaired q-balls program (CORRECT) meets a down backend during R3 verification.
    fixed = scenario.CORRECT.split("<code>\n")[1].split("</code>")[0].strip()
    flaky = FlakyRunner(parts["run_program"], lambda code, r: r.id == "q-balls" and code.strip() == fixed)
    with pytest.raises(StageFailures, match=r"stage 'r3' did not finish: 1 of 1 .*q-balls#R3"):
        run_pipeline(cfg, **dict(parts, run_program=flaky))
    out = Path(cfg.output_dir)
    assert "q-balls" in flaky.failed and not (out / "r3" / "shard-0-of-1.jsonl").exists()
    partial = out / "r3" / "shard-0-of-1.partial.jsonl"
    assert not partial.exists() or not list(read_jsonl(partial))
    parts, _ = components(cfg, executor)
    run_pipeline(cfg, **parts)
    assert _kept(out) == EXPECTED_KEPT


def test_records_without_duration_get_the_probed_one(tmp_path, executor):
    """CG-Bench records may lack ``duration``: programs must still see the video length (as at
    inference, from the video store's probe), and GRPO rows must carry it."""
    probe_calls = []

    def probe(video):
        probe_calls.append(video)
        return 600.0

    code = ("def execute_command(video, question):\n"
            "    return make_result('B' if duration == 600.0 else 'A', 0.9)\n")
    record = QARecord(id="q", video=str(tmp_path / "v.mp4"), question="?", choices=["x", "y"], answer="B")
    assert record.duration is None
    with_probe = SandboxProgramRunner(executor, roots_for=scenario.clip_roots, duration_for=probe)
    assert with_probe(code, record).result.answer == "B" and probe_calls == [record.video]
    without = SandboxProgramRunner(executor, roots_for=scenario.clip_roots)
    assert without(code, record).result.answer == "A"  # what synthesis used to run with

    records = scenario.make_records(tmp_path)
    (tmp_path / "qa.jsonl").write_text("".join(
        json.dumps({k: v for k, v in r.to_dict().items() if k != "duration"}) + "\n" for r in records))
    cfg = synth_config(tmp_path, sft_kinds="R1,R2", grpo_kinds="R1,R2,R3,R4")
    parts, _ = components(cfg, executor)
    parts["run_program"] = SandboxProgramRunner(executor, roots_for=scenario.clip_roots, duration_for=probe)
    run_pipeline(cfg, duration_for=probe, **parts)
    grpo = list(read_jsonl(Path(cfg.output_dir) / "dataset" / "grpo" / "train.jsonl"))
    assert len(grpo) == 6 and all(r["duration"] == 600.0 for r in grpo)


def _server_components(cfg, server, executor):
    settings = dataclasses.replace(TeacherSettings.from_config(cfg), api_base=server.base_url,
                                   api_key_env="VIDEOPRO_TEST_NO_KEY", backoff_max_s=0.02)
    return dict(teacher=TeacherClient(settings),
                run_program=SandboxProgramRunner(executor, roots_for=scenario.clip_roots),
                native=ModuleLibraryNativeAnswerer(scenario.query_native), video_check=scenario.accept_video)


def test_teacher_400_for_one_question_is_recorded_and_retryable_failures_are_retried(tmp_path, executor):
    from data_synthesis.teacher_prompts import StudentPrompts
    from tests.data_synthesis.fake_openai_server import FakeOpenAIServer

    scenario.write_qa_jsonl(tmp_path)
    records = {r.id: r for r in scenario.make_records(tmp_path)}
    balls_first = StudentPrompts.adaptive(records["q-balls"])
    flash_first = StudentPrompts.adaptive(records["q-flash"])

    def user(body):
        return body["messages"][-1]["content"]

    with FakeOpenAIServer(responder=scenario.teacher_reply) as server:
        # 1) q-flash's first program request keeps getting 429 (retries exhausted) while
        #    q-balls' is refused: the exhausted retries stop the stage before any row of the
        #    chunk is written, and the rerun retries it.
        cfg = synth_config(tmp_path, teacher_max_retries=1, stages="label,programs")
        server.status_for = lambda body: (429 if user(body) == flash_first else
                                          400 if user(body) == balls_first else None)
        with pytest.raises(TeacherError, match="after 2 attempts"):
            run_pipeline(cfg, **_server_components(cfg, server, executor))
        out = Path(cfg.output_dir)
        assert not (out / "programs" / "shard-0-of-1.jsonl").exists()
        partial = out / "programs" / "shard-0-of-1.partial.jsonl"
        assert not partial.exists() or not list(read_jsonl(partial))

        # 2) q-balls' first program request is refused (400 content filter): recorded as its
        #    outcome, the shard finishes; q-flash is answered this time.
        server.status_for = lambda body: 400 if user(body) == balls_first else None
        cfg = synth_config(tmp_path, teacher_max_retries=1)
        summary = run_pipeline(cfg, **_server_components(cfg, server, executor))
        programs = {r["id"]: r for r in read_jsonl(out / "programs" / "shard-0-of-1.jsonl")}
        assert programs["q-balls"]["status"] == "teacher_error" and "400" in programs["q-balls"]["teacher_error"]
        assert programs["q-flash"]["status"] == "wrong"
        kept = _kept(out)
        assert kept == {k: v for k, v in EXPECTED_KEPT.items() if k != "q-balls#R3"}
        r2 = {r["id"]: r for r in read_jsonl(out / "r2" / "shard-0-of-1.jsonl")}
        assert r2["q-balls#R2"]["reason"].startswith("teacher_error") and not r2["q-balls#R2"]["verified"]
        stats = summary["stats"]
        assert stats["stages"]["programs"]["teacher_error"] == 1
        assert stats["teacher"]["errors"] == {"programs": 1, "r3": 0, "r4": 0, "total": 1}
        assert "1 refused for their content" in (out / "stats.md").read_text()

        # 3) Reruns skip the refused question: its request is not sent again.
        sent = sum(1 for b in server.chat_requests if user(b) == balls_first)
        for stage in ("r2", "r3", "r4"):  # redo the later stages; programs stays finished
            (out / stage / "shard-0-of-1.jsonl").unlink()
        run_pipeline(cfg, **_server_components(cfg, server, executor))
        assert sum(1 for b in server.chat_requests if user(b) == balls_first) == sent
        assert _kept(out) == kept


def test_a_chunk_refused_entirely_stops_the_stage_without_rows(tmp_path, executor):
    from tests.data_synthesis.fake_openai_server import FakeOpenAIServer

    scenario.write_qa_jsonl(tmp_path)
    with FakeOpenAIServer(responder=scenario.teacher_reply) as server:
        server.status_for = lambda body: 400  # e.g. a parameter this model rejects
        cfg = synth_config(tmp_path, stages="label,programs")
        with pytest.raises(StageFailures, match="refused 4 of 4 request.*whole chunk"):
            run_pipeline(cfg, **_server_components(cfg, server, executor))
    partial = Path(cfg.output_dir) / "programs" / "shard-0-of-1.partial.jsonl"
    assert not partial.exists() or not list(read_jsonl(partial))


def test_a_question_whose_video_is_unreadable_is_reported_and_skipped(tmp_path, executor):
    """A missing or corrupt video is bad input: the question is listed in skipped/<shard>.jsonl
    with the reason and left out, and the other questions go through every stage."""
    from inference.video_store import probe_video

    cfg = synth_config(tmp_path)
    parts, _ = components(cfg, executor)
    records = scenario.make_records(tmp_path)
    broken = records[0]
    real = {r.video for r in records[1:]}

    def check(video: str) -> None:
        if video not in real:
            probe_video(video)  # the real probe: raises VideoInputError naming the file

    summary = run_pipeline(cfg, records=records, **dict(parts, video_check=check))
    skipped_file = tmp_path / "out" / "skipped" / "shard-0-of-1.jsonl"
    skipped = [json.loads(line) for line in skipped_file.read_text().splitlines()]
    assert [row["id"] for row in skipped] == [broken.id]
    assert broken.video in skipped[0]["reason"]
    assert (summary["questions"], summary["skipped_videos"]) == (len(records) - 1, 1)
    label_file = next((tmp_path / "out" / "label").glob("*.jsonl"))
    labels = [json.loads(line) for line in label_file.read_text().splitlines()]
    assert sorted(row["id"] for row in labels) == sorted(r.id for r in records[1:])


def test_the_skip_list_is_decided_once_and_survives_a_fixed_video_and_stage_by_stage_runs(tmp_path, executor):
    """The skip decision is per shard and persistent: a later run (a resumed or stage-by-stage
    one) reuses skipped/<shard>.jsonl without probing, so 'fixing' the video does not put the
    question into later stages that never labelled it."""
    from inference.errors import VideoInputError

    records = scenario.make_records(tmp_path)
    broken = records[0]
    probed: list[str] = []

    def check_broken(video: str) -> None:
        probed.append(video)
        if video == broken.video:
            raise VideoInputError(f"cannot decode {video}")

    def check_fixed(video: str) -> None:
        probed.append(video)

    cfg = synth_config(tmp_path, stages="label")
    parts, _ = components(cfg, executor)
    run_pipeline(cfg, records=records, **dict(parts, video_check=check_broken))
    report = tmp_path / "out" / "skipped" / "shard-0-of-1.jsonl"
    listed = report.read_text()
    assert [json.loads(line)["id"] for line in listed.splitlines()] == [broken.id] and probed

    # The video is "fixed"; the remaining stages run one by one and then all of them again.
    probed.clear()
    for stages in ("programs", "r1,r2,r3,r4,export", "all"):
        cfg = synth_config(tmp_path, stages=stages)
        parts, _ = components(cfg, executor)
        summary = run_pipeline(cfg, records=records, **dict(parts, video_check=check_fixed))
    assert probed == [] and report.read_text() == listed
    assert (summary["questions"], summary["skipped_videos"]) == (len(records) - 1, 1)
    question_ids = {r["question_id"] for r in read_jsonl(tmp_path / "out" / "trajectories.jsonl")}
    assert broken.id not in question_ids and question_ids
    programs = [r["id"] for r in read_jsonl(tmp_path / "out" / "programs" / "shard-0-of-1.jsonl")]
    assert broken.id not in programs and len(programs) == len(records) - 1


def test_a_host_failure_on_every_run_becomes_a_host_error_row_after_max_item_attempts(tmp_path, executor):
    """q-balls' program host-fails on every run: runs 1 and 2 stop with it left for a retry,
    run 3 records it (status host_error) and the shard finishes; the others are unaffected."""
    scenario.write_qa_jsonl(tmp_path)
    cfg = synth_config(tmp_path, max_host_failure_rate=1.0, max_item_attempts=3)
    out = Path(cfg.output_dir)
    for run in (1, 2):
        parts, _ = components(cfg, executor)
        flaky = FlakyRunner(parts["run_program"], lambda code, r: r.id == "q-balls" and "clips[5]" in code, "raise")
        with pytest.raises(StageFailures, match="'programs' did not finish: 1 of .*q-balls"):
            run_pipeline(cfg, **dict(parts, run_program=flaky))
        assert flaky.failed == ["q-balls"]
        attempts = json.loads((out / "programs" / "shard-0-of-1.attempts.json").read_text())
        assert attempts["q-balls"]["attempts"] == run and "SandboxStartupError" in attempts["q-balls"]["last_error"]
    parts, _ = components(cfg, executor)
    flaky = FlakyRunner(parts["run_program"], lambda code, r: r.id == "q-balls" and "clips[5]" in code, "raise")
    summary = run_pipeline(cfg, **dict(parts, run_program=flaky))
    programs = {r["id"]: r for r in read_jsonl(out / "programs" / "shard-0-of-1.jsonl")}
    assert programs["q-balls"]["status"] == "host_error" and "fork failed" in programs["q-balls"]["host_error"]
    assert not (out / "programs" / "shard-0-of-1.attempts.json").exists()
    assert _kept(out) == {k: v for k, v in EXPECTED_KEPT.items() if k != "q-balls#R3"}
    r2 = {r["id"]: r for r in read_jsonl(out / "r2" / "shard-0-of-1.jsonl")}
    assert r2["q-balls#R2"]["reason"].startswith("host_error") and not r2["q-balls#R2"]["verified"]
    assert not any(r["question_id"] == "q-balls" and r["kind"] == "R3"
                   for r in read_jsonl(out / "trajectories.jsonl"))
    stats = summary["stats"]
    assert stats["stages"]["programs"]["host_error"] == 1 and stats["host_errors"]["total"] == 1
    assert "1 item(s) recorded as host_error" in (out / "stats.md").read_text()


def test_rows_record_the_duration_the_program_runner_used(tmp_path, executor):
    """run_pipeline must not build a second probe beside a supplied runner: the rows (and the
    GRPO export) carry the runner's duration, the one its programs ran with."""
    records = scenario.make_records(tmp_path)
    (tmp_path / "qa.jsonl").write_text("".join(
        json.dumps({k: v for k, v in r.to_dict().items() if k != "duration"}) + "\n" for r in records))
    cfg = synth_config(tmp_path, sft_kinds="R1,R2", grpo_kinds="R1,R2,R3,R4")
    parts, _ = components(cfg, executor)
    parts["run_program"] = SandboxProgramRunner(executor, roots_for=scenario.clip_roots, duration_for=lambda v: 432.0)
    run_pipeline(cfg, **parts)  # no duration_for: the runner's probe is the one source
    out = Path(cfg.output_dir)
    for stage in ("programs", "r1", "r2", "r3", "r4"):
        assert {r["duration"] for r in read_jsonl(out / stage / "shard-0-of-1.jsonl")} == {432.0}, stage
    grpo = list(read_jsonl(out / "dataset" / "grpo" / "train.jsonl"))
    assert grpo and all(r["duration"] == 432.0 for r in grpo)
