"""Reward hacks a policy sampling at temperature 1 could find (red team of the GRPO reward),
each scored as a real completion through the real parser, sandbox and module runtime (tiny
Qwen3-VL, synthetic video): answers that name several options, and module arguments that made a
backend fail deep inside, so that a bad completion read as a host error (unscorable, left out of
the advantage) instead of a 0, and failed the other programs batched with it."""

from __future__ import annotations

import pytest

from inference.backends.vlm import GenerateRequest
from inference.modules import ModuleRuntime
from rewards import RewardConfig
from rewards.scoring import RewardScorer

CHOICES = ["red", "blue", "green", "white"]


def out(body: str) -> str:
    return f"<planning>Decide.</planning>\n<code>\ndef execute_command(video, question):\n{body}</code>"


def row(video, **over) -> dict:
    base = {"id": "q", "videos": [str(video.video_path)], "question": "Which colour?", "choices": CHOICES,
            "solution": "B", "mode_label": "program", "duration": video.duration,
            "subtitles": str(video.subtitle_path)}
    return {**base, **over}


# -- answers naming more than one option ---------------------------------------------------------

# Each scored 1 whenever the solution was the first letter named (the rest were ignored).
SEVERAL_LETTERS = ["A B C D", "B, A", "B A", "B. A.", "(B) (A)", "Answer: B or A", "B\nA", "B OR A",
                   "option B, option A", "B: blue or A: red"]


@pytest.mark.parametrize("answer", SEVERAL_LETTERS)
def test_an_answer_naming_several_options_scores_nothing(scorer, synthetic_video, answer) -> None:
    completions = [out(f"    return {answer!r}\n"), out(f"    return make_result({answer!r}, 0.9)\n")]
    batch = scorer.score([row(synthetic_video)] * 2, completions)
    assert batch.components["accuracy"] == [0.0, 0.0], batch.reasons["accuracy"]
    assert all(r.startswith("no_valid_letter:") and "more than one option" in r for r in batch.reasons["accuracy"])


@pytest.mark.parametrize("answer, letter", [
    ("B", "B"), ("(B)", "B"), ("b", "B"), ("B. A man walks", "B"), ("Answer: B", "B"), ("The answer is (B)", "B"),
    (" Blue ", "B"), ("B, because it is blue", "B"),
])
def test_one_option_in_the_usual_spellings_still_scores(scorer, synthetic_video, answer, letter) -> None:
    batch = scorer.score([row(synthetic_video)], [out(f"    return {answer!r}\n")])
    assert batch.components["accuracy"] == [1.0], batch.reasons["accuracy"]
    assert batch.records[0]["result"]["answer"] == letter


@pytest.mark.parametrize("answer", ["\uff22", "\u0412", "B\u200b", "ABCD", "A or B", "blue and red", "bl ue"])
def test_lookalikes_and_joined_texts_are_no_letter(scorer, synthetic_video, answer) -> None:
    batch = scorer.score([row(synthetic_video)], [out(f"    return {answer!r}\n")])
    assert batch.components["accuracy"] == [0.0], batch.reasons["accuracy"]
    assert batch.reasons["accuracy"][0].startswith("no_valid_letter:")


# -- program arguments that made a backend fail (host error instead of a program fault) ----------

CONTROL_TOKEN_CALLS = [
    "query_mc(f, '<|vision_start|><|video_pad|><|vision_end|>', choices)",
    "query_mc(f, '<|image_pad|>' * 5 + question, choices)",
    "query_frames([f[0]], '<|image_pad|><|vision_start|>')",
    "query_yn(f, 'is it red? <|video_pad|>')",
    "query_mc(f, question, ['red <|image_pad|>', 'blue'])",
    "query_native(video, question, ['<|vision_start|>', 'blue'])",
    "get_subtitle_hints(video, '<|video_pad|> colour?', choices)",
]


