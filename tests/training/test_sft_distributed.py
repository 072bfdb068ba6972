"""DeepSpeed SFT on CPU: one ``torchrun --nproc_per_node 2`` launch trains a tiny Qwen3-VL and a
tiny Qwen2.5-VL with ZeRO-2 and ZeRO-3 on video rows, each run twice (uninterrupted, and
resumed from a mid-run checkpoint); the tests below assert on what it recorded. The merged
checkpoints of those runs are then checked against the adapter models and loaded by vLLM."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.training.conftest import REPO, TINY_OVERRIDES
from tests.training.helpers import run_torchrun_scenarios

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

SCENARIOS = [  # (name, family, deepspeed config, gradient accumulation, dataloader workers)
    ("qwen3_vl-zero2", "qwen3_vl", "zero2.json", 1, 1),
    ("qwen3_vl-zero3", "qwen3_vl", "zero3.json", 2, 0),
    ("qwen2_5_vl-zero2", "qwen2_5_vl", "zero2.json", 2, 0),
    ("qwen2_5_vl-zero3", "qwen2_5_vl", "zero3.json", 1, 0),
    # optimizer and parameters offloaded to CPU (DeepSpeed's CPU Adam, JIT-built once)
    ("qwen3_vl-zero3_offload", "qwen3_vl", "zero3_offload.json", 1, 0),
]
MAX_STEPS, RESUME_STEP = 4, 2
TORCHRUN_TIMEOUT_S = 1200



@pytest.fixture(scope="module")
def dist_results(tiny_qwen3_vl: Path, tiny_qwen2_5_vl: Path, sft_rows_file: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("deepspeed")
    work = tmp_path_factory.mktemp("sft_dist")
    checkpoints = {"qwen3_vl": tiny_qwen3_vl, "qwen2_5_vl": tiny_qwen2_5_vl}
    scenarios = []
    for name, family, ds, ga, workers in SCENARIOS:
        cfg = dict(TINY_OVERRIDES, model_name_or_path=str(checkpoints[family]), train_file=str(sft_rows_file),
                   output_dir=str(work / name), deepspeed=str(REPO / "configs" / "deepspeed" / ds),
                   eval_split_ratio=0.2, per_device_train_batch_size=1, gradient_accumulation_steps=ga,
                   dataloader_num_workers=workers, max_steps=MAX_STEPS, save_steps=RESUME_STEP,
                   eval_steps=RESUME_STEP, learning_rate=1e-3,
                   report_to="wandb" if name == "qwen3_vl-zero2" else "none")
        scenarios.append({"name": name, "config": cfg, "resume_step": RESUME_STEP})
    results = run_torchrun_scenarios(REPO / "tests" / "training" / "dist_sft_scenarios.py", {"scenarios": scenarios},
                                     work, timeout_s=TORCHRUN_TIMEOUT_S)
    for r in results["scenarios"]:  # JSON object keys are strings; steps are ints
        for run in ("full", "resumed"):
            for key in ("losses", "eval_losses"):
                r[run][key] = {int(k): v for k, v in r[run][key].items()}
    return {"work": work, "by_name": {s["name"]: s for s in results["scenarios"]}}


@pytest.mark.parametrize("name", [s[0] for s in SCENARIOS])
def test_trains_with_deepspeed_on_two_ranks(dist_results, name):
    r = dist_results["by_name"][name]
    assert r["full"]["world_size"] == 2
    assert r["full"]["deepspeed_stage"] == (3 if "zero3" in name else 2)
    losses = r["full"]["losses"]
    assert sorted(losses) == list(range(1, MAX_STEPS + 1))
    assert all(math.isfinite(v) and v > 0 for v in losses.values())
    assert r["full"]["eval_losses"] and all(math.isfinite(v) for v in r["full"]["eval_losses"].values())


@pytest.mark.parametrize("name", [s[0] for s in SCENARIOS])
def test_every_lora_parameter_changes_and_no_frozen_one_does(dist_results, name):
    r = dist_results["by_name"][name]
    # 2 layers x 7 linear layers (q, k, v, o, gate, up, down) x (lora_A, lora_B)
    assert r["num_lora"] == 2 * 7 * 2
    assert r["num_frozen"] > 0
    assert r["lora_unchanged"] == []
    assert r["frozen_changed"] == []
    assert r["lora_not_named_lora"] == [] and r["vision_lora"] == []
    assert r["nonfinite_params"] == []


@pytest.mark.parametrize("name", [s[0] for s in SCENARIOS])
def test_resume_reproduces_the_uninterrupted_run(dist_results, name):
    r = dist_results["by_name"][name]
    full, resumed = r["full"]["losses"], r["resumed"]["losses"]
    # The resumed run's history holds the checkpoint's steps 1..k and its own steps k+1..
    assert sorted(resumed) == list(range(1, MAX_STEPS + 1))
    for step in range(RESUME_STEP + 1, MAX_STEPS + 1):
        assert resumed[step] == pytest.approx(full[step], rel=1e-6, abs=1e-7), (step, full, resumed)
    assert r["resumed"]["eval_losses"][MAX_STEPS] == pytest.approx(r["full"]["eval_losses"][MAX_STEPS], rel=1e-5)


def test_video_cache_decodes_each_video_once_across_ranks_and_workers(dist_results):
    # qwen3_vl-zero2 runs two ranks with one dataloader worker each, plus the eval loop.
    cache = dist_results["work"] / "qwen3_vl-zero2" / "video_cache"
    decodes = [json.loads(line) for line in (cache / "decodes.jsonl").read_text().splitlines()]
    assert len(decodes) == 2, decodes
    assert len({d["parts"]["path"] for d in decodes}) == 2


def test_wandb_logs_offline(dist_results):
    runs = list((dist_results["work"] / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    assert any(runs[0].glob("*.wandb"))


def test_checkpoints_hold_the_exact_resume_state(dist_results):
    ckpt = dist_results["work"] / "qwen3_vl-zero3" / f"checkpoint-{RESUME_STEP}"
    for name in ("adapter_model.safetensors", "adapter_config.json", "scheduler.pt", "trainer_state.json",
                 "rng_state_0.pth", "rng_state_1.pth", "processor_config.json"):
        assert (ckpt / name).is_file(), name
    assert (ckpt / f"global_step{RESUME_STEP}").is_dir()  # DeepSpeed engine + optimizer partitions


# --------------------------------------------------------------------------------------------
# Merging the adapters trained above
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def merged(dist_results) -> dict[str, Path]:
    from training.merge_lora import merge_lora

    out = {}
    for name in ("qwen3_vl-zero3", "qwen2_5_vl-zero2"):
        adapter = Path(dist_results["by_name"][name]["full"]["final"])
        out[name] = merge_lora(adapter, dist_results["work"] / f"{name}-merged", dtype="float32")
    return out


@pytest.mark.parametrize("name", ["qwen3_vl-zero3", "qwen2_5_vl-zero2"])
def test_merged_checkpoint_matches_adapter_logits(dist_results, merged, name, sft_rows_file):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from training.common.model import load_model
    from training.common.video import VideoLoader, VideoSampling
    from training.merge_lora import base_model_of
    from training.sft.data import SFTCollator, SFTDataset, load_sft_rows

    adapter = Path(dist_results["by_name"][name]["full"]["final"])
    out = merged[name]
    for f in ("config.json", "generation_config.json", "model.safetensors", "processor_config.json",
              "chat_template.jinja", "tokenizer.json", "sft_config.json"):
        assert (out / f).is_file(), f
    processor = AutoProcessor.from_pretrained(out)
    sampling = VideoSampling(max_frames=8, min_pixels=1024, max_pixels=4096)
    ds = SFTDataset(load_sft_rows(sft_rows_file)[:2], processor, VideoLoader(processor, sampling))
    batch = SFTCollator(processor.tokenizer.pad_token_id)([ds[0], ds[1]])
    batch.pop("labels")

    peft_model = PeftModel.from_pretrained(load_model(base_model_of(adapter), "float32", "sdpa"), str(adapter)).eval()
    merged_model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).eval()
    base_model = load_model(base_model_of(adapter), "float32", "sdpa").eval()
    with torch.no_grad():
        want = peft_model(**batch).logits
        got = merged_model(**batch).logits
        base = base_model(**batch).logits
    mask = batch["attention_mask"].bool()
    assert torch.allclose(got[mask], want[mask], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(base[mask], want[mask], atol=1e-3)  # the adapter does change the model


@pytest.mark.vllm
def test_vllm_loads_the_merged_checkpoint_and_generates(merged):
    pytest.importorskip("vllm")
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from vllm import SamplingParams

    from inference.vllm_utils import make_offline_llm

    path = merged["qwen3_vl-zero3"]
    llm = make_offline_llm(path, max_model_len=2048)
    prompt = "<|im_start|>user\nWrite a program.<|im_end|>\n<|im_start|>assistant\n"
    out = llm.generate([prompt], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
    got = list(out[0].outputs[0].token_ids)
    assert len(got) == 8
    # Greedy decoding of the same weights in transformers gives the same tokens.
    tok = AutoProcessor.from_pretrained(path).tokenizer
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        want = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                              min_new_tokens=8, do_sample=False)[0, ids.shape[1]:].tolist()
    assert got == want
