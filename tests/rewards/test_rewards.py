"""The reward table (paper Eq. 3, A.3): hand-written completions executed in the sandbox with
the real module runtime (tiny Qwen3-VL, synthetic video) give the exact component values and
weighted sums; a host error is unscorable (None), never 0; VLM calls of concurrent programs
are served together and identical calls computed once."""

from __future__ import annotations

import math
import socket

import pytest

from inference.modules import ModuleRuntime
from inference.scoring import is_correct
from rewards import RewardConfig, score_completions
from rewards.scoring import RewardScorer, completion_text

CHOICES = ["red", "blue", "green", "white"]


def row(synthetic_video, *, mode_label: str = "program", solution: str = "B") -> dict:
    return {"id": f"q#{mode_label}", "videos": [str(synthetic_video.video_path)], "question": "Which colour?",
            "choices": CHOICES, "solution": solution, "mode_label": mode_label,
            "duration": synthetic_video.duration, "subtitles": str(synthetic_video.subtitle_path)}


def out(body: str, planning: str = "Decide.") -> str:
    return f"<planning>{planning}</planning>\n<code>\ndef execute_command(video, question):\n{body}</code>"


CORRECT = out("    return make_result('B', 0.9)\n")
WRONG = out("    return make_result('A', 0.9)\n")
NATIVE = out("    return query_native(video, question, choices)\n")
CRASH = out("    frames = extract_frames(video, 2)\n    return frames[10]\n")
HANG = out("    while True:\n        pass\n")
FORGED = out("    r = query_mc(extract_frames(video, 2), question, choices)\n"
             "    if not r['answer']:\n        r['answer'] = 'C'\n    r['confidence'] = 1.0\n    return r\n")

# (name, completion, truncated, mode_label, accuracy, format, mode); accuracy None = from the model.
TABLE = [
    ("correct", CORRECT, False, "program", 1.0, 1.0, 1.0),
    ("wrong", WRONG, False, "program", 0.0, 1.0, 1.0),
    ("no_planning", "<code>\ndef execute_command(video, question):\n    return make_result('B', 0.9)\n</code>",
     False, "program", 1.0, 0.0, 1.0),
    ("no_code", "<planning>I would look at the video.</planning>", False, "program", 0.0, 0.0, 0.0),
    ("two_functions", "<planning>p</planning>\n<code>\ndef execute_command(video, question):\n"
     "    return make_result('B', 0.9)\ndef execute_command(video, question):\n    return make_result('C', 0.9)\n"
     "</code>", False, "program", 0.0, 0.0, 1.0),
    ("unknown_module", out("    frames = magic_frames(video)\n    return query_mc(frames, question, choices)\n"),
     False, "program", 0.0, 0.0, 1.0),
    ("syntax_error", out("    return make_result('B', 0.9\n"), False, "program", 0.0, 0.0, 0.0),
    ("truncated", CORRECT[: CORRECT.index("make_result")], True, "program", 0.0, 0.0, 1.0),
    ("native_vs_native", NATIVE, False, "native", None, 1.0, 1.0),
    ("native_vs_program", NATIVE, False, "program", None, 1.0, 0.0),
    ("program_vs_native", CORRECT, False, "native", 1.0, 1.0, 0.0),
    ("crash", CRASH, False, "program", 0.0, 1.0, 1.0),
    ("hang", HANG, False, "program", 0.0, 1.0, 1.0),
    ("forged_confidence", FORGED, False, "program", None, 1.0, 1.0),
]


@pytest.fixture(scope="module")
def runtime(tiny_qwen3_vl, toy_assets, tmp_path_factory) -> ModuleRuntime:
    return ModuleRuntime(toy_assets.module_config(clip_dir=str(tmp_path_factory.mktemp("reward_clips")),
                                                  video_max_frames=4, max_query_frames=4))


@pytest.fixture(scope="module")
def table_batch(runtime, synthetic_video):
    config = RewardConfig(answering_vlm="module_config", program_timeout_s=4.0, exec_workers=4)
    rows = [row(synthetic_video, mode_label=label) for _, _, _, label, *_ in TABLE]
    completions = [c for _, c, *_ in TABLE]
    truncated = [t for _, _, t, *_ in TABLE]
    scorer = RewardScorer(config, runtime=runtime)
    yield scorer.score(rows, completions, truncated), rows, scorer
    scorer.close()


