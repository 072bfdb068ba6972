"""Native labelling (the m* decision around τ), QA sources, and crash-safe stage files."""

from __future__ import annotations

import json

import pytest

from data_synthesis.config import SynthesisConfig
from data_synthesis.labeling import ModuleLibraryNativeAnswerer, label_record, oracle_mode_label
from data_synthesis.sharding import StageFile, in_shard, parse_shard
from inference.confidence import CONFIDENCE_THRESHOLD
from inference.config import parse_config
from inference.qa_sources import load_qa_records, register_source
from inference.types import AnswerResult, QARecord

TAU = CONFIDENCE_THRESHOLD


def record(answer: str = "B") -> QARecord:
    return QARecord(id="q1", video="/v.mp4", question="What colour?", choices=["red", "blue", "green"], answer=answer)


@pytest.mark.parametrize("confidence, expected", [
    (TAU, "native"),            # at tau: native (paper A.3 uses >=)
    (TAU + 1e-9, "native"),     # just above
    (TAU - 1e-9, "program"),    # just below
])
def test_mode_label_at_and_around_tau(confidence, expected):
    label = label_record(record(), lambda r: AnswerResult(answer="B", confidence=confidence), TAU)
    assert label.mode_label == expected and label.correct
    assert oracle_mode_label("B", confidence, "B", TAU) == expected


def test_wrong_confident_answer_is_program_and_native_failures_are_not_labels():
    wrong = label_record(record(), lambda r: AnswerResult(answer="c", confidence=0.99), TAU)
    assert wrong.answer == "C" and not wrong.correct and wrong.mode_label == "program"
    # Scored by inference.scoring.is_correct: "(b)" selects option B.
    assert label_record(record(), lambda r: AnswerResult(answer="(b)", confidence=0.9), TAU).correct

    def broken(r):
        raise ConnectionError("endpoint down")
    with pytest.raises(ConnectionError, match="endpoint down"):  # a failure is not a 'program' label
        label_record(record(), broken, TAU)
    with pytest.raises(ValueError, match="no ground-truth answer"):
        label_record(record(answer=None), broken, TAU)


def _label_ctx(tmp_path, native, n=4, **kw):
    from data_synthesis.trajectories import SynthesisContext

    records = [QARecord(id=f"q{i}", video="/v.mp4", question=f"Q{i}?", choices=["red", "blue", "green"], answer="B")
               for i in range(n)]
    config = SynthesisConfig(teacher_concurrency=2, **kw)  # chunks of 8 questions
    assert config.chunk_size == 8
    return SynthesisContext(records=records, out_dir=tmp_path, shard=(0, 1), native=native, config=config,
                            native_description="the native model (endpoint http://x:8000/v1)")


