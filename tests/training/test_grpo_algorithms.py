"""GRPO's pure tensor functions (``training.grpo.core_algos``) against hand-computed values and
against a naive per-sample Python loop written independently of the vectorised code."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from training.grpo import core_algos as ca

# ---------------------------------------------------------------------------------------------
# Naive references: plain Python over lists, one sample / token at a time
# ---------------------------------------------------------------------------------------------


def naive_advantages(rewards: list[float | None], group_size: int, scale: str, eps: float = 1e-4) -> list[float]:
    groups = [rewards[i:i + group_size] for i in range(0, len(rewards), group_size)]
    scorable_all = [r for r in rewards if r is not None]
    batch_std = statistics.stdev(scorable_all) if len(scorable_all) > 1 else 0.0
    out = []
    for group in groups:
        values = [r for r in group if r is not None]
        mean = sum(values) / len(values) if values else 0.0
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        for r in group:
            if r is None:
                out.append(0.0)
            elif scale == "group":
                out.append((r - mean) / (std + eps))
            elif scale == "batch":
                out.append((r - mean) / (batch_std + eps))
            else:
                out.append(r - mean)
    return out


def naive_token_loss(logp: float, old: float, adv: float, eps_low: float, eps_high: float,
                     dual: float | None) -> float:
    ratio = math.exp(logp - old)
    loss = max(-adv * ratio, -adv * min(max(ratio, 1 - eps_low), 1 + eps_high))
    if dual is not None and adv < 0:
        loss = min(loss, -adv * dual)
    return loss


def naive_loss(logp, old, adv, mask, loss_type, eps_low=0.2, eps_high=0.2, dual=None, beta=0.0, ref=None,
               max_len=None, global_tokens=None, micro=1, world=1) -> float:
    rows = []
    for i in range(len(logp)):
        row = []
        for t in range(len(logp[i])):
            value = naive_token_loss(logp[i][t], old[i][t], adv[i], eps_low, eps_high, dual)
            if beta:
                d = ref[i][t] - logp[i][t]
                value += beta * (math.exp(d) - d - 1)
            row.append(value * mask[i][t])
        rows.append(row)
    if loss_type == "grpo":
        return sum(sum(r) / max(sum(m), 1) for r, m in zip(rows, mask)) / len(rows)
    total = sum(sum(r) for r in rows)
    if loss_type == "bnpo":
        return total / max(sum(sum(m) for m in mask), 1)
    if loss_type == "dr_grpo":
        return total / (len(rows) * max_len)
    return total / (global_tokens / (micro * world))


# ---------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------

def test_group_advantages_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    out = ca.group_advantages(rewards, 4, "group")
    std = math.sqrt(1 / 3)  # Bessel: sum of squares 4 * 0.25 over n - 1 = 3
    want = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.5 / (std + 1e-4), 0, 0, 0, 0]
    assert out.advantages.tolist() == pytest.approx(want, rel=1e-6)
    assert out.group_std.tolist() == pytest.approx([std, 0.0], rel=1e-6)
    assert out.zero_std_groups.tolist() == [False, True]
    assert out.num_unscorable == 0


def test_unscorable_rewards_are_left_out_and_get_zero_advantage():
    nan = float("nan")
    rewards = torch.tensor([1.0, nan, 0.0, 0.5, nan, nan, nan, nan])
    out = ca.group_advantages(rewards, 4, "group")
    # group 0 scorable [1, 0, 0.5]: mean 0.5, Bessel std 0.5; group 1: nothing scorable
    assert out.advantages.tolist() == pytest.approx([0.5 / 0.5001, 0.0, -0.5 / 0.5001, 0.0, 0, 0, 0, 0], rel=1e-6)
    assert out.num_unscorable == 5
    assert out.zero_std_groups.tolist() == [False, True]
    assert math.isnan(float(out.group_mean[1]))


def test_scale_rewards_batch_and_none_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 3.0, 3.0])
    batch_std = statistics.stdev([1.0, 0.0, 3.0, 3.0])
    got = ca.group_advantages(rewards, 2, "batch").advantages.tolist()
    assert got == pytest.approx([0.5 / (batch_std + 1e-4), -0.5 / (batch_std + 1e-4), 0.0, 0.0], rel=1e-6)
    assert ca.group_advantages(rewards, 2, "none").advantages.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_match_the_naive_loop(scale):
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(24, generator=gen).tolist()
    rewards: list[float | None] = [round(v * 3) / 3 for v in values]
    for i in (2, 7, 8, 9, 10, 11):  # one group entirely unscorable, a few others partly
        rewards[i] = None
    tensor = torch.tensor([float("nan") if r is None else r for r in rewards])
    got = ca.group_advantages(tensor, 6, scale).advantages.tolist()
    assert got == pytest.approx(naive_advantages(rewards, 6, scale), rel=1e-5, abs=1e-6)


def test_bad_shapes_and_modes_raise():
    with pytest.raises(ValueError, match="divisible"):
        ca.group_advantages(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="scale_rewards"):
        ca.group_advantages(torch.zeros(4), 2, "std")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss_type"):
        ca.aggregate_loss(torch.zeros(1, 2), torch.ones(1, 2), "sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dual_clip"):
        ca.clipped_surrogate(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), dual_clip=0.9)


def test_groups_without_signal():
    nan = float("nan")
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, nan, 1.0, nan, nan])
    assert ca.groups_without_signal(rewards, 2).tolist() == [True, False, True, True]


# ---------------------------------------------------------------------------------------------
# Clipped surrogate: every branch
# ---------------------------------------------------------------------------------------------

def _one(ratio: float, adv: float, **kw) -> tuple[float, float, dict]:
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, metrics = ca.clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([adv]), torch.ones(1, 1), **kw)
    loss.sum().backward()
    return float(loss.detach()), float(logp.grad), metrics


def test_positive_advantage_above_the_ceiling_is_clipped():
    loss, grad, m = _one(1.5, 2.0)
    assert loss == pytest.approx(-2.0 * 1.2)
    assert grad == 0.0  # a clipped token gives no gradient
    assert m["clip_high"] == 1.0 and m["clip_low"] == 0.0


def test_positive_advantage_below_the_floor_is_not_clipped():
    loss, grad, m = _one(0.5, 2.0)
    assert loss == pytest.approx(-2.0 * 0.5)
    assert grad == pytest.approx(-2.0 * 0.5)  # d(-A r)/d logp = -A r
    assert m["clip_low"] == 0.0 and m["clip_high"] == 0.0


def test_negative_advantage_below_the_floor_is_clipped():
    loss, grad, m = _one(0.5, -1.0)
    assert loss == pytest.approx(0.8)
    assert grad == 0.0
    assert m["clip_low"] == 1.0


def test_negative_advantage_above_the_ceiling_is_not_clipped_without_dual_clip():
    loss, grad, m = _one(4.0, -1.0)
    assert loss == pytest.approx(4.0)
    assert grad == pytest.approx(4.0)
    assert m["clip_dual"] == 0.0


def test_dual_clip_bounds_negative_advantage_with_large_ratio():
    loss, grad, m = _one(4.0, -1.0, dual_clip=3.0)
    assert loss == pytest.approx(3.0)
    assert grad == 0.0
    assert m["clip_dual"] == 1.0
    loss, grad, m = _one(1.5, -1.0, dual_clip=3.0)  # below c: unchanged
    assert loss == pytest.approx(1.5) and grad == pytest.approx(1.5) and m["clip_dual"] == 0.0
    loss, _, _ = _one(4.0, 1.0, dual_clip=3.0)  # positive advantages are never dual-clipped
    assert loss == pytest.approx(-1.2)


def test_epsilon_high_raises_only_the_ceiling():
    assert _one(1.25, 1.0, epsilon_high=0.28)[0] == pytest.approx(-1.25)
    assert _one(1.30, 1.0, epsilon_high=0.28)[0] == pytest.approx(-1.28)
    assert _one(0.70, -1.0, epsilon_high=0.28)[0] == pytest.approx(0.8)  # floor still 1 - epsilon


def test_ratio_one_gives_the_policy_gradient():
    # One update per rollout batch: old = logp.detach(), the loss is -A and its gradient -A.
    logp = torch.tensor([[-0.3, -1.2]], requires_grad=True)
    loss, _ = ca.clipped_surrogate(logp, logp.detach(), torch.tensor([0.7]), torch.ones(1, 2))
    loss.sum().backward()
    assert loss.tolist()[0] == pytest.approx([-0.7, -0.7])
    assert logp.grad.tolist()[0] == pytest.approx([-0.7, -0.7])


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_aggregations_hand_computed():
    assert float(ca.aggregate_loss(LOSS, MASK, "grpo")) == pytest.approx((1.5 + 4.0) / 2)
    assert float(ca.aggregate_loss(LOSS, MASK, "bnpo")) == pytest.approx(7 / 3)
    assert float(ca.aggregate_loss(LOSS, MASK, "dr_grpo", max_completion_length=4)) == pytest.approx(7 / 8)
    dapo = ca.aggregate_loss(LOSS, MASK, "dapo", global_num_tokens=6, num_micro_batches=2, world_size=1)
    assert float(dapo) == pytest.approx(7 / 3)


def test_fully_masked_sequence_counts_as_zero_in_grpo():
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # e.g. a masked truncated completion
    assert float(ca.aggregate_loss(LOSS, mask, "grpo")) == pytest.approx(1.5 / 2)


def test_dapo_normaliser_is_global_across_ranks_and_accumulation_steps():
    gen = torch.Generator().manual_seed(1)
    # 2 ranks x 3 micro-batches of 2 completions, uneven lengths
    losses = [torch.randn(2, 5, generator=gen) for _ in range(6)]
    masks = [(torch.rand(2, 5, generator=gen) > 0.4).float() for _ in range(6)]
    total_tokens = float(sum(m.sum() for m in masks))
    per_micro = [ca.aggregate_loss(x, m, "dapo", global_num_tokens=total_tokens, num_micro_batches=3, world_size=2)
                 for x, m in zip(losses, masks)]
    engine_mean = sum(per_micro) / 6  # what gradient averaging over steps and ranks computes
    want = sum(float((x * m).sum()) for x, m in zip(losses, masks)) / total_tokens
    assert float(engine_mean) == pytest.approx(want, rel=1e-6)
    # bnpo, by contrast, normalises each micro-batch by its own tokens
    bnpo = sum(ca.aggregate_loss(x, m, "bnpo") for x, m in zip(losses, masks)) / 6
    assert float(bnpo) != pytest.approx(want, rel=1e-3)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("options", [{}, {"dual": 3.0, "eps_high": 0.28}, {"beta": 0.04}])
def test_policy_loss_matches_the_naive_loop(loss_type, options):
    gen = torch.Generator().manual_seed(2)
    logp = (torch.randn(4, 6, generator=gen) * 0.3 - 1.0)
    old = logp + torch.randn(4, 6, generator=gen) * 0.4  # ratios well outside [0.8, 1.2] too
    ref = logp + torch.randn(4, 6, generator=gen) * 0.2
    adv = torch.tensor([1.3, -0.7, -2.0, 0.4])
    mask = torch.tensor([[1.0] * 6, [1.0] * 3 + [0.0] * 3, [1.0] * 5 + [0.0], [1.0] + [0.0] * 5])
    beta = options.get("beta", 0.0)
    loss, metrics = ca.policy_loss(logp, old, adv, mask, loss_type=loss_type, epsilon=0.2,
                                   epsilon_high=options.get("eps_high"), dual_clip=options.get("dual"),
                                   beta=beta, ref_logp=ref if beta else None, max_completion_length=8,
                                   global_num_tokens=30.0, num_micro_batches=2, world_size=2)
    want = naive_loss(logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), loss_type,
                      eps_high=options.get("eps_high", 0.2), dual=options.get("dual"), beta=beta,
                      ref=ref.tolist(), max_len=8, global_tokens=30.0, micro=2, world=2)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert ("kl" in metrics) == bool(beta)


def test_kl_k3_hand_computed():
    logp = torch.tensor([[math.log(0.5), math.log(0.2)]])
    ref = torch.tensor([[math.log(0.5), math.log(0.4)]])
    got = ca.kl_k3(logp, ref).tolist()[0]
    assert got[0] == pytest.approx(0.0)
    assert got[1] == pytest.approx(2.0 - math.log(2.0) - 1.0)  # exp(log 2) - log 2 - 1
    assert bool((ca.kl_k3(torch.randn(3, 4), torch.randn(3, 4)) >= 0).all())


# ---------------------------------------------------------------------------------------------
# Log-probs, entropy, masks
# ---------------------------------------------------------------------------------------------

def test_token_logprobs_divide_logits_by_the_temperature():
    logits = torch.tensor([[[0.0, 2 * math.log(3.0)]]])  # at T=2: softmax -> [1/4, 3/4]
    ids = torch.tensor([[1]])
    assert float(ca.token_logprobs(logits, ids, temperature=2.0)) == pytest.approx(math.log(0.75))
    assert float(ca.token_logprobs(logits, ids, temperature=1.0)) == pytest.approx(math.log(0.9))
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 11, generator=gen)
    ids = torch.randint(0, 11, (3, 5), generator=gen)
    want = torch.log_softmax(logits / 0.7, -1).gather(-1, ids[..., None]).squeeze(-1)
    assert torch.allclose(ca.token_logprobs(logits, ids, 0.7), want, atol=1e-6)
    with pytest.raises(ValueError):
        ca.token_logprobs(logits, ids, 0.0)


def test_token_entropy_hand_computed():
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])
    got = ca.token_entropy(logits).tolist()[0]
    assert got[0] == pytest.approx(math.log(2.0))
    assert got[1] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    masked = torch.tensor([[[0.0, 0.0, float("-inf")]]])  # a suppressed token: no NaN, no contribution
    assert ca.token_entropy(masked).tolist()[0] == pytest.approx([math.log(2.0)])
    assert float(ca.token_logprobs(masked, torch.tensor([[1]]))) == pytest.approx(math.log(0.5))


def test_completion_mask_and_truncation():
    lengths, truncated = torch.tensor([3, 1, 4]), torch.tensor([False, False, True])
    assert ca.completion_mask(lengths, 4).tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert ca.completion_mask(lengths, 4, truncated, mask_truncated=True).tolist() == \
        [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


# ---------------------------------------------------------------------------------------------
# Importance sampling
# ---------------------------------------------------------------------------------------------

def test_token_importance_weights_truncate_and_mask():
    sampler = torch.zeros(1, 4)
    old = torch.tensor([[0.0, math.log(4.0), math.log(0.5), 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is padding
    w, m = ca.importance_sampling_weights(old, sampler, mask, "token", "truncate", 3.0)
    assert w.tolist()[0] == pytest.approx([1.0, 3.0, 0.5, 1.0])
    assert m["is_weight_max"] == pytest.approx(4.0) and m["is_capped_fraction"] == pytest.approx(1 / 3)
    assert m["logp_abs_diff_max"] == pytest.approx(math.log(4.0))
    w, _ = ca.importance_sampling_weights(old, sampler, mask, "token", "mask", 3.0)
    assert w.tolist()[0] == pytest.approx([1.0, 0.0, 0.5, 1.0])


def test_sequence_importance_weights_are_products_over_tokens():
    sampler = torch.zeros(2, 3)
    old = torch.log(torch.tensor([[1.0, 4.0, 0.5], [2.0, 3.0, 9.0]]))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    w, m = ca.importance_sampling_weights(old, sampler, mask, "sequence", "truncate", 3.0)
    assert w.shape == (2, 1)
    assert w.flatten().tolist() == pytest.approx([2.0, 3.0])  # 1*4*0.5; 2*3 = 6 capped (9 is padding)
    w, _ = ca.importance_sampling_weights(old, sampler, mask, "sequence", "mask", 3.0)
    assert w.flatten().tolist() == pytest.approx([2.0, 0.0])
    assert m["is_weight_max"] == pytest.approx(6.0)
