"""The rollout engine, the training forward and the reward's programs see one video the same way.

For a tiny Qwen3-VL and a tiny Qwen2.5-VL with LoRA: the transformers engine's pixels, grids and
visual-token count equal the training input's; the sampler's own log-probs equal the trainer's
(temperature-scaled, reference M-RoPE positions for Qwen2.5-VL); a left/right-padded
micro-batch gives each completion the log-probs it gets alone; the programs' module runtime
samples the frames the prompt was built from; and the policy, as the programs' VLM, answers
like the checkpoint's own in-process backend while its adapters are still zero.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.conftest import GRPO_TINY_OVERRIDES, make_grpo_rows
from training.common.model import load_processor
from training.common.video import VideoLoader, VideoSampling, spatial_factor
from training.grpo.config import GRPOConfig
from training.grpo.data import build_micro_batch, encode_prompt_row
from training.grpo.engines import (
    RolloutRequest,
    SamplingSettings,
    TransformersEngine,
    collapse_vision_pads,
    count_visual_tokens,
    generation_model,
    vision_placeholder_ids,
)
from training.grpo.policy import DistInfo, build_policy, completion_logprobs


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen2_5_vl"])
def setup(request, tiny_qwen3_vl, tiny_qwen2_5_vl, sft_videos, tmp_path_factory):
    ckpt = {"qwen3_vl": tiny_qwen3_vl, "qwen2_5_vl": tiny_qwen2_5_vl}[request.param]
    work = tmp_path_factory.mktemp(f"parity_{request.param}")
    rows = make_grpo_rows(sft_videos, 2)
    rows[1]["messages"][0]["content"] += " Think about the colours of every frame before you answer."
    cfg = GRPOConfig(**dict(GRPO_TINY_OVERRIDES, model_name_or_path=str(ckpt), train_file="unused",
                            output_dir=str(work), video_max_frames=8))
    processor = load_processor(ckpt)
    engine, _ = build_policy(cfg, DistInfo(), total_steps=1)
    engine.module.eval()
    loader = VideoLoader(processor, VideoSampling.from_config(cfg))
    prompts = [encode_prompt_row(processor, r, i, loader, None) for i, r in enumerate(rows)]
    rollout = TransformersEngine(engine.module, processor, processor.tokenizer.pad_token_id)
    return {"family": request.param, "ckpt": ckpt, "cfg": cfg, "processor": processor, "engine": engine,
            "prompts": prompts, "rollout": rollout, "work": work, "rows": rows}


def test_engine_feeds_the_training_inputs_visual_tokens(setup):
    prompt, rollout, processor = setup["prompts"][0], setup["rollout"], setup["processor"]
    vision, n_visual = rollout._vision_inputs(RolloutRequest(prompt.prompt_ids, prompt.videos, 1))
    pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert n_visual > 0
    assert n_visual == prompt.num_visual_tokens == prompt.prompt_ids.count(pad)
    for key in prompt.vision:  # pixels, grid (and Qwen2.5-VL's seconds per temporal patch): identical
        assert torch.equal(vision[key].to(prompt.vision[key].dtype), prompt.vision[key]), key
    outs = rollout.generate([RolloutRequest(prompt.prompt_ids, prompt.videos, 2)],
                            SamplingSettings(max_new_tokens=4, stop_token_ids=(pad + 10**6,)))
    assert outs[0].num_visual_tokens == n_visual
    assert [len(c.token_ids) for c in outs[0].completions] == [4, 4]
    assert all(c.finish_reason == "length" and c.truncated for c in outs[0].completions)
    mb = build_micro_batch([prompt, prompt], [c.token_ids for c in outs[0].completions], [True, True], [0.0, 0.0],
                           [0, 1], processor.tokenizer.pad_token_id)
    merge = processor.video_processor.merge_size
    assert count_visual_tokens(mb.inputs["video_grid_thw"], merge) == 2 * n_visual
    assert int((mb.inputs["mm_token_type_ids"] != 0).sum()) == 2 * n_visual


def test_engine_refuses_frames_that_do_not_fit_the_prompt(setup):
    prompt, rollout = setup["prompts"][0], setup["rollout"]
    frames, meta = prompt.videos[0]
    bigger = frames.repeat(2, axis=1)  # resized after the prompt was built: more patches
    with pytest.raises(ValueError, match="placeholder"):
        rollout.generate([RolloutRequest(prompt.prompt_ids, [(bigger, meta)], 1)], SamplingSettings(max_new_tokens=2))


def test_engine_never_samples_vision_placeholders(setup):
    # A sampled <|video_pad|> would be read as a video slot by the training forward.
    prompt, rollout, processor = setup["prompts"][0], setup["rollout"], setup["processor"]
    suppressed = vision_placeholder_ids(processor)
    assert len(suppressed) == 2
    torch.manual_seed(0)
    out = rollout.generate([RolloutRequest(prompt.prompt_ids, prompt.videos, 8)],
                           SamplingSettings(max_new_tokens=32, temperature=2.0, suppress_token_ids=suppressed))[0]
    assert not any(t in suppressed for c in out.completions for t in c.token_ids)


def test_collapse_vision_pads_leaves_one_pad_per_run(setup):
    prompt, processor = setup["prompts"][0], setup["processor"]
    pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    collapsed = collapse_vision_pads(prompt.prompt_ids, [pad])
    runs = sum(1 for a, b in zip([None] + prompt.prompt_ids, prompt.prompt_ids) if b == pad and a != pad)
    assert collapsed.count(pad) == runs
    assert len(collapsed) == len(prompt.prompt_ids) - prompt.num_visual_tokens + runs


def test_sampler_logprobs_equal_the_trainers(setup):
    prompt, rollout, engine, processor = setup["prompts"][1], setup["rollout"], setup["engine"], setup["processor"]
    torch.manual_seed(0)
    suppressed = vision_placeholder_ids(processor)
    sampling = SamplingSettings(max_new_tokens=6, temperature=0.7, top_p=1.0, top_k=0,
                                stop_token_ids=(processor.tokenizer.convert_tokens_to_ids("<|im_end|>"),),
                                suppress_token_ids=suppressed)
    out = rollout.generate([RolloutRequest(prompt.prompt_ids, prompt.videos, 3)], sampling)[0]
    comps = out.completions
    mb = build_micro_batch([prompt] * 3, [c.token_ids for c in comps], [c.truncated for c in comps], [0.0] * 3,
                           [0, 1, 2], processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = completion_logprobs(engine, mb.inputs, mb.completion_ids, temperature=0.7, suppressed=suppressed)
    for row, c in enumerate(comps):
        assert logp[row, :len(c.token_ids)].tolist() == pytest.approx(c.logprobs, abs=2e-4)


def test_padded_micro_batch_gives_each_completion_its_own_logprobs(setup):
    prompts, engine, processor = setup["prompts"], setup["engine"], setup["processor"]
    assert len(prompts[0].prompt_ids) != len(prompts[1].prompt_ids)
    gen = torch.Generator().manual_seed(1)
    comps = [torch.randint(0, 200, (n,), generator=gen).tolist() for n in (5, 9)]
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad():
        mb = build_micro_batch(prompts, comps, [False, False], [0.0, 0.0], [0, 1], pad)
        together, _ = completion_logprobs(engine, mb.inputs, mb.completion_ids, temperature=1.0)
        for i in range(2):
            alone_mb = build_micro_batch([prompts[i]], [comps[i]], [False], [0.0], [0], pad)
            alone, _ = completion_logprobs(engine, alone_mb.inputs, alone_mb.completion_ids, temperature=1.0)
            n = len(comps[i])
            assert torch.allclose(together[i, :n], alone[0, :n], atol=1e-5), (i, together[i, :n], alone[0])


def test_program_runtime_samples_the_prompts_frames(setup, tmp_path):
    from training.grpo.reward_adapter import module_runtime_for

    cfg, prompt, processor = setup["cfg"], setup["prompts"][0], setup["processor"]
    yaml_path = tmp_path / "modules.yaml"
    yaml_path.write_text(f"clip_dir: {tmp_path / 'clips'}\nvlm_backend: transformers\n")
    cfg = GRPOConfig(**{**cfg.__dict__, "reward_module_config": str(yaml_path)})
    runtime = module_runtime_for(cfg, spatial_factor(processor), vlm=None)
    frames, meta = runtime.video_inputs(setup["rows"][0]["videos"][0])["videos"][0]
    want_frames, want_meta = prompt.videos[0]
    assert frames.shape == want_frames.shape and (frames == want_frames).all()
    assert meta == want_meta


def test_policy_answers_programs_like_the_checkpoint_backend(setup):
    from inference.backends.vlm import TransformersVLM
    from training.grpo.reward_adapter import policy_vlm

    engine, processor, prompt = setup["engine"], setup["processor"], setup["prompts"][0]
    step = {"n": 0}
    policy = policy_vlm(generation_model(engine.module), processor, str(setup["ckpt"]), lambda: step["n"])
    question = "Which colour is the square? (A) red (B) blue"
    got = policy.answer(question, mode="mc", num_choices=2, videos=prompt.videos)
    want = TransformersVLM(str(setup["ckpt"]), device="cpu", dtype="float32").answer(
        question, mode="mc", num_choices=2, videos=prompt.videos)
    assert got.answer == want.answer
    assert got.confidence == pytest.approx(want.confidence, abs=1e-5)  # LoRA B starts at zero: same model
    before = policy.identity()
    step["n"] = 7
    assert policy.identity() != before and policy.identity().endswith("@step7")
    assert Path(policy.checkpoint) == Path(setup["ckpt"])