def test_label_stage_writes_no_row_for_a_failed_native_call_and_a_rerun_retries_it(tmp_path, capsys):
    from data_synthesis.trajectories import StageFailures, run_label_stage

    calls: list[str] = []
    down = {"q2"}

    def native(r):
        calls.append(r.id)
        if r.id in down:
            raise ConnectionError("endpoint down")
        return AnswerResult(answer="B", confidence=0.9)

    ctx = _label_ctx(tmp_path, native, max_host_failure_rate=0.5)
    with pytest.raises(StageFailures, match=r"did not finish: 1 of 4 .*q2.*endpoint down.*rerun"):
        run_label_stage(ctx)
    # The progress display (stderr is not a terminal here: one final log line) counts the rows
    # written and the transient host failure.
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "label [shard 0/1]: 3/4 (75%)" in line and "host_failures=1" in line and line.endswith("(done)")
    stage = ctx.stage_file("label")
    assert not stage.done and sorted(stage.load()) == ["q0", "q1", "q3"]  # no row for q2
    down.clear()
    calls.clear()
    rows = run_label_stage(ctx)
    assert calls == ["q2"] and [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"]
    assert all(r["mode_label"] == "native" and "error" not in r for r in rows)


def test_label_stage_stops_naming_the_backend_when_too_many_fail(tmp_path):
    from data_synthesis.trajectories import StageFailures, run_label_stage

    calls: list[str] = []

    def native(r):
        calls.append(r.id)
        raise ConnectionError("Connection refused")

    ctx = _label_ctx(tmp_path, native, n=20)  # chunk of 8 in a row fails -> stop there
    with pytest.raises(StageFailures, match=r"stopped: 8 of 8 .*http://x:8000/v1.*Connection refused"):
        run_label_stage(ctx)
    assert len(calls) == 8 and not ctx.stage_file("label").load()


def test_module_library_adapter_calls_query_native_like_a_program():
    seen = []

    def query_native(video, question, choices):
        seen.append((video, question, choices))
        return {"answer": "B", "confidence": 0.8, "raw_output": "B", "metadata": {"mode": "native"}}
    label = label_record(record(), ModuleLibraryNativeAnswerer(query_native), TAU)
    assert seen == [("/v.mp4", "What colour?", ["red", "blue", "green"])]
    assert label.mode_label == "native" and label.metadata == {"mode": "native"}


def test_config_parses_yaml_and_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("confidence_threshold: 0.9\nteacher_mode: replay\nstages: label,r1\n")
    cfg = parse_config(SynthesisConfig, ["--config", str(recipe), "--shard", "1/4", "--source", "x.jsonl"])
    assert cfg.confidence_threshold == 0.9 and cfg.teacher_mode == "replay" and cfg.shard == "1/4"
    assert cfg.stage_list() == ["label", "r1"]
    assert SynthesisConfig().confidence_threshold == CONFIDENCE_THRESHOLD == 0.75  # the paper's τ


def test_tau_is_an_accepted_alias_of_confidence_threshold(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("tau: 0.6\n")  # recipes written before the rename
    assert parse_config(SynthesisConfig, ["--config", str(old)]).confidence_threshold == 0.6
    assert parse_config(SynthesisConfig, ["--tau", "0.55"]).confidence_threshold == 0.55
    flag_wins = parse_config(SynthesisConfig, ["--config", str(old), "--confidence_threshold", "0.8"])
    assert flag_wins.confidence_threshold == 0.8
    both = tmp_path / "both.yaml"
    both.write_text("tau: 0.6\nconfidence_threshold: 0.7\n")
    with pytest.raises(ValueError, match="both 'confidence_threshold' and its alias 'tau'"):
        parse_config(SynthesisConfig, ["--config", str(both)])
    with pytest.raises(ValueError, match="shard"):
        SynthesisConfig(shard="4/4")
    with pytest.raises(ValueError, match="unknown stage"):
        SynthesisConfig(stages="label,bogus")


def test_generic_jsonl_source_resolves_paths_and_rejects_duplicate_ids(tmp_path):
    rows = [{"id": f"q{i}", "video": "videos/a.mp4", "question": "?", "choices": ["x", "y"], "answer": "A",
             "subtitles": "subs/a.srt"} for i in range(3)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = list(load_qa_records(str(path), limit=2))
    assert [r.id for r in records] == ["q0", "q1"]
    assert records[0].video == str(tmp_path / "videos" / "a.mp4")
    assert records[0].subtitles == str(tmp_path / "subs" / "a.srt")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:1]))
    with pytest.raises(ValueError, match="appears twice"):
        list(load_qa_records(str(path)))
    with pytest.raises(ValueError, match="unknown QA source"):
        list(load_qa_records("no-such-source"))


