"""The colocated vLLM rollout engine (``training.grpo.vllm_engine``) on vLLM's CPU build with a tiny
Qwen3-VL and video rows.

Fast (no engine): prompts folded back for vLLM, the sync groups and checkpoint names, the
out-of-place LoRA merge, the engine's sizing, the settings and their CPU refusals, the
sampler/trainer KL metric.

``vllm``: one engine for the module (LoRA on the language model and on the vision merger): vLLM
re-expands the training prompt token for token and its log-probs equal the trainer's; resized
frames are refused; after a LoRA change the log-probs drift until a sync and equal the trainer's
after it (the trainer's weights untouched); a changed vision LoRA reaches a request with the same
video (encoder cache reset) while a prefix-cache reset alone does not; the reward's VLM answers
as the trainer does at every version and moves the call cache's identity; the adapter-only sync.

``vllm`` + ``slow``: a few GRPO steps of the real loop with the engine, with and without the sync.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from tests.training.conftest import GRPO_TINY_OVERRIDES, REPO, make_grpo_rows, write_rows
from training.grpo.config import GRPOConfig

# LoRA on every language-model linear layer and on the vision merger's last projection, so that
# a sync changes vision features too (the encoder-cache test).
LM_AND_VISION_LORA = (r"^(.*\.)?language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
                      r"|^(.*\.)?visual\.merger\.linear_fc2$")
VLLM_OVERRIDES = {"rollout_engine": "vllm", "vllm_tensor_parallel_size": 1, "offload_model": True,
                  "offload_optimizer": True, "move_model_batches": 2, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
TIGHT = 1e-4  # fp32 on both sides: sampler and trainer agree to ~1e-6


def _cfg(ckpt: Path, out: Path, **overrides) -> GRPOConfig:
    return GRPOConfig(**{**GRPO_TINY_OVERRIDES, **VLLM_OVERRIDES, "model_name_or_path": str(ckpt),
                         "train_file": "unused", "output_dir": str(out), **overrides})


@pytest.fixture(scope="module")
def policy(tiny_qwen3_vl, sft_videos, tmp_path_factory):
    """A tiny Qwen3-VL policy (LoRA on the language model and the vision merger) and two prompts."""
    from training.common.model import load_processor
    from training.common.video import VideoLoader
    from training.grpo.data import encode_prompt_row
    from training.grpo.policy import DistInfo, build_policy

    cfg = _cfg(tiny_qwen3_vl, tmp_path_factory.mktemp("vllm_policy"), lora_target_modules=LM_AND_VISION_LORA)
    processor = load_processor(tiny_qwen3_vl)
    engine, _ = build_policy(cfg, DistInfo(), total_steps=1)
    engine.module.eval()
    rows = make_grpo_rows(sft_videos, 2)
    rows[1]["messages"][0]["content"] += " Think about the colours of every frame before you answer."
    loader = VideoLoader(processor, cfg.video_sampling())
    prompts = [encode_prompt_row(processor, r, i, loader, None) for i, r in enumerate(rows)]
    return {"cfg": cfg, "processor": processor, "engine": engine, "rows": rows, "prompts": prompts,
            "ckpt": tiny_qwen3_vl}


def _sampling(processor, max_new_tokens: int = 8, temperature: float = 1.0):
    from training.grpo.engines import SamplingSettings, vision_placeholder_ids

    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    return SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=1.0, top_k=0,
                            stop_token_ids=(im_end,), suppress_token_ids=vision_placeholder_ids(processor))


def _trainer_logprobs(policy, prompt, completions, temperature: float = 1.0) -> list[list[float]]:
    from training.grpo.data import build_micro_batch
    from training.grpo.engines import vision_placeholder_ids
    from training.grpo.policy import completion_logprobs

    processor = policy["processor"]
    n = len(completions)
    mb = build_micro_batch([prompt] * n, [c.token_ids for c in completions], [c.truncated for c in completions],
                           [0.0] * n, list(range(n)), processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = completion_logprobs(policy["engine"], mb.inputs, mb.completion_ids, temperature,
                                      suppressed=vision_placeholder_ids(processor))
    return [logp[i, :len(c.token_ids)].tolist() for i, c in enumerate(completions)]


def _max_gap(policy, prompt, completions, temperature: float = 1.0) -> float:
    trainer = _trainer_logprobs(policy, prompt, completions, temperature)
    return max(abs(a - b) for t, c in zip(trainer, completions) for a, b in zip(t, c.logprobs))


def _perturb(model, pattern: str, seed: int, scale: float = 0.5) -> None:
    """Move the LoRA B matrices whose names contain ``pattern`` (a stand-in for optimiser steps)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and pattern in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


