"""GRPO as pure tensor functions: advantages, the clipped surrogate, KL, loss aggregation,
log-probs from logits and the sampler/trainer importance-sampling correction.

Nothing here touches a model, a process group or a config object: every function takes
tensors and numbers and returns tensors (and plain-float metrics), so each one is unit-tested
against hand-computed values and a naive per-sample loop (``tests/training/test_grpo_algorithms.py``).
The loop (``training/grpo/train.py``) calls them in this order:

    rewards [N] ──group_advantages──> advantages [N]
    logits ──token_logprobs──> logp [B, T]           (logits divided by the sampling temperature)
    logp, old_logp, advantages ──clipped_surrogate──> per-token policy loss [B, T]
    (optional) importance_sampling_weights(old_logp, sampler_logp) multiplies the policy loss
    (optional) + beta * kl_k3(logp, ref_logp)
    aggregate_loss(per_token_loss, mask, loss_type) ──> scalar loss of one micro-batch

Notation: ``N`` completions in a generation batch (``N = num_prompts * G``, the ``G``
completions of a prompt adjacent), ``B`` completions in a micro-batch, ``T`` the padded
completion length, ``V`` the vocabulary. Masks are 1 on completion tokens that carry loss.

Where the exact forms come from (read in TRL 1.16 ``GRPOTrainer``, verl ``core_algos``,
ms-swift 3.8 ``GRPOTrainer``): the Bessel-corrected std and the ``1e-4`` in the advantage
denominator (TRL, ms-swift); the four aggregations (TRL; ``dapo``'s token count spans the whole
generation batch across ranks and accumulation steps); the dual clip (verl's ``clip_ratio_c``,
Ye et al. 2020); k3 KL (Schulman's estimator, as all three); the importance-sampling modes
(TRL's ``token|sequence`` x ``truncate|mask``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

ScaleRewards = Literal["group", "batch", "none"]
LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS: tuple[str, ...] = ("group", "batch", "none")


# ---------------------------------------------------------------------------------------------
# Small masked reductions
# ---------------------------------------------------------------------------------------------

def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (any equal shapes); 0 when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _bessel_std(values: torch.Tensor) -> torch.Tensor:
    """Sample standard deviation (n - 1 denominator) of a 1-D tensor; 0 for fewer than 2 values."""
    if values.numel() < 2:
        return values.new_zeros(())
    return values.std(unbiased=True)


# ---------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------

@dataclass
class Advantages:
    """Output of :func:`group_advantages`.

    Attributes:
        advantages: ``[N]``; 0 for unscorable completions and for groups without signal.
        group_mean: ``[N // G]`` mean of each group's scorable rewards (NaN when none is).
        group_std: ``[N // G]`` Bessel std of each group's scorable rewards (0 below two).
        zero_std_groups: ``[N // G]`` bool: the group carries no learning signal (its scorable
            rewards are all equal, or fewer than two of them are scorable).
        num_unscorable: how many rewards were NaN (``None`` from the reward: a host error).
    """

    advantages: torch.Tensor
    group_mean: torch.Tensor
    group_std: torch.Tensor
    zero_std_groups: torch.Tensor
    num_unscorable: int


def group_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: ScaleRewards = "group",
                     epsilon: float = 1e-4) -> Advantages:
    """Group-normalised advantages of GRPO.

    ``A_i = (r_i - mean(group)) / (std + epsilon)`` where the std is that of the group
    (``scale_rewards="group"``, the GRPO paper), of every scorable reward in the batch
    (``"batch"``), or not applied (``"none"``: ``A_i = r_i - mean(group)``, Dr. GRPO). The mean
    is always the group's. Means and stds are taken over the scorable rewards only: a NaN
    reward (unscorable, a host error) is left out of its group's baseline and gets advantage 0.

    Args:
        rewards: ``[N]`` float, NaN where unscorable; the ``group_size`` completions of a prompt
            are adjacent (``N`` must be a multiple of ``group_size``).
        group_size: ``G``, completions per prompt.
        scale_rewards: ``group`` | ``batch`` | ``none``.
        epsilon: added to the std (TRL and ms-swift: 1e-4).

    Returns:
        :class:`Advantages`.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    if rewards.dim() != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    rewards = rewards.to(torch.float64)  # statistics in double; the result is cast back below
    grouped = rewards.view(-1, group_size)
    scorable = ~torch.isnan(grouped)
    num_groups = grouped.shape[0]
    means = torch.full((num_groups,), float("nan"), dtype=torch.float64)
    stds = torch.zeros(num_groups, dtype=torch.float64)
    for g in range(num_groups):
        values = grouped[g][scorable[g]]
        if values.numel():
            means[g] = values.mean()
            stds[g] = _bessel_std(values)
    zero_std = (scorable.sum(1) < 2) | torch.isclose(stds, torch.zeros_like(stds))
    centred = grouped - means[:, None]
    if scale_rewards == "group":
        centred = centred / (stds[:, None] + epsilon)
    elif scale_rewards == "batch":
        centred = centred / (_bessel_std(rewards[~torch.isnan(rewards)]) + epsilon)
    advantages = torch.nan_to_num(centred, nan=0.0).view(-1).to(torch.float32)
    return Advantages(advantages=advantages, group_mean=means.float(), group_std=stds.float(),
                      zero_std_groups=zero_std, num_unscorable=int((~scorable).sum()))


def groups_without_signal(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[N // G]`` bool: groups whose scorable rewards are all equal (or fewer than two are
    scorable), the groups dynamic sampling regenerates. ``rewards``: ``[N]``, NaN = unscorable."""
    return group_advantages(rewards, group_size, "none").zero_std_groups


# ---------------------------------------------------------------------------------------------
# Log-probabilities and entropy
# ---------------------------------------------------------------------------------------------

def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities of ``token_ids`` under ``softmax(logits / temperature)``.

    The sampler drew the completions from the temperature-scaled distribution, so the
    trainer's log-probs (old, current and reference alike) divide the logits by the same
    temperature (TRL, verl, ms-swift; not Video-R1). Computed one row at a time so the
    ``[B, T, V]`` log-softmax is never materialised in full.

    Args:
        logits: ``[B, T, V]``, the logits that predict each completion token.
        token_ids: ``[B, T]`` long.
        temperature: the sampling temperature (> 0).

    Returns:
        ``[B, T]`` float32.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    out = []
    for row_logits, row_ids in zip(logits, token_ids):
        row = row_logits.float() / temperature
        picked = row.gather(-1, row_ids[:, None]).squeeze(-1)
        out.append(picked - torch.logsumexp(row, dim=-1))
    return torch.stack(out)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy ``[B, T]`` of ``softmax(logits / temperature)`` per position (no gradient needed:
    callers use it for logging). Tokens masked out with ``-inf`` logits contribute 0."""
    out = []
    for row_logits in logits:
        logp = torch.log_softmax(row_logits.float() / temperature, dim=-1)
        probs = logp.exp()
        out.append(-(probs * logp.masked_fill(probs == 0, 0.0)).sum(-1))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# Policy loss pieces
# ---------------------------------------------------------------------------------------------

def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                      epsilon: float = 0.2, epsilon_high: float | None = None,
                      dual_clip: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate per token, with an asymmetric upper bound and an optional dual clip.

    With ``r = exp(logp - old_logp)`` and the sequence's advantage ``A``::

        loss = max(-A * r, -A * clip(r, 1 - epsilon, 1 + epsilon_high))
        dual clip (A < 0 only): loss = min(loss, -A * dual_clip)

    The dual clip (Ye et al. 2020, verl's ``clip_ratio_c``) bounds the loss of a negative-advantage
    token whose ratio has grown far above 1; it must be > 1.

    Args:
        logp: ``[B, T]`` current log-probs (with gradient).
        old_logp: ``[B, T]`` log-probs of the policy that sampled (detached); equal to ``logp``
            detached when there is one update per rollout batch.
        advantages: ``[B]``.
        mask: ``[B, T]`` 1 on tokens that carry loss (only used for the metrics here).
        epsilon: lower clip range (ratio floor ``1 - epsilon``).
        epsilon_high: upper clip range (ceiling ``1 + epsilon_high``); ``None`` = ``epsilon``.
        dual_clip: ``None`` (off) or the constant ``c > 1``.

    Returns:
        per-token loss ``[B, T]`` (unmasked) and metrics over the masked tokens: ``clip_low``
        (fraction with ``A < 0`` and ``r < 1 - epsilon``: the floor is active), ``clip_high``
        (``A > 0`` and ``r > 1 + epsilon_high``), ``clip_dual`` (``A < 0`` and ``r > c``),
        ``ratio_mean``, ``ratio_max``.
    """
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (verl's clip_ratio_c), got {dual_clip}")
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(ratio.dtype)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon_high)
    loss = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual_clip), loss)
    with torch.no_grad():
        r = ratio.detach()
        metrics = {
            "clip_low": float(masked_mean(((adv < 0) & (r < 1.0 - epsilon)).float(), mask)),
            "clip_high": float(masked_mean(((adv > 0) & (r > 1.0 + epsilon_high)).float(), mask)),
            "clip_dual": float(masked_mean(((adv < 0) & (r > dual_clip)).float(), mask))
            if dual_clip is not None else 0.0,
            "ratio_mean": float(masked_mean(r, mask)),
            "ratio_max": float(r[mask.bool()].max()) if bool(mask.any()) else 1.0,
        }
    return loss, metrics


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): ``exp(ref - logp) - (ref - logp) - 1``
    (Schulman 2020; non-negative, unbiased). Shapes ``[B, T]``."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


def aggregate_loss(per_token_loss: torch.Tensor, mask: torch.Tensor, loss_type: LossType, *,
                   max_completion_length: int | None = None, global_num_tokens: float | None = None,
                   num_micro_batches: int = 1, world_size: int = 1) -> torch.Tensor:
    """One micro-batch's scalar loss under each normalisation.

    The training engine then averages gradients over ``num_micro_batches`` accumulation steps
    and ``world_size`` ranks (DeepSpeed and DDP both do), so a micro-batch's loss is written
    such that that mean gives the intended objective:

    - ``grpo``: ``mean_i( sum_t l_it m_it / max(sum_t m_it, 1) )`` per micro-batch: each
      sequence's token mean, then the mean over sequences (the GRPO paper; TRL, ms-swift).
    - ``bnpo``: ``sum l m / max(sum m, 1)`` over the micro-batch's tokens.
    - ``dr_grpo``: ``sum l m / (B * max_completion_length)`` (Dr. GRPO: a constant
      normaliser, no length bias).
    - ``dapo``: ``sum l m / (global_num_tokens / (num_micro_batches * world_size))``:
      after the engine's mean the gradient is that of ``sum l m`` over the whole generation
      batch divided by its token count across all ranks and accumulation steps (DAPO
      token-level mean; TRL's ``num_items_in_batch``).

    Args:
        per_token_loss: ``[B, T]``.
        mask: ``[B, T]`` (1 = counts).
        loss_type: ``grpo`` | ``bnpo`` | ``dr_grpo`` | ``dapo``.
        max_completion_length: required for ``dr_grpo``.
        global_num_tokens: required for ``dapo``: masked tokens of the whole generation batch
            (every rank, every micro-batch of the optimiser step).
        num_micro_batches: accumulation steps per optimiser step (``dapo`` only).
        world_size: data-parallel ranks (``dapo`` only).

    Returns:
        scalar tensor.
    """
    mask = mask.to(per_token_loss.dtype)
    masked = per_token_loss * mask
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        if not max_completion_length:
            raise ValueError("loss_type dr_grpo needs max_completion_length")
        return masked.sum() / (per_token_loss.shape[0] * max_completion_length)
    if loss_type == "dapo":
        if global_num_tokens is None:
            raise ValueError("loss_type dapo needs global_num_tokens (the generation batch's token count)")
        per_slot = max(float(global_num_tokens), 1.0) / (num_micro_batches * world_size)
        return masked.sum() / per_slot
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


# ---------------------------------------------------------------------------------------------
# Sampler / trainer mismatch (a rollout engine that reports its own log-probs, e.g. vLLM)
# ---------------------------------------------------------------------------------------------

def importance_sampling_weights(old_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor,
                                level: Literal["token", "sequence"] = "token",
                                mode: Literal["truncate", "mask"] = "truncate",
                                threshold: float = 3.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Weights that correct for the rollout engine sampling from a slightly different
    distribution than the trainer computes (vLLM kernels, bf16, truncated sampling).

    ``w = exp(old_logp - sampler_logp)`` per token (``level="token"``), or per sequence the
    product over its tokens, ``exp(sum_t (old - sampler) m_t)`` (``"sequence"``, TRL's form;
    ms-swift uses the geometric mean instead). ``mode="truncate"`` caps ``w`` at
    ``threshold`` (truncated IS); ``"mask"`` sets ``w = 0`` where it exceeds the threshold.
    The weights multiply the per-token policy loss (not the KL term) and carry no gradient.

    Args:
        old_logp, sampler_logp: ``[B, T]`` the trainer's log-probs of the sampling policy and
            the engine's own log-probs of the same tokens.
        mask: ``[B, T]``.
        level, mode, threshold: as above (TRL's default cap: 3.0).

    Returns:
        weights ``[B, T]`` (token) or ``[B, 1]`` (sequence), 1 on masked-out tokens, and metrics:
        ``is_weight_mean/min/max`` (before capping, over masked tokens or sequences),
        ``is_capped_fraction``, ``logp_abs_diff_mean``, ``logp_abs_diff_max``.
    """
    if level not in ("token", "sequence") or mode not in ("truncate", "mask"):
        raise ValueError(f"importance sampling level must be token|sequence and mode truncate|mask, "
                         f"got {level!r}, {mode!r}")
    mask_f = mask.to(old_logp.dtype)
    log_ratio = ((old_logp - sampler_logp) * mask_f).detach()
    if level == "token":
        raw = torch.exp(log_ratio)
        valid = mask.bool()
    else:
        raw = torch.exp(log_ratio.sum(-1, keepdim=True))
        valid = mask.bool().any(-1, keepdim=True)
    over = raw > threshold
    weights = torch.clamp(raw, max=threshold) if mode == "truncate" else raw.masked_fill(over, 0.0)
    weights = torch.where(valid, weights, torch.ones_like(weights))
    diff = (old_logp - sampler_logp).abs()[mask.bool()]
    vals = raw[valid]
    metrics = {
        "is_weight_mean": float(vals.mean()) if vals.numel() else 1.0,
        "is_weight_min": float(vals.min()) if vals.numel() else 1.0,
        "is_weight_max": float(vals.max()) if vals.numel() else 1.0,
        "is_capped_fraction": float(over[valid].float().mean()) if vals.numel() else 0.0,
        "logp_abs_diff_mean": float(diff.mean()) if diff.numel() else 0.0,
        "logp_abs_diff_max": float(diff.max()) if diff.numel() else 0.0,
    }
    return weights, metrics


# ---------------------------------------------------------------------------------------------
# Everything together for one micro-batch
# ---------------------------------------------------------------------------------------------

def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                loss_type: LossType = "grpo", epsilon: float = 0.2, epsilon_high: float | None = None,
                dual_clip: float | None = None, beta: float = 0.0, ref_logp: torch.Tensor | None = None,
                is_weights: torch.Tensor | None = None, max_completion_length: int | None = None,
                global_num_tokens: float | None = None, num_micro_batches: int = 1,
                world_size: int = 1) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of one micro-batch: clipped surrogate, times the importance-sampling
    weights when given, plus ``beta`` times the k3 KL to the reference, aggregated by
    ``loss_type`` (see :func:`aggregate_loss` for the normalisations).

    Shapes: ``logp``, ``old_logp``, ``mask``, ``ref_logp`` ``[B, T]``; ``advantages`` ``[B]``;
    ``is_weights`` ``[B, T]`` or ``[B, 1]``. Returns the scalar loss and metrics (those of
    :func:`clipped_surrogate` plus ``kl`` when ``beta > 0``).
    """
    per_token, metrics = clipped_surrogate(logp, old_logp, advantages, mask, epsilon, epsilon_high, dual_clip)
    if is_weights is not None:
        per_token = per_token * is_weights
    if beta:
        if ref_logp is None:
            raise ValueError("beta > 0 needs ref_logp (the reference model's log-probs)")
        kl = kl_k3(logp, ref_logp)
        per_token = per_token + beta * kl
        metrics["kl"] = float(masked_mean(kl.detach(), mask))
    loss = aggregate_loss(per_token, mask, loss_type, max_completion_length=max_completion_length,
                          global_num_tokens=global_num_tokens, num_micro_batches=num_micro_batches,
                          world_size=world_size)
    return loss, metrics


def completion_mask(lengths: torch.Tensor, width: int, truncated: torch.Tensor | None = None,
                    mask_truncated: bool = False) -> torch.Tensor:
    """``[B, width]`` 1 on the first ``lengths[i]`` positions of each row; with
    ``mask_truncated``, rows whose completion hit the length limit without an end-of-turn
    token (``truncated`` ``[B]`` bool) are all zero (DAPO's overlong filtering; their rewards
    still count in their group's statistics)."""
    mask = (torch.arange(width)[None, :] < lengths[:, None]).to(torch.float32)
    if mask_truncated and truncated is not None:
        mask = mask * (~truncated.bool())[:, None].to(mask.dtype)
    return mask