def test_cgbench_loader_maps_fields_and_keeps_mini_out_of_train(tmp_path):
    items = [{"qid": i, "video_uid": f"vid{i % 2}", "question": f"Q{i}?", "choices": ["a", "b", "c", "d"],
              "right_answer": "C", "answer": "c", "clue_intervals": [[1.0, 4.0]], "duration": 1200.5,
              "domain": "Sports", "sub_category": "counting"} for i in range(4)]
    (tmp_path / "cgbench.json").write_text(json.dumps(items))
    (tmp_path / "cgbench_mini.json").write_text(json.dumps(items[:1]))
    (tmp_path / "cg_videos_720p").mkdir()
    (tmp_path / "cg_videos_720p" / "vid1.mp4").write_bytes(b"x")
    (tmp_path / "cg_subtitles").mkdir()
    (tmp_path / "cg_subtitles" / "vid1.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    train = list(load_qa_records("cgbench", "train", root=tmp_path))
    assert [r.id for r in train] == ["cgbench-1", "cgbench-2", "cgbench-3"]
    r = train[0]
    assert r.answer == "C" and r.duration == 1200.5 and r.source == "cgbench"
    assert r.video == str(tmp_path / "cg_videos_720p" / "vid1.mp4")
    assert r.subtitles == str(tmp_path / "cg_subtitles" / "vid1.srt")
    assert r.meta["clue_intervals"] == [[1.0, 4.0]] and r.meta["sub_category"] == "counting"
    assert train[1].subtitles is None
    assert [r.id for r in load_qa_records("cgbench", "mini", root=tmp_path)] == ["cgbench-0"]
    with pytest.raises(ValueError, match="root folder"):
        list(load_qa_records("cgbench", "train"))


def test_registry_accepts_new_sources(tmp_path):
    @register_source("unit-test-source")
    def load(root, split, **options):
        yield QARecord(id=f"{split}-1", video=str(root / "v.mp4"), question="?", choices=["a", "b"], answer="A")
    assert [r.id for r in load_qa_records("unit-test-source", "val", root=tmp_path)] == ["val-1"]


def test_sharding_is_a_stable_partition():
    ids = [f"q{i}" for i in range(200)]
    shards = [[i for i in ids if in_shard(i, (k, 3))] for k in range(3)]
    assert sorted(sum(shards, [])) == sorted(ids) and all(shards)
    assert parse_shard("2/3") == (2, 3)


def test_stage_file_resumes_after_torn_line_and_finalizes_in_order(tmp_path):
    stage = StageFile(tmp_path / "label", (0, 1))
    stage.load()
    stage.append({"id": "b", "v": 2})
    stage.append({"id": "a", "v": 1})
    stage.close()
    with stage.partial_path.open("a") as handle:
        handle.write('{"id": "c", "v"')  # killed mid-write
    again = StageFile(tmp_path / "label", (0, 1))
    assert set(again.load()) == {"a", "b"}
    again.append({"id": "c", "v": 3})
    with pytest.raises(RuntimeError, match="written twice"):
        again.append({"id": "a", "v": 1})
    rows = again.finalize(["a", "b", "c"])
    assert [r["id"] for r in rows] == ["a", "b", "c"] and again.done and not again.partial_path.exists()
    assert [json.loads(line)["id"] for line in again.final_path.read_text().splitlines()] == ["a", "b", "c"]


def test_teacher_few_shot_programs_are_valid_programs():
    from data_synthesis.teacher_prompts import FEW_SHOT_EXAMPLES, teacher_system_prompt
    from inference.programs import analyse_output

    for _, output in FEW_SHOT_EXAMPLES:
        analysis = analyse_output(output)
        assert analysis.parsed.format_ok and analysis.runnable and analysis.mode == "program", analysis
    refine_system = teacher_system_prompt(2, with_module_spec=True)
    adaptive_system = teacher_system_prompt(2, with_module_spec=False)
    assert "get_informative_clips(" in refine_system
    assert "get_informative_clips(" not in adaptive_system.split("Further example")[0]


def test_cli_help_lists_every_option(capsys):
    import dataclasses

    from data_synthesis.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(f"--{f.name}" in text for f in dataclasses.fields(SynthesisConfig))


def test_a_native_call_that_fails_on_every_run_is_recorded_as_host_error_after_max_item_attempts(tmp_path):
    """Runs 1 and 2 leave the failing question for a retry; run 3 (max_item_attempts=3) records
    it as status host_error with the last error, and the stage finishes. Others unaffected."""
    from data_synthesis.trajectories import StageFailures, run_label_stage

    calls: list[str] = []

    def native(r):
        calls.append(r.id)
        if r.id == "q2":
            raise ConnectionError(f"endpoint down (call {len(calls)})")
        return AnswerResult(answer="B", confidence=0.9)

    ctx = _label_ctx(tmp_path, native, max_host_failure_rate=1.0, max_item_attempts=3)
    attempts_file = tmp_path / "label" / "shard-0-of-1.attempts.json"
    for run in (1, 2):
        with pytest.raises(StageFailures, match=r"did not finish: 1 of .*q2"):
            run_label_stage(ctx)
        assert json.loads(attempts_file.read_text())["q2"]["attempts"] == run
    calls.clear()
    rows = run_label_stage(ctx)
    assert calls == ["q2"] and [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["q2"]["status"] == "host_error" and by_id["q2"]["mode_label"] is None
    assert "endpoint down" in by_id["q2"]["host_error"] and by_id["q2"]["host_error_runs"] == 3
    assert all(by_id[q]["mode_label"] == "native" and "status" not in by_id[q] for q in ("q0", "q1", "q3"))
    assert not attempts_file.exists() and ctx.stage_file("label").done
    calls.clear()
    assert run_label_stage(ctx) == rows and calls == []  # finished: nothing is asked again


def test_executor_native_answerer_labels_an_unreadable_answer_program_like_the_modules_backend():
    from data_synthesis.labeling import ExecutorNativeAnswerer
    from inference.types import ExecutionRecord

    unreadable = ExecutionRecord(success=False, error_type="InvalidResult",
                                 error_message="answer '' is not an option letter", mode="native")
    executor_label = label_record(record(), ExecutorNativeAnswerer(lambda code, r: unreadable), TAU)
    modules_label = label_record(record(), ModuleLibraryNativeAnswerer(
        lambda video, question, choices: {"answer": "", "confidence": 0.0}), TAU)
    assert executor_label.mode_label == modules_label.mode_label == "program"
    assert (executor_label.answer, executor_label.confidence) == ("", 0.0)
    assert (modules_label.answer, modules_label.confidence) == ("", 0.0)
    assert "InvalidResult" in executor_label.metadata["native_program_error"]

    host_down = ExecutionRecord(success=False, error_type="ModuleError", error_message="oom",
                                host_error="query_native backend: CUDA out of memory")
    with pytest.raises(RuntimeError, match="could not run.*out of memory"):  # a host failure is not a label
        label_record(record(), ExecutorNativeAnswerer(lambda code, r: host_down), TAU)
