"""Answering VLM: the OpenAI-compatible backend against a real vLLM server and the in-process
transformers backend see the same inputs and give the same answers and Eq. 2 confidences."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from inference.backends.vlm import OpenAIVLM, TransformersVLM
from inference.confidence import confidence_from_logprobs
from inference.vlm_inputs import video_metadata_for
from tests.fixtures.frames import gradient_frames


def _fake_openai(content, tokens, finish_reason, stop_reason):
    """An OpenAIVLM whose client records the request and returns a prepared response."""
    vlm = OpenAIVLM("http://127.0.0.1:1/v1", model="m")
    seen = {}

    def create(**kwargs):
        seen.update(kwargs)
        entries = [SimpleNamespace(token=t, logprob=lp, top_logprobs=[]) for t, lp in tokens]
        choice = SimpleNamespace(message=SimpleNamespace(content=content), finish_reason=finish_reason,
                                 logprobs=SimpleNamespace(content=entries),
                                 model_extra={"stop_reason": stop_reason})
        return SimpleNamespace(choices=[choice])

    vlm.client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    return vlm, seen


def test_openai_request_layout_and_end_of_turn_token_dropped():
    frames = gradient_frames(4, 32, 32)
    meta = video_metadata_for(frames, 25.0, [0, 25, 50, 75], total_num_frames=100)
    vlm, seen = _fake_openai("B", [("B", math.log(0.6)), ("<|im_end|>", -0.01)], "stop", None)
    gen = vlm.generate("Which?", videos=[(frames, meta)], max_new_tokens=4)
    # EOS closed the reply: it is not part of the answer (Eq. 2 over "B" only).
    assert gen.token_logprobs == [math.log(0.6)] and gen.num_tokens == 2
    assert gen.confidence == pytest.approx(0.6)
    video_part, text_part = seen["messages"][0]["content"]
    assert video_part["type"] == "video_url" and text_part == {"type": "text", "text": "Which?"}
    assert video_part["video_url"]["url"].startswith("data:video/jpeg;base64,")
    assert video_part["video_url"]["url"].count(",") == 4  # after the header, one comma between frames
    kw = seen["extra_body"]["media_io_kwargs"]["video"]
    assert kw["frames_indices"] == [0, 25, 50, 75] and kw["fps"] == 25.0 and kw["num_frames"] == 4
    assert seen["temperature"] == 0.0 and seen["logprobs"] is True
    # Unset top_p/top_k are not sent: the served checkpoint's own values apply (as in-process).
    assert seen["extra_body"]["repetition_penalty"] == 1.0
    assert "top_k" not in seen["extra_body"] and "top_p" not in seen
    vlm, seen = _fake_openai("B", [("B", -0.1)], "length", None)
    vlm.generate("Which?", max_new_tokens=1, temperature=0.7, top_p=0.8, top_k=20, seed=3)
    assert (seen["temperature"], seen["top_p"], seen["extra_body"]["top_k"], seen["seed"]) == (0.7, 0.8, 20, 3)
    # Stopped by length: every token counts.
    vlm, _ = _fake_openai("AB", [("A", -0.1), ("B", -0.3)], "length", None)
    assert vlm.generate("q").token_logprobs == [-0.1, -0.3]
    # Stopped by a stop string: the last token is text, kept.
    vlm, _ = _fake_openai("A", [("A", -0.1), ("\n", -0.3)], "stop", "\n")
    assert len(vlm.generate("q").token_logprobs) == 2


@pytest.mark.vllm
@pytest.mark.slow
def test_generate_matches_between_vllm_server_and_transformers(vllm_server, tiny_qwen3_vl):
    remote = OpenAIVLM(vllm_server.base_url, vllm_server.model)
    local = TransformersVLM(str(tiny_qwen3_vl), device="cpu", dtype="float32")
    frames = gradient_frames(6, 64, 96, seed=3)
    meta = video_metadata_for(frames, 4.0, [0, 4, 8, 12, 16, 20], total_num_frames=24)
    cases = [dict(prompt="Describe the scene."),
             dict(prompt="What is shown?", images=[frames[0]]),
             dict(prompt="What happens?", videos=[(frames, meta)])]
    for case in cases:
        a = remote.generate(**case, max_new_tokens=6, top_logprobs=5)
        b = local.generate(**case, max_new_tokens=6, top_logprobs=5)
        # Token *texts* of partial UTF-8 bytes differ by design (vLLM: "", transformers: "\ufffd");
        # the reply text, the token count and the log-probs must agree.
        assert a.text.replace("\ufffd", "") == b.text.replace("\ufffd", ""), case
        assert len(a.tokens) == len(b.tokens) and a.num_tokens == b.num_tokens, case
        np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, rtol=1e-4, atol=1e-4)
        assert a.confidence == pytest.approx(confidence_from_logprobs(b.token_logprobs), rel=1e-4)
        assert set(a.top_logprobs[0]) & set(b.top_logprobs[0])


@pytest.mark.vllm
@pytest.mark.slow
def test_query_modules_match_between_backends(vllm_server, tiny_qwen3_vl, module_runtime, synthetic_video):
    remote = module_runtime(vlm_backend="openai", vlm_base_url=vllm_server.base_url,
                            vlm_model=vllm_server.model)
    local = module_runtime(vlm_backend="transformers", vlm_checkpoint=str(tiny_qwen3_vl), vlm_dtype="float32")
    v = str(synthetic_video.video_path)
    question, choices = "What colour is the screen?", ["red", "green", "blue", "cyan"]
    frames = remote.trim_frames(v, 4.0, 12.0, num_frames=4)
    calls = [
        lambda rt: rt.query_native(v, question, choices),
        lambda rt: rt.query_mc(frames, question, choices),
        lambda rt: rt.query_mc([rt.crop_left(frames[0])], question, choices),  # one frame: an image
        lambda rt: rt.query_yn(frames[:2], "Is the screen green?"),
    ]
    for call in calls:
        a, b = call(remote), call(local)
        assert set(a) == {"answer", "confidence", "raw_output", "metadata"}
        assert (a["answer"], a["raw_output"]) == (b["answer"], b["raw_output"])
        assert 0.0 <= a["confidence"] <= 1.0
        assert a["confidence"] == pytest.approx(b["confidence"], rel=1e-4, abs=1e-7)
        assert a["metadata"]["num_tokens"] == b["metadata"]["num_tokens"]
    open_a, open_b = remote.query_frames(frames, "What is written?"), local.query_frames(frames, "What is written?")
    assert isinstance(open_a, str) and open_a == open_b


def test_transformers_backend_generates_qwen2_5_vl_with_reference_positions(tiny_qwen2_5_vl):
    """After a video of several temporal patches, the in-process backend decodes with the
    reference M-RoPE positions (vLLM's, and SFT's): every generated token's log-prob equals a
    forward pass over prompt + earlier tokens with ``reference_mrope_position_ids``."""
    import torch

    from inference.backends.vlm import build_chat
    from inference.vlm_inputs import hf_video_kwargs, reference_mrope_position_ids

    frames = gradient_frames(8, 56, 84, seed=3)
    video = (frames, video_metadata_for(frames, 4.0, [4 * i for i in range(8)], total_num_frames=32))
    vlm = TransformersVLM(str(tiny_qwen2_5_vl), device="cpu", dtype="float32")
    processor, model = vlm._load()
    # The positions *after* the prompt are the point: the random model must not end its reply
    # after one token, so EOS is switched off for this generation (the backend has no
    # ignore-EOS option; the model is shared, so the setting is restored).
    eos = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None
    try:
        gen = vlm.generate("Describe the video.", videos=[video], max_new_tokens=4, temperature=0.0)
    finally:
        model.generation_config.eos_token_id = eos
    assert gen.finish_reason == "length" and gen.num_tokens == 4
    chat = build_chat("Describe the video.", None, 0, 1)
    text = processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], **hf_video_kwargs([video]), return_tensors="pt")
    assert int(inputs["video_grid_thw"][0, 0]) == 4  # four temporal patches
    assert len(gen.token_logprobs) == 4  # >= 2 continuation tokens: decoding after the prompt is checked
    ids: list[int] = []  # greedy: each token is the argmax of the reference forward pass
    own_differs = False
    for k in range(len(gen.token_logprobs)):
        extra = torch.tensor([ids], dtype=torch.long)
        full = dict(inputs)
        full["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
        full["attention_mask"] = torch.ones_like(full["input_ids"])
        full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
        with torch.no_grad():
            ref = torch.log_softmax(model(**full, position_ids=reference_mrope_position_ids(model, full))
                                    .logits[0, -1].float(), -1)
            own = torch.log_softmax(model(**full).logits[0, -1].float(), -1)
        ids.append(int(ref.argmax()))
        assert float(ref[ids[-1]]) == pytest.approx(gen.token_logprobs[k], abs=1e-4)
        own_differs |= abs(float(own[ids[-1]]) - gen.token_logprobs[k]) > 1e-5
    assert own_differs  # transformers' own positions would have given other log-probs


def test_transformers_sampling_uses_the_checkpoints_own_top_k_unless_given(tiny_qwen3_vl, tmp_path):
    """``top_p``/``top_k`` None: the checkpoint's generation_config.json values (the paper samples
    programs at 0.7 with them). A copy whose top_k is 1 samples exactly the greedy reply."""
    import json
    import shutil

    ckpt = tmp_path / "top_k_1"
    shutil.copytree(tiny_qwen3_vl, ckpt)
    config = json.loads((ckpt / "generation_config.json").read_text())
    (ckpt / "generation_config.json").write_text(json.dumps({**config, "top_k": 1}))
    vlm = TransformersVLM(str(ckpt), device="cpu", dtype="float32")
    greedy = vlm.generate("Write a program.", max_new_tokens=12, temperature=0.0).text
    sampled = [vlm.generate("Write a program.", max_new_tokens=12, temperature=1.0, seed=s).text for s in (1, 2)]
    assert sampled == [greedy, greedy]
    # An explicit top_k wins over the checkpoint's: full-vocabulary sampling differs across seeds.
    free = {vlm.generate("Write a program.", max_new_tokens=12, temperature=1.0, top_k=0, top_p=1.0, seed=s).text
            for s in (1, 2, 3)}
    assert len(free) > 1
