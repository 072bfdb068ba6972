"""The colocated vLLM engine's GPU-only paths (``gpu``; skipped without CUDA): sleep levels 1 and 2
(the trainer's weights reach vLLM after every wake-up, vLLM's memory is released while asleep),
the trainer offload during rollouts, and tensor parallelism over two GPUs.

Not run in this project's CPU sessions; run on a GPU node with
``python -m pytest -q tests/training/test_grpo_vllm_gpu.py -m gpu`` (a minute or two with the tiny
model; the tensor-parallel test needs two GPUs and runs ``torchrun``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.conftest import GRPO_TINY_OVERRIDES, REPO, make_grpo_rows

pytestmark = [pytest.mark.gpu, pytest.mark.vllm,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TOLERANCE = 2e-3  # fp32 on both sides; GPU kernels differ a little more than the CPU build's


def _setup(ckpt: Path, videos: list[Path], out: Path, **overrides):
    from training.common.model import load_processor
    from training.common.video import VideoLoader
    from training.grpo.config import GRPOConfig
    from training.grpo.data import encode_prompt_row
    from training.grpo.policy import DistInfo, build_policy

    cfg = GRPOConfig(**{**GRPO_TINY_OVERRIDES, "model_name_or_path": str(ckpt), "train_file": "unused",
                        "output_dir": str(out), "rollout_engine": "vllm", "vllm_tensor_parallel_size": 1,
                        "vllm_gpu_memory_utilization": 0.3, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                        **overrides})
    processor = load_processor(ckpt)
    trainer, _ = build_policy(cfg, DistInfo(), total_steps=1)
    trainer.module.eval()
    rows = make_grpo_rows(videos, 1)
    prompt = encode_prompt_row(processor, rows[0], 0, VideoLoader(processor, cfg.video_sampling()), None)
    return cfg, processor, trainer, rows, prompt


def _gap(trainer, processor, prompt, completions) -> float:
    from training.grpo.data import build_micro_batch
    from training.grpo.engines import vision_placeholder_ids
    from training.grpo.policy import completion_logprobs

    n = len(completions)
    mb = build_micro_batch([prompt] * n, [c.token_ids for c in completions], [c.truncated for c in completions],
                           [0.0] * n, list(range(n)), processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = completion_logprobs(trainer, mb.inputs, mb.completion_ids, 1.0,
                                      suppressed=vision_placeholder_ids(processor))
    return max(abs(float(logp[i, k]) - lp) for i, c in enumerate(completions) for k, lp in enumerate(c.logprobs))


@pytest.mark.parametrize("level", [1, 2])
def test_sleep_levels_resync_after_every_wake_up(level, tiny_qwen3_vl, sft_videos, tmp_path):
    from training.grpo.engines import RolloutRequest, SamplingSettings, vision_placeholder_ids
    from training.grpo.policy import DistInfo
    from training.grpo.vllm_engine import VLLMEngine

    cfg, processor, trainer, rows, prompt = _setup(tiny_qwen3_vl, sft_videos, tmp_path, sleep_level=level)
    engine = VLLMEngine(cfg, trainer.module, processor, rows, DistInfo())
    sampling = SamplingSettings(max_new_tokens=8, stop_token_ids=(processor.tokenizer.convert_tokens_to_ids(
        "<|im_end|>"),), suppress_token_ids=vision_placeholder_ids(processor))
    try:
        for step in range(3):
            with engine.rollout_context(trainer):
                out = engine.generate([RolloutRequest(prompt.prompt_ids, prompt.videos, 4)], sampling)[0]
            assert _gap(trainer, processor, prompt, out.completions) < TOLERANCE, step
            asleep = torch.cuda.mem_get_info()[0]
            assert engine._weights_asleep and engine._kv_asleep
            with torch.no_grad():  # a stand-in for an optimiser step
                for name, p in trainer.module.named_parameters():
                    if "lora_B" in name:
                        p.normal_(0, 0.3)
            engine.sync_weights(trainer.module)  # asleep: pushed at the next wake-up
            assert engine._pending
            with engine.rollout_context(trainer):
                awake = torch.cuda.mem_get_info()[0]
                assert awake < asleep  # vLLM's memory is back only while awake
                out = engine.generate([RolloutRequest(prompt.prompt_ids, prompt.videos, 4)], sampling)[0]
            assert engine.last_sync.full == (level == 2)  # level 2 discarded the weights: everything pushed
            assert _gap(trainer, processor, prompt, out.completions) < TOLERANCE, step
    finally:
        engine.close()


def test_offload_moves_the_trainer_to_cpu_during_rollouts(tiny_qwen3_vl, sft_videos, tmp_path):
    from training.grpo.policy import DistInfo
    from training.grpo.vllm_engine import VLLMEngine

    cfg, processor, trainer, rows, _ = _setup(tiny_qwen3_vl, sft_videos, tmp_path, offload_model=True,
                                              offload_optimizer=True)
    engine = VLLMEngine(cfg, trainer.module, processor, rows, DistInfo())
    try:
        frozen = next(p for p in trainer.module.parameters() if not p.requires_grad)
        with engine.rollout_context(trainer):
            assert frozen.device.type == "cpu" and engine.offloaded_megabytes > 0
        assert frozen.device.type == "cuda"
    finally:
        engine.close()


@pytest.mark.distributed
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensor_parallel_group_over_two_gpus(tiny_qwen3_vl, grpo_rows_file, tmp_path):
    """Two ranks, one engine over both (TP 2): the loop's sampler log-probs equal the trainer's."""
    config = dict(GRPO_TINY_OVERRIDES, model_name_or_path=str(tiny_qwen3_vl), train_file=str(grpo_rows_file),
                  output_dir=str(tmp_path / "tp2"), rollout_engine="vllm", vllm_tensor_parallel_size=2,
                  vllm_gpu_memory_utilization=0.3, importance_sampling="token_truncate", temperature=1.0,
                  top_p=1.0, top_k=0, per_device_train_batch_size=1, gradient_accumulation_steps=2, max_steps=2,
                  save_steps=100, max_completion_length=16,
                  reward_fn="tests.training.grpo_vllm_reward:score_brevity_asking_the_policy",
                  reward_funcs="brevity", reward_weights="1.0")
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = tmp_path / "run.py"
    script.write_text(
        "import json, sys\n"
        "import torch.distributed as dist\n"
        "from training.common.distributed import teardown_distributed\n"
        "from training.grpo.config import GRPOConfig\n"
        "from training.grpo.train import train\n"
        "summary = train(GRPOConfig(**json.load(open(sys.argv[1]))))\n"
        "if dist.get_rank() == 0:\n"
        "    open(sys.argv[2], 'w').write(json.dumps(summary['history']))\n"
        "teardown_distributed()\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), VLLM_ENABLE_V1_MULTIPROCESSING="0",
               VIDEOPRO_TEST_IDENTITIES=str(tmp_path / "ids.jsonl"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path / "config.json"), str(tmp_path / "out.json")]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    history = json.loads((tmp_path / "out.json").read_text())
    assert len(history) == 2 and all(h["logp_abs_diff_max"] < TOLERANCE for h in history)
    seen = [json.loads(x) for x in (tmp_path / "ids.jsonl").read_text().splitlines()]
    assert {s["identity"].rsplit("@", 1)[1] for s in seen} == {"step0", "step1"}  # lockstep reward calls answered