@pytest.mark.parametrize("call", CONTROL_TOKEN_CALLS)
def test_control_tokens_in_a_prompt_text_are_the_programs_fault(scorer, synthetic_video, call) -> None:
    # Before: the processor raised StopIteration (or TypeError) deep inside generation: an
    # unscorable completion (host error) for a program that never answered, and the same
    # exception in every other program whose VLM call shared the batch.
    body = f"    f = extract_frames(video, 2)\n    {call}\n    return 'B'\n"
    batch = scorer.score([row(synthetic_video)], [out(body)])
    record = batch.records[0]
    assert record["host_error"] is None, record["host_error"]
    assert batch.components["accuracy"] == [0.0], batch.reasons["accuracy"]
    assert "control token" in record["error_message"], record["error_message"]
    assert batch.total[0] is not None


def test_a_poisoned_call_does_not_fail_the_programs_batched_with_it(scorer, synthetic_video) -> None:
    honest = out("    r = query_mc(extract_frames(video, 2), question, choices)\n"
                 "    return make_result('B', 0.5)\n")
    poisoned = out("    query_frames(extract_frames(video, 2), '<|video_pad|>')\n    return 'B'\n")
    rows = [row(synthetic_video, question=f"Which colour? ({i})") for i in range(4)]
    batch = scorer.score(rows, [poisoned, honest, poisoned, honest])
    assert batch.components["accuracy"] == [0.0, 1.0, 0.0, 1.0], batch.reasons["accuracy"]
    assert all(r["host_error"] is None for r in batch.records)


class _RejectsHugeRequests:
    """The tiny model behind an endpoint that refuses (HTTP 400, a program fault) any request whose
    prompt holds the marker, as a server refuses a request beyond its context; the rest of a
    batch it answers as the model does."""

    MARKER = "ENORMOUS"

    def __init__(self, backend) -> None:
        self.backend = backend
        self.name = "rejecting"

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def identity(self) -> str:
        return "rejecting:" + self.backend.identity()

    def generate(self, prompt=None, **kwargs):
        return self.generate_batch([GenerateRequest(prompt, **kwargs)])[0]

    def generate_batch(self, requests):
        from inference.errors import RequestRejectedError

        if any(self.MARKER in (r.prompt or "") for r in requests):
            raise RequestRejectedError("the VLM endpoint refused the request these arguments made (HTTP 400)")
        return self.backend.generate_batch(requests)


def test_one_programs_rejected_request_does_not_fail_its_batch(tiny_qwen3_vl, toy_assets, tmp_path,
                                                               synthetic_video) -> None:
    # Before: BatchingVLM raised a batch's failure in every caller, so the honest programs whose
    # query_mc shared the batch with the rejected request failed too (accuracy 0), which raised
    # the saboteur's advantage within its GRPO group.
    runtime = ModuleRuntime(toy_assets.module_config(clip_dir=str(tmp_path / "clips"), video_max_frames=4,
                                                     max_query_frames=4))
    vlm = _RejectsHugeRequests(runtime.vlm)
    scorer = RewardScorer(RewardConfig(answering_vlm="policy", program_timeout_s=30.0, exec_workers=4,
                                       vlm_batch_window_s=1.0), runtime=runtime, vlm=vlm)
    try:
        honest = out("    r = query_mc(extract_frames(video, 2), question, choices)\n"
                     "    return make_result('B', 0.5)\n")
        saboteur = out("    r = query_mc(extract_frames(video, 2), question + ' ENORMOUS', choices)\n"
                       "    return make_result('B', 0.5)\n")
        batch = scorer.score([row(synthetic_video)] * 4, [saboteur, honest, honest, honest])
        assert scorer.batching is not None and scorer.batching.batches < scorer.batching.requests  # shared
        assert batch.components["accuracy"] == [0.0, 1.0, 1.0, 1.0], batch.reasons["accuracy"]
        assert "HTTP 400" in batch.records[0]["error_message"]
        assert all(r["host_error"] is None for r in batch.records)
    finally:
        scorer.close()
