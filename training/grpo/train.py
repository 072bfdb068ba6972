"""GRPO entry point: ``python -m training.grpo.train --config configs/grpo/paper.yaml [--flag value ...]``.

Launched once per device by ``launch/grpo.sh`` (torchrun); also runs as a single process.
``train(cfg)`` below is the whole stage, phase by phase; the pieces live next to it:
``core_algos`` (pure tensor functions), ``data`` (rows, prompt order, micro-batches),
``engines`` (the rollout-engine interface, transformers ``generate``), ``reward_adapter`` (the
reward call and the policy as the programs' VLM), ``policy`` (model, DeepSpeed / plain engine,
rollout mode, log-probs), ``checkpoint`` and ``tracking``.

One rollout batch per iteration of the loop: ``per_device_train_batch_size x world x
gradient_accumulation_steps`` completions = that / ``num_generations`` prompts. Every rank
builds the same batch of prompts and generates its own contiguous slice of the completions;
rewards are gathered so every rank computes the same group advantages; each rank then trains
on its slice in ``gradient_accumulation_steps`` micro-batches, ``num_iterations`` times.

Where this departs from the paper's run (``swift rlhf`` with ms-swift ~3.8) and from TRL:

- **Rollouts**: colocated vLLM as in the paper (``rollout_engine: vllm``, TP 4, sleep level 0,
  model/optimiser offload during rollouts; ``training.grpo.vllm_engine``), or transformers
  ``generate`` on the training model (``rollout_engine: transformers``). vLLM's weights are synced
  from an out-of-place LoRA merge per group of layers (ms-swift merges in place and unmerges). The
  paper's ``--eval_steps 1000`` evaluation is not run inside the loop.
- **Frames**: one frame policy (``inference.video_sampling.FramePolicy``, qwen-vl-utils' rules by
  default) samples each row's video once per step for the rollouts, the training forward and
  the reward's programs; ms-swift lets vLLM and its template process the video separately.
  Over-long prompts are refused, never left-truncated (ms-swift's ``truncation_strategy left``
  would cut into the video).
- **Unscorable rewards** (``None``, a host error) are left out of the group baseline and get
  advantage 0, as in TRL; ms-swift 3.8 sums them as 0 (``nansum``).
- **Dropout**: rollouts, old and reference log-probs run in eval mode (no LoRA dropout); the
  training forward runs in train mode. TRL and ms-swift compute old/reference log-probs in
  train mode.
- **Dual clip** is verl's (``-A * c`` bound for negative advantages); TRL's ``delta`` (a cap on
  the unclipped ratio of every token) is not implemented.
- **Dynamic sampling** regenerates the zero-variance groups of the same prompts (up to
  ``max_resample_times``); ms-swift and DAPO draw fresh prompts instead.
- **Checkpoints** land on rollout-batch boundaries (with ``num_iterations > 1`` a save step inside
  a batch waits for its end), so a resumed run never needs a rollout batch it did not save.
- **Seeds**: rank ``r`` samples with ``seed + r`` (TRL seeds vLLM by rank the same way); the LoRA
  initialisation uses ``seed`` on every rank.
- **Vision placeholders** (``<|image_pad|>``, ``<|video_pad|>``) are never sampled and are removed
  from the trainer's softmax too (a sampled one would break the training forward).
- Entropy is always computed and logged (ms-swift: ``log_entropy`` off by default).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.config import config_to_dict, parse_config
from inference.programs import analyse_output
from inference.progress import Progress
from training.common.model import load_processor, torch_dtype, trainable_summary
from training.common.video import VideoLoader, VideoSampling, spatial_factor
from training.grpo import core_algos as algos
from training.grpo.checkpoint import TrainState, load_checkpoint, resolve_resume, save_adapter, save_checkpoint
from training.grpo.config import GRPOConfig
from training.grpo.data import (
    PromptInputs,
    PromptSchedule,
    build_micro_batch,
    encode_prompt_row,
    load_grpo_rows,
    rank_slots,
)
from training.grpo.engines import (
    Completion,
    RolloutRequest,
    SamplingSettings,
    generation_model,
    make_rollout_engine,
    stop_token_ids,
    vision_placeholder_ids,
)
from training.grpo.policy import (
    DistInfo,
    build_policy,
    completion_logprobs,
    reference_disabled,
    rollout_mode,
    setup_distributed,
)
from training.grpo.reward_adapter import LoopReward, RewardResult
from training.grpo.tracking import RunLogger

logger = logging.getLogger("videopro.grpo")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = parse_config(GRPOConfig, argv)
    if not cfg.model_name_or_path or not cfg.train_file:
        raise SystemExit("error: --model_name_or_path and --train_file are required")
    train(cfg)
    from training.common.distributed import teardown_distributed

    teardown_distributed()
    return 0


def train(cfg: GRPOConfig, observer: Any = None) -> dict[str, Any]:
    """Run the GRPO stage described by ``cfg``; returns a summary (steps, per-step metrics,
    the final adapter's path). Joins the torchrun process group if there is one and leaves it
    up (``main`` tears it down). ``observer`` (tests, tools) may define ``on_train_begin(engine)``
    and ``on_train_end(engine)``, called on every rank after resuming and after the last step."""
    # ---- 0. Processes: one per device (gloo on CPU, NCCL on GPUs); DeepSpeed on CPU needs its
    #         CPU accelerator named before it is imported.
    if cfg.deepspeed and not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    info = setup_distributed(needs_group=bool(cfg.deepspeed))
    group_size = cfg.num_generations

    # ---- 1. Data: rows, the prompt order of the run (the same on every rank), the frame policy.
    processor = load_processor(cfg.model_name_or_path)
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = load_grpo_rows(cfg.train_file)
    schedule = PromptSchedule(len(rows), cfg.prompts_per_step(info.world_size), cfg.seed, cfg.shuffle)
    rollout_batches = max(1, int(cfg.num_train_epochs * schedule.batches_per_epoch))
    total_steps = cfg.max_steps if cfg.max_steps > 0 else rollout_batches * cfg.num_iterations
    frame_sampler = VideoLoader(processor, VideoSampling.from_config(cfg))
    video_dir = cfg.video_dir or str(Path(cfg.train_file).resolve().parent)
    pixel_dtype = torch_dtype(cfg.torch_dtype)
    _warn_if_frame_policy_differs(cfg)

    # ---- 2. Model: base frozen (vision tower included), LoRA on the language model, AdamW and
    #         the scheduler inside DeepSpeed (ZeRO-2/3) or plain PyTorch.
    engine, _zero3_keepalive = build_policy(cfg, info, total_steps)
    if info.is_main:
        logger.info("rows %d, %d prompts x %d samples per rollout batch, %d optimiser steps; %s",
                    len(rows), schedule.prompts_per_batch, group_size, total_steps,
                    json.dumps(trainable_summary(engine.module)))

    # ---- 3. Rollout engine and reward (the policy answers the programs' VLM calls).
    rollout = make_rollout_engine(cfg.rollout_engine, engine.module, processor, pad_id, cfg=cfg, rows=rows, info=info)
    reward = LoopReward(cfg, generation_model(engine.module), processor, spatial_factor(processor),
                        **_engine_reward_hooks(rollout, cfg))
    sampling = SamplingSettings(max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature,
                                top_p=cfg.top_p, top_k=cfg.top_k, repetition_penalty=cfg.repetition_penalty,
                                stop_token_ids=stop_token_ids(processor, cfg.model_name_or_path),
                                suppress_token_ids=vision_placeholder_ids(processor))
    suppressed = sampling.suppress_token_ids

    # ---- 4. Resume: adapters, optimiser, scheduler, RNG, data position and step.
    _seed_rank(cfg.seed + info.rank)
    state = TrainState()
    resume = resolve_resume(cfg)
    if resume is not None:
        state = load_checkpoint(resume, engine, info)
        reward.set_weights_version(state.step)
        if hasattr(rollout, "set_weights_version"):  # vLLM: request seeds follow the step
            rollout.set_weights_version(state.step)
        if info.is_main:
            logger.info("resumed from %s at step %d (rollout batch %d)", resume, state.step, state.rollout_batch)
    run_log = RunLogger(cfg.output_dir, info.is_main, cfg.report_to, cfg.wandb_project,
                        cfg.run_name or Path(cfg.output_dir).name, config_to_dict(cfg),
                        resumed_step=state.step if resume is not None else None)
    history: list[dict[str, Any]] = []
    last_saved = state.step if resume is not None else -1
    if hasattr(observer, "on_train_begin"):
        observer.on_train_begin(engine)

    # Steps, rate and ETA with the latest loss and reward (a bar on a terminal, log lines otherwise).
    latest: dict[str, str] = {}
    bar = Progress(total_steps - state.step, f"grpo steps {state.step + 1}-{total_steps}", quiet=not info.is_main,
                   unit="step", extra=lambda: latest)
    while state.step < total_steps:
        timings: dict[str, float] = {}
        step_start = time.perf_counter()

        # ---- 5. Sample prompts: this rollout batch's rows; this rank's (prompt, sample) slots.
        #         Each row's video is sampled once, here, and everything downstream uses those frames.
        epoch, row_ids = schedule.batch(state.rollout_batch)
        slots = rank_slots(len(row_ids), group_size, info.rank, info.world_size)
        prompts = {p: encode_prompt_row(processor, rows[row_ids[p]], row_ids[p], frame_sampler, video_dir,
                                        pixel_dtype, cfg.max_prompt_length)
                   for p in sorted({p for p, _ in slots})}
        timings["time/video"] = time.perf_counter() - step_start

        # ---- 6. Rollouts (G per prompt over all ranks) and 7. rewards, in rollout mode (eval;
        #         ZeRO-3 parameters gathered so every rank runs its own forward passes).
        with _rollout_context(rollout, engine):
            everything = list(range(len(slots)))
            completions = _sample(rollout, prompts, slots, everything, sampling, timings)
            texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in completions]
            rewards = _score(reward, prompts, slots, everything, texts, completions, timings)
            resample_rounds = 0
            for _ in range(cfg.max_resample_times if cfg.dynamic_sampling else 0):
                empty = algos.groups_without_signal(_gather_totals(rewards.total, info), group_size)
                if not bool(empty.any()):  # decided on the gathered rewards: every rank agrees
                    break
                resample_rounds += 1
                redo = [i for i, (p, _) in enumerate(slots) if bool(empty[p])]
                # every rank loops the same number of times; some may have nothing to redo (a
                # collective engine - vLLM with tensor parallelism - still needs every rank's call)
                if redo or getattr(rollout, "generate_is_collective", False):
                    new = _sample(rollout, prompts, slots, redo, sampling, timings)
                    new_texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in new]
                    new_rewards = _score(reward, prompts, slots, redo, new_texts, new, timings)
                    for k, i in enumerate(redo):
                        completions[i], texts[i] = new[k], new_texts[k]
                    _replace_rewards(rewards, redo, new_rewards)

        # ---- 8. Advantages: from every rank's rewards, group-normalised; this rank's slice.
        totals = _gather_totals(rewards.total, info)
        adv = algos.group_advantages(totals, group_size, cfg.scale_rewards, cfg.advantage_epsilon)
        offset = info.rank * len(slots)
        my_adv = adv.advantages[offset:offset + len(slots)]

        # ---- 9. Micro-batches; old log-probs (once per rollout batch, when reused or corrected) and
        #         reference log-probs (the base: adapters disabled), without gradient, in eval mode.
        train_start = time.perf_counter()
        per_device = cfg.per_device_train_batch_size
        micro = []
        for start in range(0, len(slots), per_device):
            idx = list(range(start, min(start + per_device, len(slots))))
            mb = build_micro_batch([prompts[slots[i][0]] for i in idx], [completions[i].token_ids for i in idx],
                                   [completions[i].truncated for i in idx], [float(my_adv[i]) for i in idx], idx,
                                   pad_id)
            mask = algos.completion_mask(mb.completion_lengths, mb.width, mb.truncated, cfg.mask_truncated_completions)
            micro.append({"batch": mb, "mask": mask})
        global_tokens = _all_reduce_sum(sum(float(m["mask"].sum()) for m in micro), info)
        use_is = cfg.importance_sampling != "none"
        need_old = cfg.num_iterations > 1 or use_is
        if need_old or cfg.beta:
            engine.module.eval()
            with torch.no_grad():
                for m in micro:
                    mb = m["batch"]
                    if need_old:
                        m["old"] = completion_logprobs(engine, mb.inputs, mb.completion_ids, cfg.temperature,
                                                      suppressed=suppressed)[0]
                    if cfg.beta:
                        with reference_disabled(engine):
                            m["ref"] = completion_logprobs(engine, mb.inputs, mb.completion_ids, cfg.temperature,
                                                          suppressed=suppressed)[0]
            engine.module.train()
        if use_is:
            for m in micro:
                m["sampler"] = _sampler_logps(completions, m["batch"], m["old"])
        prep_time = time.perf_counter() - train_start  # counted in the first iteration's train time

        # ---- 10. Loss and optimiser step(s): num_iterations passes over the rollout batch.
        saves_before = state.step // cfg.save_steps
        for _ in range(cfg.num_iterations):
            if state.step >= total_steps:
                break
            iter_start = time.perf_counter()
            step_metrics: list[dict[str, float]] = []
            for m in micro:
                mb = m["batch"]
                logp, entropy = completion_logprobs(engine, mb.inputs, mb.completion_ids, cfg.temperature,
                                                    with_entropy=True, suppressed=suppressed)
                old = m["old"].to(logp.device) if need_old else logp.detach()
                is_weights, is_metrics = None, {}
                if use_is:
                    level, _, mode = cfg.importance_sampling.partition("_")
                    is_weights, is_metrics = algos.importance_sampling_weights(
                        old, m["sampler"].to(logp.device), m["mask"].to(logp.device), level, mode,
                        cfg.importance_sampling_threshold)
                loss, metrics = algos.policy_loss(
                    logp, old, mb.advantages.to(logp.device), m["mask"].to(logp.device), loss_type=cfg.loss_type,
                    epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, dual_clip=cfg.dual_clip, beta=cfg.beta,
                    ref_logp=m["ref"].to(logp.device) if cfg.beta else None, is_weights=is_weights,
                    max_completion_length=cfg.max_completion_length, global_num_tokens=global_tokens,
                    num_micro_batches=len(micro), world_size=info.world_size)
                engine.backward(loss)
                engine.step()
                metrics.update(is_metrics, loss=float(loss.detach()),
                               entropy=float(algos.masked_mean(entropy, m["mask"].to(entropy.device))))
                step_metrics.append(metrics)
            state.step += 1
            timings["time/train"] = time.perf_counter() - iter_start + prep_time
            prep_time = 0.0

            # ---- 11. Sync: the rollout engine and the programs' VLM sample from the new weights.
            sync_start = time.perf_counter()
            rollout.sync_weights(engine.module)
            reward.set_weights_version(state.step)
            timings["time/sync"] = time.perf_counter() - sync_start
            if hasattr(rollout, "step_metrics"):  # vLLM: what the sync moved, memory offloaded
                timings.update(rollout.step_metrics())
            timings["time/step"] = time.perf_counter() - step_start

            # ---- 12. Log: rewards, groups, lengths, clipping, KL, entropy, modes, failures, times.
            record = _step_metrics(cfg, info, engine, slots, completions, texts, rewards, adv, step_metrics,
                                   prompts, timings, resample_rounds, epoch)
            history.append(record)
            run_log.log(state.step, record)
            latest.update(loss=f"{record['loss']:.4f}", reward=f"{record['reward/total/mean']:.3f}")
            bar.advance()
            if cfg.log_completions and info.is_main:
                run_log.log_completions(state.step, _completion_entries(cfg, prompts, slots, completions, texts,
                                                                        rewards, my_adv))
            if info.is_main and (state.step % max(1, cfg.logging_steps) == 0 or state.step == 1):
                logger.info("step %d/%d loss %.4f reward %.3f zero-std groups %.2f len %.0f (%.1fs)", state.step,
                            total_steps, record["loss"], record["reward/total/mean"],
                            record["groups/zero_std_fraction"], record["completions/length_mean"],
                            record["time/step"])
            step_start = time.perf_counter()
            timings = {k: 0.0 for k in timings}  # a further iteration reuses the rollouts: no rollout time

        # ---- 13. Checkpoint at rollout-batch boundaries (exact resume: see checkpoint.py).
        state.rollout_batch += 1
        state.epoch = epoch
        if state.step // cfg.save_steps > saves_before or state.step >= total_steps:
            save_checkpoint(cfg.output_dir, state, engine, processor, cfg, info)
            last_saved = state.step

    bar.close()
    if hasattr(observer, "on_train_end"):
        observer.on_train_end(engine)

    # ---- 14. The final adapter (merge with `python -m training.merge_lora --adapter <output_dir>/final`).
    if last_saved != state.step:
        save_checkpoint(cfg.output_dir, state, engine, processor, cfg, info)
    final = Path(cfg.output_dir) / "final"
    save_adapter(engine.module, processor, cfg, final, info)
    summary = {"steps": state.step, "world_size": info.world_size, "zero_stage": engine.zero_stage,
               "final_adapter": str(final), "history": history, "config": config_to_dict(cfg)}
    if info.is_main:
        (Path(cfg.output_dir) / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        logger.info("done: adapter in %s", final)
    run_log.close()
    rollout.close()
    reward.close()
    if hasattr(engine, "destroy"):
        engine.destroy()
    del _zero3_keepalive
    return summary


# ---------------------------------------------------------------------------------------------
# Helpers of the phases above
# ---------------------------------------------------------------------------------------------

def _rollout_context(rollout: Any, engine: Any) -> Any:
    """Where rollouts and rewards run: the engine's own context when it has one (vLLM: pending
    weights pushed, trainer offloaded, vLLM awake), else the trainer's rollout mode (eval; ZeRO-3
    parameters gathered for the transformers engine)."""
    if hasattr(rollout, "rollout_context"):
        return rollout.rollout_context(engine)
    return rollout_mode(engine)


def _engine_reward_hooks(rollout: Any, cfg: GRPOConfig) -> dict[str, Any]:
    """With an engine that can answer the reward's VLM calls (vLLM), the policy VLM is that
    engine at its current weights, and the reward is called the way the engine needs (lockstep
    within a tensor-parallel group)."""
    if cfg.reward_vlm != "policy" or not hasattr(rollout, "policy_vlm"):
        return {}
    return {"vlm": rollout.policy_vlm(), "runner": rollout.reward_runner()}


def _seed_rank(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _warn_if_frame_policy_differs(cfg: GRPOConfig) -> None:
    """The policy should see videos as it was fine-tuned to (the SFT run's sft_config.json)."""
    from inference.modules import warn_if_frame_policy_differs

    warn_if_frame_policy_differs(cfg, cfg.model_name_or_path)  # type: ignore[arg-type]


def _sample(rollout: Any, prompts: dict[int, PromptInputs], slots: list[tuple[int, int]], indices: list[int],
            sampling: SamplingSettings, timings: dict[str, float]) -> list[Completion]:
    """Completions for ``slots[i]`` for ``i`` in ``indices``: one request per prompt."""
    start = time.perf_counter()
    by_prompt: OrderedDict[int, list[int]] = OrderedDict()
    for i in indices:
        by_prompt.setdefault(slots[i][0], []).append(i)
    requests = [RolloutRequest(prompts[p].prompt_ids, prompts[p].videos, len(ids)) for p, ids in by_prompt.items()]
    outputs = rollout.generate(requests, sampling)
    result: dict[int, Completion] = {}
    for (p, ids), out in zip(by_prompt.items(), outputs):
        if out.num_visual_tokens != prompts[p].num_visual_tokens:
            raise RuntimeError(f"rollout engine fed {out.num_visual_tokens} visual tokens for row "
                               f"{prompts[p].row_index}; the training input has {prompts[p].num_visual_tokens}")
        if len(out.completions) != len(ids):
            raise RuntimeError(f"rollout engine returned {len(out.completions)} completions for {len(ids)} samples")
        result.update(zip(ids, out.completions))
    timings["time/rollout"] = timings.get("time/rollout", 0.0) + time.perf_counter() - start
    return [result[i] for i in indices]


def _score(reward: LoopReward, prompts: dict[int, PromptInputs], slots: list[tuple[int, int]], indices: list[int],
           texts: list[str], completions: list[Completion], timings: dict[str, float]) -> RewardResult:
    """Rewards of ``texts`` (completions of ``slots[i]``, ``i`` in ``indices``); completions cut at
    the token budget are flagged (the format reward scores them 0)."""
    start = time.perf_counter()
    result = reward([prompts[slots[i][0]].row for i in indices], texts, [c.truncated for c in completions])
    timings["time/reward"] = timings.get("time/reward", 0.0) + time.perf_counter() - start
    return result


def _replace_rewards(rewards: RewardResult, indices: list[int], new: RewardResult) -> None:
    for k, i in enumerate(indices):
        rewards.total[i] = new.total[k]
        rewards.failures[i] = new.failures[k]
        rewards.records[i] = new.records[k]
        for name, values in new.components.items():
            rewards.components.setdefault(name, [None] * len(rewards.total))[i] = values[k]
    for name, value in new.counters.items():
        rewards.counters[name] = rewards.counters.get(name, 0) + value


def _gather_objects(value: Any, info: DistInfo) -> list[Any]:
    if info.world_size == 1:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, value)
    return out


