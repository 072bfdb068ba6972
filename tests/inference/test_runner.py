"""The adaptive runner (inference/runner.py): refinement decisions, the final-answer rule, the
threshold replay, and whole runs with the tiny Qwen3-VL in-process and the real sandbox.

Purpose-built programs (``code=``) steer each run into the refinement path under test; a
scripted policy (a :class:`VLMBackend` that replies with predetermined outputs) makes the
refined programs, and hence the final-answer rule, deterministic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from inference.backends.vlm import Generation, VLMBackend
from inference.modules import ModuleConfig, ModuleRuntime
from inference.prompts import render_adaptive_prompt, render_native_refine_prompt, render_program_refine_prompt
from inference.runner import (
    AdaptiveRunner,
    Round,
    RunnerConfig,
    RunResult,
    choose_final,
    final_answer_at_threshold,
    next_round_kind,
)
from inference.types import AnswerResult, ExecutionRecord

QUESTION = "What is the background colour of the screen at the start?"
CHOICES = ["red", "blue", "green", "yellow"]

NATIVE_CODE = "def execute_command(video, question):\n    return query_native(video, question, choices)\n"
PROGRAM_CODE = ("def execute_command(video, question):\n"
                "    frames = extract_frames(video, 4)\n"
                "    return query_mc(frames, question, choices)\n")
RAISING_CODE = ("def execute_command(video, question):\n"
                "    frames = extract_frames(video, 2)\n"
                "    raise ValueError('deliberate failure 4711')\n")


def made(answer: str, confidence: float) -> str:
    """A program-mode program whose answer and confidence are fixed (via ``make_result``)."""
    return f"def execute_command(video, question):\n    return make_result({answer!r}, {confidence})\n"


def output(code: str, planning: str = "scripted") -> str:
    """``code`` wrapped in the model-output format the runner parses."""
    return f"<planning>{planning}</planning>\n<code>\n{code}</code>"


# --------------------------------------------------------------------------- without models


def rnd(index: int, *, answer: str | None = None, confidence: float = 0.0, mode: str | None = "program",
        kind: str = "initial", success: bool | None = None, code: str = "def execute_command(v, q): pass") -> Round:
    """A recorded round: valid when ``answer`` is given, failed otherwise."""
    success = answer is not None if success is None else success
    result = AnswerResult(answer, confidence) if answer is not None else None
    execution = ExecutionRecord(success=success, result=result, mode=mode,
                                error_type=None if success else "RuntimeError",
                                error_message=None if success else "boom")
    return Round(index=index, kind=kind, prompt="", output="", planning="", code=code, format_ok=True,
                 problems=[], execution=execution, mode=mode)


@pytest.mark.parametrize("r, expected", [
    (rnd(0), "bugfix"),                                                  # failed at run time
    (rnd(0, code=""), "bugfix"),                                         # no program in the output
    (rnd(0, answer="", success=True), "bugfix"),                         # ran, but no option letter
    (rnd(0, answer="A", confidence=0.5, mode="native"), "native_refine"),
    (rnd(0, answer="A", confidence=0.5, mode="program"), "program_refine"),
    (rnd(0, answer="A", confidence=0.75, mode="program"), None),         # exactly τ: confident
    (rnd(0, answer="A", confidence=0.9, mode="native"), None),
    (rnd(0, answer="A", confidence=0.1, mode="native", kind="fallback"), None),
])
def test_next_round_kind(r: Round, expected: str | None) -> None:
    assert next_round_kind(r, 0.75) == expected


def test_a_program_stated_confidence_counts_as_missing_unless_trusted() -> None:
    stated = rnd(0, answer="A", confidence=0.95, mode="program")
    stated.execution.confidence_source = "program"          # e.g. make_result("A", 0.95)
    model = rnd(1, answer="B", confidence=0.8, mode="program", kind="program_refine")
    model.execution.confidence_source = "module:query_mc"
    assert next_round_kind(stated, 0.75) == "program_refine" and stated.confidence() == 0.0
    assert next_round_kind(stated, 0.75, trust_program_confidence=True) is None
    assert choose_final([stated, model], "max_confidence") is model
    assert choose_final([model, stated], "max_confidence") is model   # 0.8 beats a "missing" 0.95
    assert choose_final([model, stated], "max_confidence", trust_program_confidence=True) is stated
    assert final_answer_at_threshold([stated, model], 0.75).answer == "B"
    assert final_answer_at_threshold([stated, model], 0.75, trust_program_confidence=True).answer == "A"
    assert RunnerConfig().trust_program_confidence is False


def test_choose_final_rules_last_and_max_confidence() -> None:
    for rule in ("last", "max_confidence"):
        assert choose_final([], rule) is None
        assert choose_final([rnd(0), rnd(1, code="")], rule) is None
        rounds = [rnd(0, answer="A", confidence=0.4), rnd(1, answer="B", confidence=0.7), rnd(2)]
        assert choose_final(rounds, rule).index == 1          # a failed refinement discards nothing
        rounds = [rnd(0, answer="A", confidence=0.6), rnd(1, answer="C", confidence=0.6)]
        assert choose_final(rounds, rule).index == 1          # tie: the later round
        # A fallback answer counts only when no program round is valid.
        fb = rnd(2, answer="D", confidence=0.99, mode="native", kind="fallback", code="")
        assert choose_final([rnd(0, answer="A", confidence=0.1), fb], rule).index == 0
        assert choose_final([rnd(0), fb], rule).index == 2
    # The rules differ when the refined program answers less confidently: the paper keeps the
    # refined (re-executed) program's answer; max_confidence keeps the earlier one.
    rounds = [rnd(0, answer="A", confidence=0.7), rnd(1, answer="B", confidence=0.3, kind="program_refine")]
    assert choose_final(rounds).index == choose_final(rounds, "last").index == 1
    assert choose_final(rounds, "max_confidence").index == 0
    with pytest.raises(ValueError, match="final answer rule"):
        choose_final(rounds, "first")


def test_final_answer_at_threshold_replays_the_prefix() -> None:
    # Recorded at τ = 0.75: initial 0.6 -> program refinement 0.8 (stops).
    rounds = [rnd(0, answer="A", confidence=0.6), rnd(1, answer="B", confidence=0.8, kind="program_refine")]
    assert final_answer_at_threshold(rounds, 0.75).answer == "B"
    assert final_answer_at_threshold(rounds, 0.5).answer == "A"       # would have stopped at round 0
    assert final_answer_at_threshold(rounds, 0.6).answer == "A"       # 0.6 >= τ: confident
    assert final_answer_at_threshold(rounds, 0.95).answer == "B"      # cannot replay past the record
    # Nothing valid -> the recorded fallback answers at every threshold.
    fb = rnd(2, answer="D", confidence=0.2, mode="native", kind="fallback", code="")
    assert final_answer_at_threshold([rnd(0), rnd(1, kind="bugfix"), fb], 0.3).answer == "D"
    assert final_answer_at_threshold([rnd(0), rnd(1, kind="bugfix")], 0.3) is None
    # A valid answer before a failed refinement is kept in the replay too.
    rounds = [rnd(0, answer="C", confidence=0.5), rnd(1, kind="program_refine")]
    assert final_answer_at_threshold(rounds, 0.75).answer == "C"
    # Both rules replay: a less confident refinement answers under 'last' only.
    rounds = [rnd(0, answer="A", confidence=0.7), rnd(1, answer="B", confidence=0.3, kind="program_refine")]
    assert final_answer_at_threshold(rounds, 0.75, "last").answer == "B"
    assert final_answer_at_threshold(rounds, 0.75, "max_confidence").answer == "A"
    assert final_answer_at_threshold(rounds, 0.6, "last").answer == "A"      # no refinement at τ = 0.6


def test_runner_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        AdaptiveRunner(None, None, None, confidence_threshold=1.5)
    with pytest.raises(ValueError, match="max_refine_rounds"):
        AdaptiveRunner(None, None, None, max_refine_rounds=-1)
    with pytest.raises(ValueError, match="at least two choices"):
        AdaptiveRunner(None, None, None).run("v.mp4", QUESTION, ["only one"])


def test_run_result_json_round_trip() -> None:
    rounds = [rnd(0), rnd(1, answer="B", confidence=0.8, kind="bugfix")]
    result = RunResult(video="v.mp4", question=QUESTION, choices=CHOICES, answer="B", confidence=0.8,
                       final_round=1, mode="program", rounds=rounds)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["refined"] is True and [r["kind"] for r in data["rounds"]] == ["initial", "bugfix"]
    back = RunResult.from_dict(data)
    assert back.to_dict() == result.to_dict()
    assert final_answer_at_threshold(back.rounds, 0.75).answer == "B"
    # Why the run stopped travels with the record; older records without it read back as None.
    result.stopped_reason, result.host_error = "host_error: query_mc(): ConnectionError: x", "query_mc(): ..."
    back = RunResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.stopped_reason == result.stopped_reason and back.host_error == result.host_error
    del data["stopped_reason"], data["host_error"]
    assert RunResult.from_dict(data).stopped_reason is None


# --------------------------------------------------------------------------- with the tiny model


class ScriptedPolicy(VLMBackend):
    """A policy whose replies are given in advance; records what it was asked."""

    name = "scripted"

    def __init__(self, replies: Sequence[str], delay_s: float = 0.01) -> None:
        self.replies = list(replies)
        self.delay_s = delay_s
        self.prompts: list[str] = []
        self.videos: list[Any] = []

    def identity(self) -> str:
        return "scripted"

    def generate(self, prompt: str | None = None, *, messages: Any = None, images: Any = (), videos: Any = (),
                 max_new_tokens: int = 512, temperature: float = 0.0, top_p: float | None = None,
                 top_k: int | None = None, top_logprobs: int = 0, seed: int | None = None) -> Generation:
        if not self.replies:
            raise AssertionError("the runner asked the scripted policy for more replies than scripted")
        self.prompts.append(prompt)
        self.videos.append(list(videos))
        time.sleep(self.delay_s)  # a measurable generation time
        text = self.replies.pop(0)
        return Generation(text=text, num_tokens=len(text))


@pytest.fixture(scope="module")
def runtime(tiny_qwen3_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> ModuleRuntime:
    """The module library with the tiny Qwen3-VL in-process (few frames: CPU time)."""
    return ModuleRuntime(ModuleConfig(vlm_backend="transformers", vlm_checkpoint=str(tiny_qwen3_vl),
                                      clip_dir=str(tmp_path_factory.mktemp("runner_clips")), device="cpu",
                                      workers=1, video_max_frames=4, max_query_frames=4))


@pytest.fixture(scope="module")
def executor(runtime: ModuleRuntime) -> Iterator[Any]:
    """The real sandbox over the runtime's modules, shared by this file's tests."""
    from inference.sandbox import ProgramExecutor

    with ProgramExecutor(runtime.functions()) as ex:
        yield ex


@pytest.fixture
def video(synthetic_video: Any) -> str:
    return str(synthetic_video.video_path)


def make_runner(policy: Any, executor: Any, runtime: ModuleRuntime, **kwargs: Any) -> AdaptiveRunner:
    kwargs.setdefault("max_new_tokens", 16)  # the tiny model writes garbage: keep it short
    kwargs.setdefault("temperature", 0.0)  # greedy: the tiny model's rounds are the same on every run
    # The scripted programs fix their answers' confidences with make_result (made()), i.e. state
    # them themselves: these tests are about the refinement rules, so such confidences count here.
    # What happens by default (they count as missing) is tested in test_program_stated_confidence_*.
    kwargs.setdefault("trust_program_confidence", True)
    return AdaptiveRunner(policy, executor, runtime, **kwargs)


def kinds(result: RunResult) -> list[str]:
    return [r.kind for r in result.rounds]


def test_failing_program_gets_a_bugfix_round_with_its_error_log(runtime, executor, video) -> None:
    messages: list[str] = []
    runner = make_runner(runtime.vlm, executor, runtime, confidence_threshold=0.75, max_refine_rounds=1,
                         progress=messages.append)
    result = runner.run(video, QUESTION, CHOICES, code=RAISING_CODE)
    assert kinds(result)[:2] == ["given", "bugfix"]
    given, bugfix = result.rounds[:2]
    assert not given.execution.success and given.execution.error_type == "ValueError"
    assert [c.name for c in given.execution.module_calls] == ["extract_frames"]
    # Fig. 11: the failing program and its runtime error log are in the bug-fix prompt.
    assert "deliberate failure 4711" in bugfix.prompt and "raise ValueError" in bugfix.prompt
    assert "Runtime error log" in bugfix.prompt
    assert bugfix.completion_tokens > 0 and bugfix.generate_s > 0
    # The random tiny model writes no valid program, and the paper has no fallback: no answer.
    assert bugfix.answer is None and kinds(result) == ["given", "bugfix"]
    assert result.final_round is None and result.answer == "" and result.stopped_reason == "no_valid_answer"
    assert any("bugfix" in m or "bug fix" in m for m in messages)


def test_low_confidence_native_program_gets_native_refinement(runtime, executor, video) -> None:
    runner = make_runner(runtime.vlm, executor, runtime, confidence_threshold=1.0, max_refine_rounds=1)
    result = runner.run(video, QUESTION, CHOICES, code=NATIVE_CODE)
    assert kinds(result) == ["given", "native_refine"]
    first, refine = result.rounds
    assert first.mode == "native" and first.answer is not None and first.answer.answer in "ABCD"
    assert [c.name for c in first.execution.module_calls] == ["query_native"]
    assert refine.prompt == render_native_refine_prompt(QUESTION, CHOICES)
    assert refine.completion_tokens > 0
    # The tiny model's refinement is garbage: the valid native answer stands.
    assert refine.answer is None
    assert result.final_round == 0 and result.answer == first.answer.answer
    assert result.confidence == pytest.approx(first.answer.confidence)


def test_low_confidence_program_gets_program_refinement(runtime, executor, video) -> None:
    runner = make_runner(runtime.vlm, executor, runtime, confidence_threshold=1.0, max_refine_rounds=1)
    result = runner.run(video, QUESTION, CHOICES, code=PROGRAM_CODE)
    assert kinds(result) == ["given", "program_refine"]
    first, refine = result.rounds
    assert first.mode == "program" and first.answer is not None
    assert [c.name for c in first.execution.module_calls] == ["extract_frames", "query_mc"]
    assert refine.prompt == render_program_refine_prompt(QUESTION, CHOICES, PROGRAM_CODE)
    assert result.refined and result.confidence_threshold == 1.0


def test_generated_initial_round_with_the_tiny_model(runtime, executor, video) -> None:
    runner = make_runner(runtime.vlm, executor, runtime, max_refine_rounds=0)
    result = runner.run(video, QUESTION, CHOICES)
    first = result.rounds[0]
    assert first.kind == "initial" and first.prompt == render_adaptive_prompt(QUESTION, CHOICES)
    assert first.output and first.completion_tokens == 16 and first.generate_s > 0
    # Garbage -> no refinement allowed -> no answer (the fallback is an option, off by default).
    assert first.answer is None and first.execution.error_type == "FormatError"
    assert kinds(result) == ["initial"] and result.final_round is None and result.answer == ""
    json.dumps(result.to_dict())  # the whole record is JSON


def test_refined_program_is_executed_and_wins_when_more_confident(runtime, executor, video) -> None:
    policy = ScriptedPolicy([output(made("C", 0.9), planning="use make_result")])
    runner = make_runner(policy, executor, runtime, confidence_threshold=0.75, max_refine_rounds=1)
    result = runner.run(video, QUESTION, CHOICES, code=made("A", 0.3))
    assert kinds(result) == ["given", "program_refine"]
    refined = result.rounds[1]
    assert refined.planning == "use make_result" and refined.format_ok and refined.code == made("C", 0.9)
    assert refined.execution.success and refined.answer.answer == "C"
    assert result.answer == "C" and result.final_round == 1 and result.confidence == pytest.approx(0.9)
    # The policy watched the whole video (video_max_frames=4 frames) when it refined.
    (frames, metadata), = policy.videos[0]
    assert len(frames) == 4 and metadata["do_sample_frames"] is False
    (want, want_metadata), = runtime.video_inputs(video)["videos"]  # the SFT frame policy
    assert (frames == want).all() and metadata == want_metadata
    assert policy.prompts == [render_program_refine_prompt(QUESTION, CHOICES, made("A", 0.3))]
    # Token counts and timings are recorded per round.
    assert refined.completion_tokens == len(output(made("C", 0.9), planning="use make_result"))
    assert refined.generate_s >= 0.01 and refined.execute_s > 0 and refined.execution.wall_time_s > 0
    assert result.rounds[0].generate_s == 0 and result.wall_time_s >= refined.generate_s


@pytest.mark.parametrize("reply", [
    output(RAISING_CODE),                    # the refined program fails at run time
    "I am not sure what to do.",             # no program at all
    output(made("Z", 0.99)),                 # not an option letter
])
def test_failed_refinement_never_discards_a_valid_answer(runtime, executor, video, reply) -> None:
    runner = make_runner(ScriptedPolicy([reply]), executor, runtime, confidence_threshold=0.75, max_refine_rounds=1)
    result = runner.run(video, QUESTION, CHOICES, code=made("B", 0.5))
    assert kinds(result) == ["given", "program_refine"]
    assert result.rounds[1].answer is None
    assert result.answer == "B" and result.final_round == 0 and result.confidence == pytest.approx(0.5)


@pytest.mark.parametrize("rule, refined_conf, winner", [
    ("last", 0.4, 1), ("last", 0.6, 1),                    # paper: the refined program answers
    ("max_confidence", 0.4, 0), ("max_confidence", 0.6, 1),  # less confident loses; a tie: the later
])
def test_final_answer_rule_decides_between_the_first_and_the_refined_answer(runtime, executor, video, rule,
                                                                           refined_conf, winner) -> None:
    runner = make_runner(ScriptedPolicy([output(made("D", refined_conf))]), executor, runtime,
                         confidence_threshold=0.75, max_refine_rounds=1, final_answer_rule=rule)
    result = runner.run(video, QUESTION, CHOICES, code=made("A", 0.6))
    assert result.final_round == winner and result.answer == ("A", "D")[winner]
    assert result.final_answer_rule == rule
    # The recorded rounds recompute the final answer under either rule (evaluation reports both).
    replayed = RunResult.from_dict(json.loads(json.dumps(result.to_dict())))
    for other in ("last", "max_confidence"):
        want = choose_final(result.rounds, other, trust_program_confidence=True).answer.answer
        assert final_answer_at_threshold(replayed.rounds, 0.75, other, trust_program_confidence=True).answer == want


def test_bugfix_then_program_refinement_chain(runtime, executor, video) -> None:
    policy = ScriptedPolicy([output(made("B", 0.5)), output(made("C", 0.8))])
    runner = make_runner(policy, executor, runtime, confidence_threshold=0.75, max_refine_rounds=3)
    result = runner.run(video, QUESTION, CHOICES, code=RAISING_CODE)
    # Stops as soon as a round is confident, although refinement rounds remain.
    assert kinds(result) == ["given", "bugfix", "program_refine"] and result.stopped_reason == "confident"
    assert result.host_error is None
    assert "deliberate failure 4711" in policy.prompts[0]
    assert policy.prompts[1] == render_program_refine_prompt(QUESTION, CHOICES, made("B", 0.5))
    assert result.answer == "C" and result.final_round == 2


@pytest.mark.parametrize("max_rounds", [0, 2])
def test_max_refine_rounds_is_respected_then_fallback_native(runtime, executor, video, max_rounds) -> None:
    policy = ScriptedPolicy([output(RAISING_CODE)] * max_rounds)
    runner = make_runner(policy, executor, runtime, confidence_threshold=0.75, max_refine_rounds=max_rounds,
                         fallback_native=True)
    result = runner.run(video, QUESTION, CHOICES, code=RAISING_CODE)
    assert kinds(result) == ["given"] + ["bugfix"] * max_rounds + ["fallback"]
    assert result.stopped_reason == "max_refine_rounds"
    assert not policy.replies  # exactly max_rounds generations
    fallback = result.rounds[-1]
    assert fallback.execution.success and fallback.mode == "native" and fallback.code == ""
    assert result.final_round == fallback.index and result.answer == fallback.answer.answer
    assert result.answer in "ABCD"


def test_no_fallback_leaves_the_answer_empty(runtime, executor, video) -> None:
    assert RunnerConfig().fallback_native is False  # the paper has no fallback
    runner = make_runner(ScriptedPolicy([]), executor, runtime, max_refine_rounds=0)
    result = runner.run(video, QUESTION, CHOICES, code=RAISING_CODE)
    assert kinds(result) == ["given"] and result.answer == "" and result.final_round is None
    assert result.confidence == 0.0 and result.mode is None
    assert result.stopped_reason == "no_valid_answer" and result.host_error is None


def test_recorded_run_replays_at_other_thresholds(runtime, executor, video, tmp_path) -> None:
    policy = ScriptedPolicy([output(made("B", 0.7)), output(made("C", 0.9))])
    runner = make_runner(policy, executor, runtime, confidence_threshold=0.85, max_refine_rounds=2)
    result = runner.run(video, QUESTION, CHOICES, code=made("A", 0.6))
    assert kinds(result) == ["given", "program_refine", "program_refine"] and result.answer == "C"
    # Through the JSON record, as a threshold sweep over saved results would do it.
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result.to_dict()))
    replayed = RunResult.from_dict(json.loads(path.read_text()))
    rounds, trust = replayed.rounds, replayed.trust_program_confidence
    assert trust is True  # the record says which confidences counted
    assert final_answer_at_threshold(rounds, 0.85, trust_program_confidence=trust).answer == "C"
    assert final_answer_at_threshold(rounds, 0.65, trust_program_confidence=trust).answer == "B"  # 0.6 < τ, 0.7 stops
    assert final_answer_at_threshold(rounds, 0.5, trust_program_confidence=trust).answer == "A"   # confident at once
    assert final_answer_at_threshold(rounds, 1.0, trust_program_confidence=trust).answer == "C"
    # Not trusted, the program-stated confidences count as missing: every round is refined.
    assert final_answer_at_threshold(rounds, 0.5).answer == "C"


def test_missing_video_is_a_clear_error(runtime, executor, tmp_path) -> None:
    from inference.errors import VideoInputError

    runner = make_runner(ScriptedPolicy([]), executor, runtime)
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoInputError, match="nope.mp4"):
        runner.run(str(missing), QUESTION, CHOICES, code=NATIVE_CODE)


def test_a_host_error_is_not_sent_to_the_model_as_a_bug() -> None:
    """A backend failure (endpoint down) says nothing about the program: no bug-fix round."""
    failed = rnd(0, success=False)
    failed.execution.host_error = "query_mc(): ConnectionError: refused"
    assert next_round_kind(failed, 0.75) is None
    failed.execution.host_error = None
    assert next_round_kind(failed, 0.75) == "bugfix"


# --------------------------------------------------------------------------- host errors, end to end


class DownRuntime:
    """Just what the runner needs of a ModuleRuntime, with a VLM endpoint that is down (or a
    ``query_native`` that raises ``error``)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.store = self
        self.native_calls = 0

    def probe(self, video: str) -> Any:
        return type("Info", (), {"duration": 12.0})()

    def program_roots(self, video: str) -> list[str]:
        return []

    def video_inputs(self, video: str) -> dict[str, Any]:
        raise AssertionError("no program should be generated after a host error")

    def query_native(self, video: str, question: str, choices: list[str]) -> dict[str, Any]:
        self.native_calls += 1
        raise self.error