@pytest.mark.parametrize("index", range(len(TABLE)), ids=[t[0] for t in TABLE])
def test_reward_table(table_batch, index) -> None:
    batch, rows, _ = table_batch
    name, _, _, _, accuracy, fmt, mode = TABLE[index]
    record = batch.records[index]
    if accuracy is None:  # the tiny model chose the letter: the reward must agree with the one scorer
        letter = record["result"]["answer"] if record["success"] else None
        accuracy = 1.0 if is_correct(letter, rows[index]["solution"], 4) else 0.0
    assert batch.components["accuracy"][index] == accuracy, (name, batch.reasons["accuracy"][index])
    assert batch.components["format"][index] == fmt, (name, batch.reasons["format"][index])
    assert batch.components["mode"][index] == mode, (name, batch.reasons["mode"][index])
    assert batch.total[index] == pytest.approx(0.5 * accuracy + 0.2 * fmt + 0.3 * mode)
    # Every value below 1 says why.
    for component in ("accuracy", "format", "mode"):
        assert (batch.components[component][index] == 1.0) == (batch.reasons[component][index] is None)


def test_failure_reasons_are_categorised_and_counted(table_batch) -> None:
    batch, _, _ = table_batch
    by = {t[0]: i for i, t in enumerate(TABLE)}
    assert batch.reasons["accuracy"][by["crash"]].startswith("program_error: IndexError")
    assert batch.reasons["accuracy"][by["hang"]].startswith("timeout:")
    assert batch.reasons["accuracy"][by["wrong"]] == "wrong_answer: A, solution B"
    assert batch.reasons["format"][by["truncated"]].startswith("truncated")
    assert batch.reasons["format"][by["two_functions"]].startswith("entry_point_count")
    assert batch.reasons["format"][by["unknown_module"]].startswith("unknown_module")
    assert batch.reasons["format"][by["syntax_error"]].startswith("syntax_error")
    assert batch.reasons["mode"][by["native_vs_program"]].startswith("mode_mismatch")
    assert batch.counters["accuracy/timeout"] == 1 and batch.counters["format/syntax_error"] == 1
    assert batch.counters["unscorable"] == 0
    assert batch.modes[by["native_vs_native"]] == "native" and batch.modes[by["no_code"]] is None
    # The forged confidence is recorded as the program's, not the model's (executor integrity),
    # and counts as missing unless trust is switched on.
    forged = batch.records[by["forged_confidence"]]
    assert forged["success"] and forged["result"]["confidence"] == 1.0 and forged["confidence_source"] == "program"
    assert batch.confidences[by["forged_confidence"]] is None
    native = batch.records[by["native_vs_native"]]
    assert native["confidence_source"] in ("module:query_native", "missing")


def test_identical_module_calls_are_computed_once_and_vlm_calls_batched(table_batch, synthetic_video) -> None:
    batch, _, scorer = table_batch
    # Two identical query_native calls (same video, question, choices) and one query_mc: the
    # identical pair is computed once (single flight), so the VLM answered two requests.
    assert batch.timing["vlm_requests"] == 2 and batch.timing["vlm_batches"] <= 2
    assert batch.timing["module_calls_computed"] < batch.timing["module_calls"]
    # The same step again at the same weights: every module call comes from the cache.
    again = scorer.score([row(synthetic_video)] * 3, [NATIVE, FORGED, NATIVE])
    assert again.timing["module_calls"] >= 3 and again.timing["module_calls_computed"] == 0
    by = {t[0]: i for i, t in enumerate(TABLE)}
    assert again.components["accuracy"] == [batch.components["accuracy"][by[n]]
                                            for n in ("native_vs_program", "forged_confidence", "native_vs_program")]


