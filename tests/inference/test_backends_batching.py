"""Concurrent VLM calls served together: ``TransformersVLM.generate_batch`` (one padded forward)
gives each request the reply it gets alone, and ``BatchingVLM`` gathers concurrent callers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from inference.backends.batching import BatchingVLM
from inference.backends.vlm import GenerateRequest, TransformersVLM, VLMBackend
from inference.vlm_inputs import video_metadata_for
from tests.fixtures.frames import gradient_frames


def _video(n: int, seed: int) -> tuple[np.ndarray, dict]:
    frames = gradient_frames(n, 64, 64, seed=seed)
    return frames, video_metadata_for(frames, fps=4.0, indices=[2 * i for i in range(n)], total_num_frames=2 * n)


REQUESTS = [
    GenerateRequest("Which colour is shown?", videos=(_video(4, 1),), max_new_tokens=6, top_logprobs=5),
    GenerateRequest("Describe the picture in detail, please.", images=(gradient_frames(1, 48, 64, seed=2)[0],),
                    max_new_tokens=6, top_logprobs=5),
    GenerateRequest("A question with no image at all?", max_new_tokens=6, top_logprobs=5),
    GenerateRequest("Which colour is shown at the end of this longer clip?", videos=(_video(8, 3),),
                    max_new_tokens=6, top_logprobs=5),
]


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_batched_generation_equals_one_by_one(family, tiny_qwen3_vl, tiny_qwen2_5_vl) -> None:
    ckpt = tiny_qwen3_vl if family == "qwen3_vl" else tiny_qwen2_5_vl
    vlm = TransformersVLM(str(ckpt), device="cpu", dtype="float32")
    batched = vlm.generate_batch(REQUESTS)
    for request, got in zip(REQUESTS, batched):
        alone = vlm.generate(request.prompt, **request.kwargs())
        assert got.text == alone.text and got.num_tokens == alone.num_tokens
        assert got.finish_reason == alone.finish_reason
        np.testing.assert_allclose(got.token_logprobs, alone.token_logprobs, atol=2e-4)
        assert [sorted(t) for t in got.top_logprobs] == [sorted(t) for t in alone.top_logprobs]


class CountingVLM(VLMBackend):
    """A deterministic backend that records the batches it is asked for."""

    name = "counting"

    def __init__(self, fail: bool = False, poison: str | None = None) -> None:
        self.batches: list[int] = []
        self.fail = fail
        self.poison = poison  # a prompt the backend cannot answer: it fails any batch holding it

    def identity(self) -> str:
        return "counting:v1"

    def generate(self, prompt=None, **kwargs):
        return self.generate_batch([GenerateRequest(prompt, **{k: v for k, v in kwargs.items()})])[0]

    def generate_batch(self, requests):
        from inference.backends.vlm import Generation

        self.batches.append(len(requests))
        if self.fail:
            raise ConnectionError("endpoint down")
        if any(r.prompt == self.poison for r in requests):
            raise ValueError(f"cannot answer {self.poison!r}")
        return [Generation(text=f"reply to {r.prompt}", token_logprobs=[-0.1], num_tokens=1) for r in requests]


def _call_concurrently(vlm, prompts):
    out: dict[str, object] = {}
    barrier = threading.Barrier(len(prompts))

    def call(p):
        barrier.wait()
        try:
            out[p] = vlm.generate(p, max_new_tokens=4).text
        except Exception as exc:  # noqa: BLE001 - the test inspects what each caller got
            out[p] = exc

    threads = [threading.Thread(target=call, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_concurrent_calls_are_answered_in_one_batch_each_with_its_own_reply() -> None:
    backend = CountingVLM()
    vlm = BatchingVLM(backend, window_s=0.5, max_batch=32)
    prompts = [f"q{i}" for i in range(6)]
    out = _call_concurrently(vlm, prompts)
    assert out == {p: f"reply to {p}" for p in prompts}
    assert backend.batches == [6] and (vlm.batches, vlm.requests) == (1, 6)
    assert vlm.identity() == "counting:v1"


def test_a_full_batch_goes_at_once_and_the_rest_follow() -> None:
    backend = CountingVLM()
    vlm = BatchingVLM(backend, window_s=0.5, max_batch=4)
    out = _call_concurrently(vlm, [f"q{i}" for i in range(6)])
    assert all(out[f"q{i}"] == f"reply to q{i}" for i in range(6))
    assert sorted(backend.batches) == [2, 4]


def test_a_failed_batch_raises_in_every_caller_it_fails_alone() -> None:
    backend = CountingVLM(fail=True)
    vlm = BatchingVLM(backend, window_s=0.2)
    out = _call_concurrently(vlm, ["a", "b", "c"])
    assert all(isinstance(v, ConnectionError) for v in out.values())
    assert backend.batches == [3, 1, 1, 1] and vlm.isolated_batches == 1


def test_one_unanswerable_request_fails_only_its_own_caller() -> None:
    backend = CountingVLM(poison="b")
    vlm = BatchingVLM(backend, window_s=0.5)
    out = _call_concurrently(vlm, ["a", "b", "c", "d"])
    assert isinstance(out["b"], ValueError)
    assert {p: out[p] for p in "acd"} == {p: f"reply to {p}" for p in "acd"}
    assert backend.batches == [4, 1, 1, 1, 1] and vlm.isolated_batches == 1


def test_a_model_in_memory_answers_like_its_checkpoint(tiny_qwen3_vl) -> None:
    """``TransformersVLM.from_model`` (the GRPO policy answering module calls) gives the loaded
    checkpoint's replies, and its identity is whatever the caller says the weights are now."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen3_vl, dtype="float32").eval()
    version = {"step": 0}
    vlm = TransformersVLM.from_model(model, AutoProcessor.from_pretrained(tiny_qwen3_vl),
                                     identity=lambda: f"policy@step{version['step']}")
    reference = TransformersVLM(str(tiny_qwen3_vl), device="cpu", dtype="float32")
    request = REQUESTS[0]
    assert vlm.generate(request.prompt, **request.kwargs()).text == reference.generate(
        request.prompt, **request.kwargs()).text
    assert vlm.identity() == "policy@step0"
    version["step"] = 3
    assert vlm.identity() == "policy@step3"