@pytest.fixture
def down_video(tmp_path: Path) -> str:
    path = tmp_path / "v.mp4"
    path.write_bytes(b"v")
    return str(path)


@pytest.mark.parametrize("fallback", [True, False])
def test_host_error_stops_the_run_without_a_bugfix_round(down_video, fallback) -> None:
    from inference.sandbox import ProgramExecutor

    runtime = DownRuntime(ConnectionError("endpoint http://vlm:8000 refused the connection"))
    messages: list[str] = []
    policy = ScriptedPolicy([])  # raises if asked for a (bug-fix) program
    with ProgramExecutor({"query_native": runtime.query_native}) as executor:
        runner = AdaptiveRunner(policy, executor, runtime, confidence_threshold=0.75, max_refine_rounds=2,
                                fallback_native=fallback, progress=messages.append)
        result = runner.run(down_video, QUESTION, CHOICES, code=NATIVE_CODE)
    given = result.rounds[0]
    assert not given.execution.success
    assert given.execution.host_error == ("query_native(): ConnectionError: endpoint http://vlm:8000 "
                                          "refused the connection")
    assert not policy.prompts                                     # no bug-fix round was generated
    assert kinds(result) == (["given", "fallback"] if fallback else ["given"])
    assert result.answer == "" and result.final_round is None
    assert result.host_error == given.execution.host_error
    assert result.stopped_reason == f"host_error: {given.execution.host_error}"
    assert not any("No refinement needed" in m for m in messages)
    assert any("host error" in m and "ConnectionError" in m for m in messages)
    if fallback:
        # The fallback calls query_native directly: the same failure is recorded as the host's.
        record = result.rounds[1].execution
        assert not record.success and record.error_type == "ConnectionError"
        assert record.host_error == "query_native(): ConnectionError: endpoint http://vlm:8000 refused the connection"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["stopped_reason"].startswith("host_error: ") and data["host_error"]


def test_fallback_program_fault_is_not_a_host_error(down_video) -> None:
    """A query_native fallback that fails with a program-type error (a bad video): no host error."""
    from inference.errors import VideoInputError
    from inference.sandbox import ProgramExecutor

    runtime = DownRuntime(VideoInputError("cannot decode v.mp4"))
    with ProgramExecutor({"query_native": runtime.query_native}) as executor:
        runner = AdaptiveRunner(ScriptedPolicy([]), executor, runtime, max_refine_rounds=0, fallback_native=True)
        result = runner.run(down_video, QUESTION, CHOICES, code=made("Z", 0.9))
    assert kinds(result) == ["given", "fallback"] and runtime.native_calls == 1
    assert result.rounds[1].execution.error_type == "VideoInputError"
    assert result.rounds[1].execution.host_error is None
    assert result.answer == "" and result.host_error is None and result.stopped_reason == "no_valid_answer"
