"""Teacher client against a local OpenAI-compatible server on 127.0.0.1 (no network)."""

from __future__ import annotations

import dataclasses

import pytest

from data_synthesis.cache import request_key
from data_synthesis.teacher import TeacherCacheMiss, TeacherClient, TeacherError, TeacherRejected, TeacherSettings
from tests.data_synthesis.fake_openai_server import FakeOpenAIServer


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


def make_teacher(server, tmp_path, **overrides) -> TeacherClient:
    settings = TeacherSettings(model="gpt-5", api_base=server.base_url, api_key_env="VIDEOPRO_TEST_NO_KEY",
                               cache_dir=str(tmp_path / "cache"), backoff_s=0.01, backoff_max_s=0.05,
                               timeout_s=5.0, max_retries=3, concurrency=2, batch_poll_s=0.01,
                               batch_state_dir=str(tmp_path / "batches"))
    return TeacherClient(dataclasses.replace(settings, **overrides))


def ask(teacher: TeacherClient, text: str) -> dict:
    return teacher.build_request([{"role": "user", "content": text}])


def test_reasoning_model_request_shape(server, tmp_path):
    teacher = make_teacher(server, tmp_path, temperature=0.7, reasoning_effort="high")
    req = ask(teacher, "q")
    assert req["reasoning_effort"] == "high" and "temperature" not in req and "max_tokens" not in req
    assert req["max_completion_tokens"] == teacher.settings.max_completion_tokens
    other = make_teacher(server, tmp_path, model="qwen2.5-72b", temperature=0.7)
    req = ask(other, "q")
    assert req["temperature"] == 0.7 and "reasoning_effort" not in req
    teacher.complete(ask(teacher, "hello"))
    sent = server.chat_requests[-1]
    assert sent["reasoning_effort"] == "high" and "temperature" not in sent


@pytest.mark.parametrize("failure", [{"status": 429}, {"status": 500}, {"status": 503}, {"delay": 1.5}])
def test_retries_then_succeeds(server, tmp_path, failure):
    teacher = make_teacher(server, tmp_path, timeout_s=0.5)
    server.script = [dict(failure), dict(failure)]
    reply = teacher.complete(ask(teacher, "retry me"), tag="programs")
    assert reply.text == "echo: retry me" and not reply.cached
    assert len(server.chat_requests) == 3
    usage = teacher.meter.snapshot()["programs"]
    assert usage["retries"] == 2 and usage["api_calls"] == 3


def test_gives_up_after_max_retries_and_does_not_retry_400(server, tmp_path):
    teacher = make_teacher(server, tmp_path, max_retries=2)
    server.script = [{"status": 429}] * 5
    with pytest.raises(TeacherError, match="after 3 attempts"):
        teacher.complete(ask(teacher, "x"))
    assert len(server.chat_requests) == 3
    server.script = [{"status": 400}]
    with pytest.raises(TeacherError, match="rejected \\(400\\)"):
        teacher.complete(ask(teacher, "y"))
    assert len(server.chat_requests) == 4


def _last_user(body: dict) -> str:
    return body["messages"][-1]["content"]


def test_one_refused_request_does_not_fail_the_others(server, tmp_path):
    """A 400 (content filter) is that request's outcome; the rest of the chunk is answered."""
    teacher = make_teacher(server, tmp_path)
    server.status_for = lambda body: 400 if _last_user(body) == "q2" else None
    requests = [ask(teacher, f"q{i}") for i in range(4)]
    replies = teacher.complete_many(requests, tag="programs", keep_rejected=True)
    assert isinstance(replies[2], TeacherRejected) and replies[2].status_code == 400
    assert "rejected (400)" in str(replies[2]) and replies[2].key == request_key(requests[2])
    assert [r.text for i, r in enumerate(replies) if i != 2] == ["echo: q0", "echo: q1", "echo: q3"]
    assert sum(1 for b in server.chat_requests if _last_user(b) == "q2") == 1  # not retried
    assert teacher.meter.snapshot()["programs"]["rejected"] == 1
    with pytest.raises(TeacherRejected):  # without keep_rejected it still raises
        teacher.complete_many(requests, tag="programs")


def test_exhausted_retries_and_account_errors_still_raise(server, tmp_path):
    teacher = make_teacher(server, tmp_path, max_retries=1)
    server.status_for = lambda body: 429 if _last_user(body) == "q1" else None
    with pytest.raises(TeacherError, match="after 2 attempts") as info:
        teacher.complete_many([ask(teacher, f"q{i}") for i in range(3)], keep_rejected=True)
    assert not isinstance(info.value, TeacherRejected)
    server.status_for = lambda body: 401  # a bad key concerns every request: fatal
    with pytest.raises(TeacherError, match="rejected \\(401\\)") as info:
        teacher.complete_many([ask(teacher, "other")], keep_rejected=True)
    assert not isinstance(info.value, TeacherRejected)


def test_batch_mode_returns_a_refused_item_in_its_place(server, tmp_path):
    batch = make_teacher(server, tmp_path, mode="batch")
    server.status_for = lambda body: 400 if _last_user(body) == "b1" else None
    replies = batch.complete_many([ask(batch, f"b{i}") for i in range(3)], tag="r3", keep_rejected=True)
    assert isinstance(replies[1], TeacherRejected) and [replies[0].text, replies[2].text] == ["echo: b0", "echo: b2"]