def test_host_error_is_unscorable_not_zero(synthetic_video, tmp_path, toy_assets) -> None:
    with socket.socket() as s:  # a port nothing listens on: the answering endpoint is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runtime = ModuleRuntime(toy_assets.module_config(vlm_backend="openai", vlm_base_url=f"http://127.0.0.1:{port}/v1",
                                                     vlm_model="tiny", clip_dir=str(tmp_path / "clips"),
                                                     vlm_timeout=5.0, video_max_frames=4))
    config = RewardConfig(answering_vlm="module_config", program_timeout_s=30.0, exec_workers=2)
    batch = score_completions([row(synthetic_video)] * 2, [NATIVE, CORRECT], config, runtime=runtime)
    assert batch.components["accuracy"][0] is None and batch.total[0] is None
    assert batch.reasons["accuracy"][0].startswith("host_error:")
    assert batch.components["format"][0] == 1.0 and batch.components["mode"][0] == 0.0
    assert batch.total[1] == 1.0                       # a program that needs no VLM is still scored
    assert batch.counters["unscorable"] == 1 and batch.counters["accuracy/host_error"] == 1
    assert batch.mean() == 1.0                         # the unscorable one is left out, not counted as 0


class _FailsFirstCalls:
    """The tiny model behind a flaky link: the first ``failures`` generate calls fail as a dropped
    connection would (a host error), later ones are answered by the real model."""

    def __init__(self, backend, failures: int) -> None:
        self.backend, self.failures = backend, failures

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def generate_batch(self, requests):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("connection reset by peer")
        return self.backend.generate_batch(requests)


@pytest.mark.parametrize("retries,failures,scorable", [(1, 1, True), (0, 1, False), (2, 3, False)])
def test_host_errors_are_retried_before_a_completion_is_unscorable(synthetic_video, tmp_path, toy_assets,
                                                                   retries, failures, scorable) -> None:
    runtime = ModuleRuntime(toy_assets.module_config(clip_dir=str(tmp_path / "clips"), video_max_frames=4))
    flaky = _FailsFirstCalls(runtime.vlm, failures)
    config = RewardConfig(program_timeout_s=60.0, exec_workers=1, host_error_retries=retries)
    batch = score_completions([row(synthetic_video)], [NATIVE], config, runtime=runtime, vlm=flaky)
    assert batch.timing.get("host_error_retries", 0.0) == min(retries, failures)
    if scorable:   # the retry reached the model: a real answer, scored 0 or 1
        assert batch.components["accuracy"][0] in (0.0, 1.0) and batch.total[0] is not None
    else:
        assert batch.components["accuracy"][0] is None and batch.counters["unscorable"] == 1


def test_config_is_validated_and_rows_are_checked(synthetic_video) -> None:
    with pytest.raises(ValueError, match="same length"):
        RewardConfig(reward_funcs=["accuracy", "format"], reward_weights=[1.0])
    with pytest.raises(ValueError, match="unknown reward component"):
        RewardConfig(reward_funcs=["acc"], reward_weights=[1.0])
    with pytest.raises(ValueError, match="needs the policy's VLM"):
        RewardScorer(RewardConfig())                  # answering_vlm=policy, no VLM given
    formats_only = RewardConfig(reward_funcs=["format", "mode"], reward_weights=[0.4, 0.6])
    bad = dict(row(synthetic_video))
    del bad["mode_label"]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['mode_label'\]"):
        score_completions([bad], [CORRECT], formats_only)
    batch = score_completions([row(synthetic_video)], [CORRECT], formats_only)
    assert batch.total == [pytest.approx(1.0)] and batch.records == [None]  # nothing executed
    with pytest.raises(ValueError, match="2 completions for 1 rows"):
        score_completions([row(synthetic_video)], [CORRECT, CORRECT], formats_only)


def test_conversational_completions_are_read() -> None:
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant",
                                                              "content": [{"type": "text", "text": "y"}]}]) == "y"
    with pytest.raises(TypeError):
        completion_text(3)
    assert math.isclose(sum(RewardConfig().weights.values()), 1.0)


def test_a_program_stated_confidence_is_read_only_when_trusted(runtime, synthetic_video) -> None:
    for trust, expected in ((False, None), (True, 1.0)):
        config = RewardConfig(answering_vlm="module_config", trust_program_confidence=trust, exec_workers=1)
        scorer = RewardScorer(config, runtime=runtime)
        try:
            batch = scorer.score([row(synthetic_video)], [FORGED])
        finally:
            scorer.close()
        assert batch.confidences == [expected]
        assert batch.rows()[0]["confidence"] == expected