def _gather_totals(totals: list[float | None], info: DistInfo) -> torch.Tensor:
    """Every rank's rewards in generation-batch order, NaN where unscorable: ``[N]``."""
    values = [float("nan") if t is None else float(t) for t in totals]
    return torch.tensor([v for part in _gather_objects(values, info) for v in part], dtype=torch.float32)


def _all_reduce_sum(value: float, info: DistInfo) -> float:
    return float(sum(_gather_objects(float(value), info)))


def _sampler_logps(completions: list[Completion], mb: Any, old: torch.Tensor) -> torch.Tensor:
    out = old.detach().clone().cpu()
    for row, i in enumerate(mb.slots):
        lp = completions[i].logprobs
        if lp is None:
            raise RuntimeError("importance_sampling needs the rollout engine's log-probs, and this engine "
                               "reported none; set importance_sampling none")
        out[row, :len(lp)] = torch.tensor(lp, dtype=out.dtype)
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _step_metrics(cfg: GRPOConfig, info: DistInfo, engine: Any, slots: list[tuple[int, int]],
                  completions: list[Completion], texts: list[str], rewards: RewardResult, adv: algos.Advantages,
                  step_metrics: list[dict[str, float]], prompts: dict[int, PromptInputs],
                  timings: dict[str, float], resample_rounds: int, epoch: int) -> dict[str, Any]:
    """One step's metrics over every rank (a collective)."""
    modes = []
    for text in texts:
        analysis = analyse_output(text)
        modes.append(analysis.mode if analysis.runnable else "no_program")
    local = {
        "components": rewards.components, "failures": [f for f in rewards.failures if f],
        "counters": rewards.counters, "lengths": [len(c.token_ids) for c in completions],
        "truncated": [c.truncated for c in completions], "modes": modes, "train": step_metrics,
        "visual_tokens": [p.num_visual_tokens for p in prompts.values()], "timings": timings,
        "totals": rewards.total, "reward_timing": rewards.timing,
    }
    parts = _gather_objects(local, info)
    out: dict[str, Any] = {"epoch": epoch, "lr": engine.lr, "grad_norm": engine.grad_norm}
    train = [m for part in parts for m in part["train"]]
    for key in sorted({k for m in train for k in m}):
        values = [m[key] for m in train if key in m]
        name = {"clip_low": "clip/low", "clip_high": "clip/high", "clip_dual": "clip/dual",
                "ratio_mean": "ratio/mean", "ratio_max": "ratio/max"}.get(key, key)
        out[name] = max(values) if key.endswith("_max") else sum(values) / len(values)
    totals = [t for part in parts for t in part["totals"] if t is not None]
    out["reward/total/mean"], out["reward/total/std"] = _mean_std(totals)
    out["reward/unscorable"] = adv.num_unscorable
    names = sorted({n for part in parts for n in part["components"]})
    for name in names:
        values = [v for part in parts for v in part["components"].get(name, []) if v is not None]
        out[f"reward/{name}/mean"], out[f"reward/{name}/std"] = _mean_std(values)
    out["groups/zero_std_fraction"] = float(adv.zero_std_groups.float().mean())
    out["groups/resample_rounds"] = resample_rounds
    lengths = [v for part in parts for v in part["lengths"]]
    truncated = [v for part in parts for v in part["truncated"]]
    out["completions/length_mean"] = sum(lengths) / len(lengths)
    out["completions/length_min"], out["completions/length_max"] = min(lengths), max(lengths)
    out["completions/truncated_fraction"] = sum(truncated) / len(truncated)
    mode_counts = Counter(m for part in parts for m in part["modes"])
    for mode in ("native", "program", "no_program"):
        out[f"mode/{mode}"] = mode_counts.get(mode, 0) / len(lengths)
    for reason, count in Counter(_failure_kind(f) for part in parts for f in part["failures"]).items():
        out[f"failures/{reason}"] = count
    for part in parts:
        for name, value in part["counters"].items():
            out[f"counters/{name}"] = out.get(f"counters/{name}", 0) + value
        for name, value in part["reward_timing"].items():  # rewards' own split: parse, execute, module calls
            if isinstance(value, (int, float)):
                out[f"reward_timing/{name}"] = out.get(f"reward_timing/{name}", 0) + value
    visual = [v for part in parts for v in part["visual_tokens"]]
    out["video/visual_tokens_mean"] = sum(visual) / len(visual)
    for key in timings:  # the slowest rank sets the pace
        out[key] = max(part["timings"].get(key, 0.0) for part in parts)
    return out