# ---------------------------------------------------------------------------------------------
# Fast: no engine
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_prompts_fold_back_to_one_placeholder_per_video(family, tiny_qwen3_vl, tiny_qwen2_5_vl, sft_videos, tmp_path):
    from training.common.model import load_processor
    from training.common.video import VideoLoader
    from training.grpo.data import encode_prompt_row
    from training.grpo.vllm_engine import unexpand_vision_placeholders

    ckpt = {"qwen3_vl": tiny_qwen3_vl, "qwen2_5_vl": tiny_qwen2_5_vl}[family]
    processor = load_processor(ckpt)
    cfg = _cfg(ckpt, tmp_path)
    row = make_grpo_rows(sft_videos, 1)[0]
    prompt = encode_prompt_row(processor, row, 0, VideoLoader(processor, cfg.video_sampling()), None)
    tok = processor.tokenizer
    start, end, pad = (tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|video_pad|>"))
    assert prompt.prompt_ids.count(pad) == prompt.num_visual_tokens > 1
    folded = unexpand_vision_placeholders(prompt.prompt_ids, start, end, [pad])
    block = folded.index(start)
    assert folded[block:block + 3] == [start, pad, end]
    assert folded.count(pad) == folded.count(start) == folded.count(end) == 1
    # Exactly what the chat template writes before the processor expands the video.
    from training.grpo.data import prompt_messages
    from training.sft.data import to_chat_messages

    text = processor.apply_chat_template(to_chat_messages(prompt_messages(row)), tokenize=False,
                                         add_generation_prompt=True)
    assert folded == tok(text, add_special_tokens=False)["input_ids"]
    assert unexpand_vision_placeholders(folded, start, end, [pad]) == folded


def test_sync_groups_split_the_model_and_names_are_the_checkpoints(policy):
    from safetensors import safe_open

    from training.grpo.vllm_engine import checkpoint_name, sync_groups

    model = policy["engine"].module
    every = [n for n, _ in model.named_parameters()]
    for batches in (1, 2, 16):
        groups = sync_groups(model, batches)
        names = [n for g in groups for n in g.params]
        assert sorted(names) == sorted(every)  # each parameter in exactly one group
        assert all(len(g.params) < len(every) for g in groups)  # never the whole model at once
        layer_groups = [g for g in groups if g.name.startswith("layers[")]
        assert len(layer_groups) == min(batches, 2)  # the tiny model has two decoder layers
        for g in layer_groups:  # a LoRA layer travels with its base weight
            bases = {n.rsplit(".base_layer.", 1)[0] for n in g.params if ".base_layer." in n}
            assert all(n.rsplit(".lora_", 1)[0] in bases for n in g.params if ".lora_" in n)
    by_name = {g.name: g for g in sync_groups(model, 2)}
    assert by_name["vision"].trainable and all(g.trainable for n, g in by_name.items() if n.startswith("layers["))
    assert not by_name["embeddings+head"].trainable
    mapped = {checkpoint_name(n) for n in every} - {None}
    with safe_open(str(Path(policy["ckpt"]) / "model.safetensors"), "pt") as f:
        assert mapped == set(f.keys())
    assert checkpoint_name("base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight") \
        is None
    assert checkpoint_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert checkpoint_name("base_model.model.lm_head.original_module.weight") is None


def test_merge_is_peft_merge_and_leaves_the_trainer_alone(policy):
    from training.grpo.vllm_engine import _lora_layers, merged_tensors, sync_groups

    model = policy["engine"].module
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    try:
        _perturb(model, "", seed=3)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        layers = _lora_layers(model)
        ours = dict(kv for g in sync_groups(model, 2) for kv in merged_tensors(model, g, layers))
        for n, p in model.named_parameters():  # out of place: nothing to unmerge, no drift
            assert torch.equal(p, before[n]), n
        reference = copy.deepcopy(model).merge_and_unload().state_dict()
        assert set(ours) == set(reference)
        worst = max(float((ours[k] - reference[k]).abs().max()) for k in ours)
        assert worst < 1e-6
        changed = [k for k in ours if "language_model.layers" in k and k.endswith("q_proj.weight")]
        base = {k: before[f"base_model.model.{k.removesuffix('weight')}base_layer.weight"] for k in changed}
        assert changed and all(not torch.equal(ours[k], base[k]) for k in changed)
    finally:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(saved[n])


def test_engine_is_sized_from_the_rows_and_the_frame_policy(policy, tiny_qwen3_vl, tmp_path):
    from training.grpo.vllm_engine import engine_lengths, prompt_token_bound

    processor, prompts, rows = policy["processor"], policy["prompts"], policy["rows"]
    cfg = _cfg(tiny_qwen3_vl, tmp_path, reward_vlm="runtime", max_completion_length=300)
    bound = prompt_token_bound(cfg, processor, rows, str(tiny_qwen3_vl))
    assert bound >= max(len(p.prompt_ids) for p in prompts)
    assert bound < 2 * max(len(p.prompt_ids) for p in prompts) + 200  # a bound, not a guess of 4096
    lengths = engine_lengths(cfg, processor, rows)
    assert lengths.max_model_len == bound + 300 and lengths.max_num_batched_tokens == lengths.max_model_len
    assert (lengths.max_videos, lengths.max_images) == (1, 0)
    bigger = _cfg(tiny_qwen3_vl, tmp_path, reward_vlm="runtime", max_completion_length=300, video_max_frames=16)
    assert engine_lengths(bigger, processor, rows).max_model_len > lengths.max_model_len
    policy_vlm = _cfg(tiny_qwen3_vl, tmp_path, max_completion_length=300)
    assert engine_lengths(policy_vlm, processor, rows).max_images == 64  # query_mc's frames (ModuleConfig)
    fixed = _cfg(tiny_qwen3_vl, tmp_path, vllm_max_model_len=5000, reward_vlm="runtime")
    assert engine_lengths(fixed, processor, rows).max_model_len == 5000


def test_paper_settings_and_bad_values():
    from inference.config import parse_config

    paper = parse_config(GRPOConfig, ["--config", str(REPO / "configs/grpo/paper.yaml")])
    assert (paper.rollout_engine, paper.vllm_tensor_parallel_size, paper.vllm_gpu_memory_utilization,
            paper.sleep_level, paper.offload_model, paper.offload_optimizer, paper.move_model_batches) == \
        ("vllm", 4, 0.75, 0, True, True, 16)
    assert paper.importance_sampling_threshold == 3.0
    tiny = parse_config(GRPOConfig, ["--config", str(REPO / "configs/grpo/tiny_vllm.yaml")])
    assert (tiny.rollout_engine, tiny.vllm_tensor_parallel_size) == ("vllm", 1)
    for field in dataclasses.fields(GRPOConfig):
        assert field.metadata.get("help"), field.name
    for bad, match in [({"sleep_level": 3}, "sleep_level"), ({"vllm_weight_sync": "lora"}, "vllm_weight_sync"),
                       ({"move_model_batches": 0}, "move_model_batches"), ({"rollout_engine": "sglang"}, "rollout"),
                       ({"vllm_gpu_memory_utilization": 1.5}, "utilization")]:
        with pytest.raises(ValueError, match=match):
            GRPOConfig(**bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusals")
@pytest.mark.parametrize("setting, match", [({"sleep_level": 1}, "sleep_level 1 needs a GPU"),
                                            ({"sleep_level": 2}, "sleep_level 2 needs a GPU"),
                                            ({"vllm_tensor_parallel_size": 2}, "needs GPUs")])
def test_sleep_and_tensor_parallelism_are_refused_on_cpu(setting, match, tiny_qwen3_vl, tmp_path):
    from training.grpo.policy import DistInfo
    from training.grpo.vllm_engine import VLLMEngine

    with pytest.raises(ValueError, match=match):
        VLLMEngine(_cfg(tiny_qwen3_vl, tmp_path, **setting), None, None, [], DistInfo(world_size=2))


def test_sampler_trainer_kl_metric():
    from training.grpo.core_algos import importance_sampling_weights

    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.2, -9.0]])
    sampler = torch.tensor([[-1.0, -2.5, -0.4], [-1.0, -0.2, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    _, metrics = importance_sampling_weights(old, sampler, mask, "token", "truncate", 3.0)
    d = (old - sampler)[mask.bool()]
    assert metrics["is_sampler_kl"] == pytest.approx(float((d.exp() - 1 - d).mean()))
    assert metrics["is_sampler_kl"] > 0
    _, same = importance_sampling_weights(old, old.clone(), mask, "sequence", "mask", 3.0)
    assert same["is_sampler_kl"] == 0.0 and same["is_weight_mean"] == 1.0


# ---------------------------------------------------------------------------------------------
# One engine for the module
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_engine(policy):
    pytest.importorskip("vllm")
    from training.grpo.policy import DistInfo
    from training.grpo.vllm_engine import VLLMEngine

    engine = VLLMEngine(policy["cfg"], policy["engine"].module, policy["processor"], policy["rows"], DistInfo())
    yield engine
    engine.close()


def _request(prompt, n: int = 3):
    from training.grpo.engines import RolloutRequest

    return RolloutRequest(prompt.prompt_ids, prompt.videos, n)


@pytest.mark.vllm
def test_vllm_expands_the_training_prompt_and_its_logprobs_are_the_trainers(vllm_engine, policy):
    processor, prompts = policy["processor"], policy["prompts"]
    sampling = _sampling(processor, max_new_tokens=10, temperature=0.7)
    with vllm_engine.rollout_context(policy["engine"]):
        outs = vllm_engine.generate([_request(prompts[0]), _request(prompts[1], 2)], sampling)
    assert [len(o.completions) for o in outs] == [3, 2]
    for out, prompt in zip(outs, prompts):
        assert out.num_visual_tokens == prompt.num_visual_tokens
        for c in out.completions:
            assert 1 <= len(c.token_ids) <= 10 and len(c.logprobs) == len(c.token_ids)
            assert c.finish_reason == ("stop" if c.token_ids[-1] in sampling.stop_token_ids else "length")
            assert not set(c.token_ids) & set(sampling.suppress_token_ids)
        assert _max_gap(policy, prompt, out.completions, temperature=0.7) < TIGHT


@pytest.mark.vllm
def test_frames_changed_after_the_prompt_was_built_are_refused(vllm_engine, policy):
    from training.grpo.engines import RolloutRequest

    prompt = policy["prompts"][0]
    frames, meta = prompt.videos[0]
    bigger = frames.repeat(2, axis=1)  # resized after the prompt was built: more patches
    with pytest.raises(ValueError, match="expanded the prompt"):
        vllm_engine.generate([RolloutRequest(prompt.prompt_ids, [(bigger, meta)], 1)], _sampling(policy["processor"]))


@pytest.mark.vllm
def test_sync_brings_vllm_to_the_trainers_weights(vllm_engine, policy):
    model, prompt = policy["engine"].module, policy["prompts"][1]
    sampling = _sampling(policy["processor"], max_new_tokens=8)
    _perturb(model, "language_model", seed=11)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stale = vllm_engine.generate([_request(prompt, 4)], sampling)[0]
    assert _max_gap(policy, prompt, stale.completions) > 1e-2  # vLLM still samples the old weights
    version = vllm_engine.weights_version
    vllm_engine.sync_weights(model)
    assert vllm_engine.weights_version == version + 1
    stats = vllm_engine.last_sync
    assert stats.groups == 3 and not stats.full  # the two decoder-layer groups and the vision group
    fresh = vllm_engine.generate([_request(prompt, 4)], sampling)[0]
    assert _max_gap(policy, prompt, fresh.completions) < TIGHT
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert vllm_engine.step_metrics()["vllm/sync_tensors"] == stats.tensors > 0


@pytest.mark.vllm
def test_policy_vlm_answers_at_the_current_weights_and_moves_the_cache_identity(vllm_engine, policy, tmp_path,
                                                                                toy_assets):
    from inference.backends.vlm import GenerateRequest, TransformersVLM
    from rewards import RewardConfig
    from rewards.scoring import RewardScorer
    from training.common.video import spatial_factor
    from training.grpo.engines import generation_model
    from training.grpo.reward_adapter import module_runtime_for

    model, processor, prompt = policy["engine"].module, policy["processor"], policy["prompts"][0]
    vlm = vllm_engine.policy_vlm()
    reference = TransformersVLM.from_model(generation_model(model), processor, identity=lambda: "trainer")
    question = "Which colour is the square? (A) red (B) blue (C) green"

    def agree() -> None:
        got = vlm.answer(question, mode="mc", num_choices=3, videos=prompt.videos)
        want = reference.answer(question, mode="mc", num_choices=3, videos=prompt.videos)
        assert (got.answer, got.raw_output) == (want.answer, want.raw_output)
        assert got.confidence == pytest.approx(want.confidence, abs=1e-4)
        image = prompt.videos[0][0][0]
        batch = vlm.generate_batch([GenerateRequest(prompt=question, images=(image,), max_new_tokens=6),
                                    GenerateRequest(prompt="Describe the video.", videos=tuple(prompt.videos),
                                                    max_new_tokens=6, top_logprobs=3)])
        for mine, request in zip(batch, [GenerateRequest(prompt=question, images=(image,), max_new_tokens=6),
                                         GenerateRequest(prompt="Describe the video.", videos=tuple(prompt.videos),
                                                         max_new_tokens=6, top_logprobs=3)]):
            theirs = reference.generate_batch([request])[0]
            assert mine.text == theirs.text and mine.finish_reason == theirs.finish_reason
            assert mine.token_logprobs == pytest.approx(theirs.token_logprobs, abs=1e-4)

    modules = tmp_path / "modules.yaml"
    modules.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in toy_assets.module_fields().items()) + "\n")
    cfg = dataclasses.replace(policy["cfg"], reward_module_config=str(modules))
    scorer = RewardScorer(RewardConfig(reward_funcs=["accuracy"], reward_weights=[1.0], exec_workers=2),
                          runtime=module_runtime_for(cfg, spatial_factor(processor), None), vlm=vlm)
    try:
        row = dict(policy["rows"][0], videos=[policy["rows"][0]["videos"][0]])
        native = ("<planning>Answer from the whole video.</planning>\n<code>\ndef execute_command(video, question):\n"
                  "    return query_native(video, question, choices)\n</code>")
        agree()
        first = scorer.score([row], [native])
        assert first.timing["module_calls_computed"] >= 1 and "@step" in scorer.cache_identity()
        assert scorer.score([row], [native]).timing["module_calls_computed"] == 0  # same weights: cached
        identity = scorer.cache_identity()
        _perturb(model, "language_model", seed=23)
        vllm_engine.sync_weights(model)
        assert scorer.cache_identity() != identity and vlm.identity().endswith(f"@step{vllm_engine.weights_version}")
        agree()  # the new weights answer
        assert scorer.score([row], [native]).timing["module_calls_computed"] >= 1  # new weights: computed again
    finally:
        scorer.close()


@pytest.mark.vllm
def test_changed_vision_weights_reach_a_request_with_the_same_video(vllm_engine, policy):
    """Runs last with this engine: its negative control leaves the engine's caches inconsistent."""
    from training.grpo.vllm_engine import sync_groups

    model, prompt = policy["engine"].module, policy["prompts"][0]
    sampling = _sampling(policy["processor"], max_new_tokens=8)
    vllm_engine.generate([_request(prompt, 2)], sampling)  # the video's features are now cached
    _perturb(model, "visual", seed=5, scale=2.0)
    stale = vllm_engine.generate([_request(prompt, 4)], sampling)[0]
    assert _max_gap(policy, prompt, stale.completions) > 1e-3  # the vision LoRA moves these log-probs
    vllm_engine.sync_weights(model)
    fresh = vllm_engine.generate([_request(prompt, 4)], sampling)[0]
    assert _max_gap(policy, prompt, fresh.completions) < TIGHT  # features from the new weights
    # Negative control: the same push followed by a prefix-cache reset only.
    _perturb(model, "visual", seed=6, scale=2.0)
    vision = [g for g in sync_groups(model, 2) if g.name == "vision"]
    vllm_engine._push_groups(vision, merge_lora=True, stats=type(vllm_engine.last_sync)())
    vllm_engine.llm.reset_prefix_cache()
    try:
        out = vllm_engine.generate([_request(prompt, 4)], sampling)[0]
    except RuntimeError as exc:  # vLLM 0.32: its scheduler still lists the features, the runner lost them
        assert "Encoder cache miss" in str(exc)
    else:  # other versions: the old features are served
        assert _max_gap(policy, prompt, out.completions) > 1e-3


@pytest.mark.vllm
@pytest.mark.slow
def test_adapter_only_sync(policy, tiny_qwen3_vl, tmp_path):
    from training.grpo.policy import DistInfo, build_policy
    from training.grpo.vllm_engine import VLLMEngine

    cfg = _cfg(tiny_qwen3_vl, tmp_path, vllm_weight_sync="adapter")
    trainer, _ = build_policy(cfg, DistInfo(), total_steps=1)
    trainer.module.eval()
    local = dict(policy, engine=trainer, cfg=cfg)
    engine = VLLMEngine(cfg, trainer.module, policy["processor"], policy["rows"], DistInfo())
    try:
        prompt, sampling = policy["prompts"][1], _sampling(policy["processor"])
        first = engine.generate([_request(prompt, 3)], sampling)[0]
        assert _max_gap(local, prompt, first.completions) < TIGHT
        for seed in (1, 2):
            _perturb(trainer.module, "", seed=seed)
            engine.sync_weights(trainer.module)
            assert engine.last_sync.mode == "adapter" and engine.last_sync.groups == 0  # no base weights sent
            out = engine.generate([_request(prompt, 3)], sampling)[0]
            assert _max_gap(local, prompt, out.completions) < TIGHT
        assert len(list((tmp_path / "vllm_adapters" / "rank0").iterdir())) <= 2
    finally:
        engine.close()
    with pytest.raises(ValueError, match="vision tower"):
        bad = _cfg(tiny_qwen3_vl, tmp_path, vllm_weight_sync="adapter", lora_target_modules=LM_AND_VISION_LORA)
        VLLMEngine(bad, policy["engine"].module, policy["processor"], policy["rows"], DistInfo())


@pytest.mark.vllm
@pytest.mark.slow
def test_qwen2_5_vl_rollouts_and_sync(tiny_qwen2_5_vl, sft_videos, tmp_path):
    """Qwen2.5-VL: vLLM's M-RoPE (the reference positions the trainer uses) and re-expansion agree."""
    from training.common.model import load_processor
    from training.common.video import VideoLoader
    from training.grpo.data import encode_prompt_row
    from training.grpo.policy import DistInfo, build_policy
    from training.grpo.vllm_engine import VLLMEngine

    cfg = _cfg(tiny_qwen2_5_vl, tmp_path, reward_vlm="runtime")
    processor = load_processor(tiny_qwen2_5_vl)
    trainer, _ = build_policy(cfg, DistInfo(), total_steps=1)
    trainer.module.eval()
    rows = make_grpo_rows(sft_videos, 1)
    prompt = encode_prompt_row(processor, rows[0], 0, VideoLoader(processor, cfg.video_sampling()), None)
    local = {"processor": processor, "engine": trainer}
    engine = VLLMEngine(cfg, trainer.module, processor, rows, DistInfo())
    try:
        sampling = _sampling(processor, max_new_tokens=8)
        out = engine.generate([_request(prompt, 4)], sampling)[0]
        assert out.num_visual_tokens == prompt.num_visual_tokens
        assert _max_gap(local, prompt, out.completions) < TIGHT
        _perturb(trainer.module, "", seed=9)
        engine.sync_weights(trainer.module)
        out = engine.generate([_request(prompt, 4)], sampling)[0]
        assert _max_gap(local, prompt, out.completions) < TIGHT
    finally:
        engine.close()


# ---------------------------------------------------------------------------------------------
# The loop with the engine
# ---------------------------------------------------------------------------------------------

def _run_loop(ckpt: Path, rows_file: Path, out: Path, identities: Path, monkeypatch, **overrides) -> dict:
    from training.grpo.train import train

    cfg = _cfg(ckpt, out, train_file=str(rows_file), importance_sampling="token_truncate", max_steps=3,
               save_steps=100, reward_fn="tests.training.grpo_vllm_reward:score_brevity_asking_the_policy",
               reward_funcs="brevity", reward_weights="1.0", **overrides)
    monkeypatch.setenv("VIDEOPRO_TEST_IDENTITIES", str(identities))
    return train(cfg)


@pytest.mark.vllm
@pytest.mark.slow
def test_grpo_steps_with_the_colocated_engine(tiny_qwen3_vl, sft_videos, tmp_path, monkeypatch):
    from training.grpo.vllm_engine import VLLMEngine

    rows = write_rows(tmp_path / "rows.jsonl", make_grpo_rows(sft_videos, 4))
    synced = _run_loop(tiny_qwen3_vl, rows, tmp_path / "synced", tmp_path / "ids_synced.jsonl", monkeypatch)
    steps = synced["history"]
    assert len(steps) == 3 and all(abs(h["loss"]) > 0 for h in steps)  # the adapters move every step
    for h in steps:  # after every sync the sampler's log-probs are the trainer's
        assert h["logp_abs_diff_max"] < TIGHT and h["is_sampler_kl"] < 1e-8, h
        assert h["is_weight_mean"] == pytest.approx(1.0, abs=1e-4) and h["is_capped_fraction"] == 0.0
        assert h["vllm/sync_tensors"] > 0 and h["vllm/sync_s"] > 0
    assert [h["vllm/weights_version"] for h in steps] == [1.0, 2.0, 3.0]
    seen = [json.loads(line) for line in (tmp_path / "ids_synced.jsonl").read_text().splitlines()]
    assert [s["identity"].rsplit("@", 1)[1] for s in seen] == ["step0", "step1", "step2"]
    assert all(s["identity"].startswith("vllm-policy:") and s["answered"] for s in seen)

    # The same run with the sync skipped: vLLM keeps sampling the first weights.
    monkeypatch.setattr(VLLMEngine, "_push", lambda self: setattr(self, "_pending", False))
    stale = _run_loop(tiny_qwen3_vl, rows, tmp_path / "stale", tmp_path / "ids_stale.jsonl", monkeypatch)["history"]
    assert stale[0]["logp_abs_diff_max"] < TIGHT  # before the first step both have the initial weights
    assert all(h["logp_abs_diff_max"] > 1e-3 for h in stale[1:]), [h["logp_abs_diff_max"] for h in stale]
    assert all(h["is_sampler_kl"] > 0 for h in stale[1:])