def test_retry_after_header_is_honoured(server, tmp_path):
    delays: list[float] = []
    teacher = make_teacher(server, tmp_path)
    teacher._sleep = delays.append
    server.script = [{"status": 429, "headers": {"Retry-After": "0.02"}}]
    teacher.complete(ask(teacher, "z"))
    assert delays == [0.02]


def test_cache_hits_on_rerun_and_cost_accounting(server, tmp_path):
    teacher = make_teacher(server, tmp_path)
    requests = [ask(teacher, f"question {i}") for i in range(4)]
    replies = teacher.complete_many(requests, tag="programs")
    assert [r.text for r in replies] == [f"echo: question {i}" for i in range(4)]
    assert len(server.chat_requests) == 4
    # 1000 prompt tokens (200 cached), 500 completion tokens at GPT-5 prices.
    one = (800 * 1.25 + 200 * 0.125 + 500 * 10.0) / 1e6
    usage = teacher.meter.snapshot()["programs"]
    assert usage["cost_usd"] == pytest.approx(4 * one)
    assert usage["prompt_tokens"] == 4000 and usage["reasoning_tokens"] == 1200

    rerun = make_teacher(server, tmp_path)  # a new process reading the same cache
    again = rerun.complete_many(requests, tag="programs")
    assert [r.text for r in again] == [r.text for r in replies] and all(r.cached for r in again)
    assert len(server.chat_requests) == 4
    usage = rerun.meter.snapshot()["programs"]
    assert usage["cost_usd"] == 0 and usage["cache_hits"] == 4
    assert usage["recorded_cost_usd"] == pytest.approx(4 * one)


def test_cache_key_covers_the_whole_request(server, tmp_path):
    teacher = make_teacher(server, tmp_path)
    base = ask(teacher, "same")
    assert request_key(base) == request_key(dict(reversed(list(base.items()))))
    assert request_key(base) != request_key({**base, "reasoning_effort": "low"})
    assert request_key(base) != request_key({**base, "model": "gpt-5-mini"})


def test_replay_answers_from_cache_and_fails_clearly_on_miss(server, tmp_path):
    live = make_teacher(server, tmp_path)
    live.complete(ask(live, "recorded"))
    replay = make_teacher(server, tmp_path, mode="replay")
    assert replay.complete(ask(replay, "recorded")).text == "echo: recorded"
    with pytest.raises(TeacherCacheMiss, match="no cached answer.*not recorded"):
        replay.complete(ask(replay, "not recorded"))
    assert len(server.chat_requests) == 1


def test_batch_mode_submits_misses_and_collects_into_cache(server, tmp_path):
    teacher = make_teacher(server, tmp_path)
    teacher.complete(ask(teacher, "already cached"))
    batch = make_teacher(server, tmp_path, mode="batch")
    requests = [ask(batch, "already cached")] + [ask(batch, f"b{i}") for i in range(3)]
    replies = batch.complete_many(requests, tag="r3")
    assert [r.text for r in replies] == ["echo: already cached"] + [f"echo: b{i}" for i in range(3)]
    assert len(server.batches) == 1 and len(server.chat_requests) == 1
    assert [r.via for r in replies[1:]] == ["batch"] * 3
    usage = batch.meter.snapshot()["r3"]
    one = (800 * 1.25 + 200 * 0.125 + 500 * 10.0) / 1e6
    assert usage["cost_usd"] == pytest.approx(3 * one * 0.5)
    # Everything is cached now: a replay run needs no server at all.
    replay = make_teacher(server, tmp_path, mode="replay")
    assert replay.complete(requests[2]).text == "echo: b1"


@pytest.mark.parametrize("mode", ["live", "batch"])
def test_a_refusal_is_cached_and_replayed_as_the_same_refusal(server, tmp_path, mode):
    """A run with teacher_error rows must replay: the refusal is a negative cache entry."""
    teacher = make_teacher(server, tmp_path, mode=mode)
    server.status_for = lambda body: 400 if _last_user(body) == "q1" else None
    requests = [ask(teacher, f"q{i}") for i in range(3)]
    first = teacher.complete_many(requests, tag="programs", keep_rejected=True)
    assert isinstance(first[1], TeacherRejected)
    sent = len(server.chat_requests)

    replay = make_teacher(server, tmp_path, mode="replay")
    again = replay.complete_many(requests, tag="programs", keep_rejected=True)
    assert isinstance(again[1], TeacherRejected) and not isinstance(again[1], TeacherCacheMiss)
    assert (str(again[1]), again[1].status_code, again[1].key) == (str(first[1]), 400, request_key(requests[1]))
    assert [again[0].text, again[2].text] == ["echo: q0", "echo: q2"]
    assert replay.meter.snapshot()["programs"]["rejected"] == 1
    with pytest.raises(TeacherRejected, match="rejected \\(400\\)"):
        replay.complete(requests[1])
    # A live rerun gets the refusal from the cache too: the request is not sent again.
    live = make_teacher(server, tmp_path)
    assert isinstance(live.complete_many(requests, keep_rejected=True)[1], TeacherRejected)
    assert len(server.chat_requests) == sent