def _failure_kind(reason: str) -> str:
    """``"accuracy: timeout: WallTimeLimitExceeded ..."`` -> ``"accuracy/timeout"`` (the reward's
    ``component: category: detail`` form; the detail stays in the completions log)."""
    parts = [p.strip() for p in str(reason).split(":")]
    return "/".join(p.replace(" ", "_") for p in parts[:2] if p) or "unknown"


def _completion_entries(cfg: GRPOConfig, prompts: dict[int, PromptInputs], slots: list[tuple[int, int]],
                        completions: list[Completion], texts: list[str], rewards: RewardResult,
                        advantages: torch.Tensor) -> list[dict[str, Any]]:
    entries = []
    for i in range(min(cfg.num_completions_to_log, len(slots))):
        p, g = slots[i]
        row = prompts[p].row
        entries.append({"row_id": row.get("id", prompts[p].row_index), "sample": g, "completion": texts[i],
                        "total": rewards.total[i], "advantage": float(advantages[i]),
                        **{f"reward/{n}": v[i] for n, v in rewards.components.items()},
                        "failure": rewards.failures[i], "length": len(completions[i].token_ids),
                        "finish_reason": completions[i].finish_reason, "mode_label": row.get("mode_label")})
    return entries


if __name__ == "__main__":
    sys.exit(main())

