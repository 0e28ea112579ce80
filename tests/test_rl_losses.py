"""RL losses (KL estimators, log-probs, entropy, PPO, value, DPO/IPO, GRPO) against numbers worked by hand."""

import math

import pytest
import torch

from alinea.losses import (
    IGNORE_INDEX,
    dpo_loss,
    entropy_from_logits,
    grpo_policy_loss,
    kl_penalty,
    ppo_policy_loss,
    ppo_value_loss,
    token_logprobs,
    token_logprobs_and_entropy,
)

E = math.e
LN2 = math.log(2.0)


def leaf(values):
    return torch.tensor(values, dtype=torch.float32, requires_grad=True)


# ---------------------------------------------------------------- KL estimators


def test_kl_estimators_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]])
    ref_logprobs = torch.tensor([[-2.0, -1.0, -0.5]])
    # log r = ref - logp = [-1, 1, 0]
    # k1 = logp - ref = [1, -1, 0]                      (negative where the reference is more likely)
    # k2 = (log r)^2 / 2 = [0.5, 0.5, 0]
    # k3 = e^{log r} - 1 - log r = [e^-1 - 1 + 1, e - 1 - 1, 0] = [0.367879, 0.718282, 0]
    assert kl_penalty(logprobs, ref_logprobs)[0].tolist() == pytest.approx([1.0, -1.0, 0.0])
    assert kl_penalty(logprobs, ref_logprobs, "k1")[0].tolist() == pytest.approx([1.0, -1.0, 0.0])
    assert kl_penalty(logprobs, ref_logprobs, "k2")[0].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert kl_penalty(logprobs, ref_logprobs, "k3")[0].tolist() == pytest.approx([1 / E, E - 2, 0.0], abs=1e-6)


def test_kl_estimators_zero_when_equal_and_k3_never_negative():
    generator = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(4, 7, generator=generator) * 5
    ref_logprobs = -torch.rand(4, 7, generator=generator) * 5
    for kind in ("k1", "k2", "k3"):
        assert kl_penalty(logprobs, logprobs, kind).abs().max() == 0
    assert (kl_penalty(logprobs, ref_logprobs, "k3") >= 0).all()
    assert (kl_penalty(logprobs, ref_logprobs, "k1") < 0).any()  # k1 can be negative on single samples


def test_k1_and_k3_are_unbiased_exact_expectation():
    # Over a 3-token vocabulary, E_{v ~ pi}[k(v)] = sum_v pi_v k(v) must equal KL(pi || ref) = sum pi log(pi/ref)
    # for k1 and k3 (k3: sum pi (ref/pi - 1) = sum ref - sum pi = 0, leaving the k1 part); k2 is biased.
    pi = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    ref = torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64)
    exact = float((pi * (pi / ref).log()).sum())  # 0.5 ln 2.5 + 0.3 ln 1.5 + 0.2 ln(1/3) = 0.360137
    assert exact == pytest.approx(0.5 * math.log(2.5) + 0.3 * math.log(1.5) + 0.2 * math.log(1 / 3))
    for kind in ("k1", "k3"):
        estimate = float((pi * kl_penalty(pi.log(), ref.log(), kind)).sum())
        assert estimate == pytest.approx(exact, abs=1e-12)
    assert float((pi * kl_penalty(pi.log(), ref.log(), "k2")).sum()) != pytest.approx(exact, abs=1e-3)


def test_kl_unknown_kind():
    with pytest.raises(ValueError, match="k4"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


# ---------------------------------------------------------------- log-probs and entropy


def test_token_logprobs_by_hand_with_temperature_and_padding():
    # logits [0, ln 3] -> softmax [1/4, 3/4]; at temperature 2 -> [0, ln 3 / 2] -> [1/(1+sqrt 3), sqrt 3/(1+sqrt 3)]
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)], [5.0, 7.0]]])  # (1, 3, 2)
    targets = torch.tensor([[1, 0, IGNORE_INDEX]])
    assert token_logprobs(logits, targets)[0].tolist() == pytest.approx(
        [math.log(0.75), math.log(0.25), 0.0], abs=1e-6
    )
    s3 = math.sqrt(3.0)
    assert token_logprobs(logits, targets, temperature=2.0)[0].tolist() == pytest.approx(
        [math.log(s3 / (1 + s3)), math.log(1 / (1 + s3)), 0.0], abs=1e-6
    )


def test_token_logprobs_matches_log_softmax_in_float32_for_bf16_and_has_gradient():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 11, generator=generator).to(torch.bfloat16)
    targets = torch.randint(0, 11, (3, 5), generator=generator)
    out = token_logprobs(logits, targets, temperature=0.7)
    assert out.dtype == torch.float32 and out.shape == (3, 5)
    expected = torch.log_softmax(logits.float() / 0.7, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(out, expected, atol=1e-6)

    float_logits = logits.float().requires_grad_(True)
    token_logprobs(float_logits, targets).sum().backward()
    # d log p_target / d logit_v = 1[v = target] - p_v: each position's gradient sums to 0 and is positive at the target
    assert torch.allclose(float_logits.grad.sum(-1), torch.zeros(3, 5), atol=1e-6)
    assert (float_logits.grad.gather(-1, targets.unsqueeze(-1)) > 0).all()


def _token_logprobs_by_autograd(logits, targets, temperature):
    """The formula, row by row, as autograd sees it: the reference for `token_logprobs`' hand-written backward."""
    rows = []
    for row_logits, row_targets in zip(logits, targets.clamp(min=0), strict=True):
        scaled = row_logits.float() / temperature if temperature != 1.0 else row_logits.float()
        rows.append(scaled.gather(-1, row_targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(scaled, dim=-1))
    return torch.stack(rows).masked_fill(targets < 0, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_values_and_gradients_equal_autograd_bit_for_bit(dtype, temperature):
    torch.manual_seed(5)
    logits = (torch.randn(3, 70, 50) * 4).to(dtype)
    logits = torch.cat([logits] * 30, dim=-1)  # V = 1500: blocks of 174 rows, so 210 rows take two
    targets = torch.randint(0, 1500, (3, 70))
    targets[1, 60:] = IGNORE_INDEX
    weights = torch.randn(3, 70)
    results = []
    for function in (_token_logprobs_by_autograd, token_logprobs):
        leaf = logits.clone().requires_grad_()
        out = function(leaf, targets, temperature)
        (out * weights).sum().backward()
        results.append((out, leaf.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert results[1][1].dtype == dtype
    assert torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_and_entropy_in_one_pass(dtype, temperature):
    torch.manual_seed(6)
    logits = (torch.randn(3, 70, 1500) * 3).to(dtype)  # 210 rows: two blocks of rows
    logits[2, 5, 7] = float("-inf")  # a blocked token: its row is recomputed, the entropy stays finite
    targets = torch.randint(0, 1500, (3, 70))
    targets[1, 60:] = IGNORE_INDEX
    logprobs, entropy = token_logprobs_and_entropy(logits, targets, temperature)
    assert torch.equal(logprobs, token_logprobs(logits, targets, temperature))
    assert torch.isfinite(entropy).all()
    torch.testing.assert_close(entropy, entropy_from_logits(logits, temperature), atol=1e-4, rtol=1e-5)


def test_token_logprobs_errors():
    with pytest.raises(ValueError, match="batch, T"):
        token_logprobs(torch.zeros(1, 3, 4), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.long), temperature=0.0)


def test_entropy_by_hand():
    # uniform over 4 -> ln 4; [0, ln 3] -> p = [1/4, 3/4] -> -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.562335;
    # [0, 0, -inf] -> ln 2 (the impossible token adds 0, not NaN); [0, 2 ln 3] at temperature 2 -> [0, ln 3]
    h_two = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -1e9, -1e9], [0.0, 0.0, -math.inf, -1e9]]])
    assert entropy_from_logits(logits)[0].tolist() == pytest.approx([math.log(4.0), h_two, LN2], abs=1e-6)
    hot = torch.tensor([[[0.0, 2 * math.log(3.0)]]])
    assert float(entropy_from_logits(hot, temperature=2.0)) == pytest.approx(h_two, abs=1e-6)


def test_entropy_gradient_is_finite_with_minus_inf_logits():
    logits = torch.tensor([[[0.0, 1.0, -math.inf]]], requires_grad=True)
    entropy_from_logits(logits).sum().backward()
    assert torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------- PPO policy loss


def test_ppo_at_ratio_one_is_minus_mean_advantage():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 0.0, 0.0]])
    advantages = torch.tensor([[1.0, -2.0, 3.0], [0.5, 100.0, 100.0]])  # padded advantages must not count
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    out = ppo_policy_loss(logprobs, logprobs.clone(), advantages, mask)
    assert out.loss.item() == pytest.approx(-(1 - 2 + 3 + 0.5) / 4)  # -0.625
    assert float(out.clipfrac) == 0 and float(out.approx_kl) == 0 and float(out.ratio_mean) == 1


def test_ppo_clips_only_in_the_direction_that_helps():
    # eps 0.2, ratios [1.5, 1.5, 0.5, 0.5], advantages [+1, -1, -1, +1]
    #   t1: A>0, r=1.5: max(-1.5, -1.2) = -1.2  clipped (no incentive to go higher)
    #   t2: A<0, r=1.5: max( 1.5,  1.2) =  1.5  NOT clipped (the move was harmful: keep the gradient)
    #   t3: A<0, r=0.5: max( 0.5,  0.8) =  0.8  clipped
    #   t4: A>0, r=0.5: max(-0.5, -0.8) = -0.5  NOT clipped
    # loss = (-1.2 + 1.5 + 0.8 - 0.5)/4 = 0.15; clipfrac = 2/4
    # approx_kl (k3) = mean((r-1) - ln r) = (2(0.5 - ln 1.5) + 2(-0.5 + ln 2))/4 = (0.189070 + 0.386294)/4 = 0.143841
    old = torch.zeros(1, 4)
    logprobs = leaf([[math.log(1.5), math.log(1.5), math.log(0.5), math.log(0.5)]])
    advantages = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
    out = ppo_policy_loss(logprobs, old, advantages, torch.ones(1, 4), clip_eps=0.2)
    assert out.loss.item() == pytest.approx(0.15, abs=1e-6)
    assert float(out.clipfrac) == pytest.approx(0.5)
    assert float(out.approx_kl) == pytest.approx((2 * (0.5 - math.log(1.5)) + 2 * (math.log(2) - 0.5)) / 4, abs=1e-6)
    assert float(out.ratio_mean) == pytest.approx(1.0)
    assert not out.clipfrac.requires_grad and not out.approx_kl.requires_grad
    out.loss.backward()
    # d/dlogp of -A r /4 = -A r/4: t2: 1.5/4 = 0.375, t4: -0.5/4 = -0.125; clipped tokens get 0
    assert logprobs.grad[0].tolist() == pytest.approx([0.0, 0.375, 0.0, -0.125], abs=1e-6)


def test_ppo_inside_the_clip_range_nothing_is_clipped():
    # r = 1.1, A = 2: loss = -2.2, gradient -A r = -2.2
    logprobs = leaf([[math.log(1.1)]])
    out = ppo_policy_loss(logprobs, torch.zeros(1, 1), torch.tensor([[2.0]]), torch.ones(1, 1))
    assert out.loss.item() == pytest.approx(-2.2) and float(out.clipfrac) == 0
    out.loss.backward()
    assert float(logprobs.grad) == pytest.approx(-2.2)


def test_ppo_gradient_step_lowers_a_negative_advantage_token():
    logprobs = leaf([[-1.0, -1.0]])
    old = logprobs.detach().clone()
    advantages = torch.tensor([[-1.0, 2.0]])
    ppo_policy_loss(logprobs, old, advantages, torch.ones(1, 2)).loss.backward()
    # d loss / d logp = -A r / n = [+0.5, -1.0]: descent lowers the A<0 token and raises the A>0 one
    assert logprobs.grad[0].tolist() == pytest.approx([0.5, -1.0])
    stepped = logprobs.detach() - 0.1 * logprobs.grad
    assert stepped[0, 0] < -1.0 < stepped[0, 1]


def test_ppo_sequence_advantages_broadcast_and_padding_cannot_leak_nan():
    logprobs = leaf([[-1.0, -0.5, math.nan], [-2.0, math.nan, math.nan]])
    old = torch.tensor([[-1.2, -0.4, math.nan], [-2.0, -math.inf, 3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    per_sequence = ppo_policy_loss(logprobs, old, torch.tensor([1.0, -1.0]), mask)
    per_token = ppo_policy_loss(logprobs, old, torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]), mask)
    assert torch.isfinite(per_sequence.loss) and per_sequence.loss.item() == pytest.approx(per_token.loss.item())
    per_sequence.loss.backward()
    assert torch.isfinite(logprobs.grad).all() and logprobs.grad[mask == 0].abs().sum() == 0


def test_ppo_rejects_bad_clip():
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), clip_eps=1.5)


# ---------------------------------------------------------------- value loss


def test_value_loss_by_hand():
    # eps 0.2, V_old 0.5 everywhere -> clip(V) lies in [0.3, 0.7]
    #   t1: V=1.0, R=2: unclipped (1-2)^2 = 1, clipped (0.7-2)^2 = 1.69 -> 1.69 (clipped: no gradient)
    #   t2: V=1.0, R=0: unclipped 1, clipped 0.7^2 = 0.49 -> 1 (unclipped)
    #   t3: V=0.6, R=2: inside the range, both (0.6-2)^2 = 1.96, not counted as clipped
    #   t4: padding
    # loss = 0.5 * (1.69 + 1 + 1.96)/3 = 0.775; clipfrac 1/3
    values = leaf([[1.0, 1.0, 0.6, 7.0]])
    old_values = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.0, 2.0, math.nan]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, clipfrac = ppo_value_loss(values, old_values, returns, mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(0.775, abs=1e-6)
    assert float(clipfrac) == pytest.approx(1 / 3)
    loss.backward()
    # d/dV 0.5 (V-R)^2 / 3 = (V-R)/3: t1 0 (clipped), t2 1/3, t3 -1.4/3, padding 0
    assert values.grad[0].tolist() == pytest.approx([0.0, 1 / 3, -1.4 / 3, 0.0], abs=1e-6)


def test_value_loss_without_movement_is_half_mse():
    values = torch.tensor([[1.0, 2.0]])
    loss, clipfrac = ppo_value_loss(values, values, torch.tensor([[0.0, 0.0]]), torch.ones(1, 2))
    assert loss.item() == pytest.approx(0.5 * (1 + 4) / 2) and float(clipfrac) == 0


# ---------------------------------------------------------------- DPO and IPO


def test_dpo_at_zero_margin_is_log_two_for_any_smoothing():
    logps = torch.tensor([-3.0, -7.0])
    for eps in (0.0, 0.1, 0.3):
        losses, chosen, rejected = dpo_loss(logps, logps - 1, logps, logps - 1, beta=0.1, label_smoothing=eps)
        assert losses.tolist() == pytest.approx([LN2, LN2])
        assert chosen.tolist() == [0.0, 0.0] and rejected.tolist() == [0.0, 0.0]


def test_dpo_by_hand_with_label_smoothing_and_gradient():
    # chosen log-ratio -1 - (-2) = 1, rejected -3 - (-2) = -1, h = 2, beta 0.5 -> beta h = 1
    # eps 0: -log sigmoid(1) = ln(1 + e^-1) = 0.313262
    # eps 0.1: 0.9 ln(1 + e^-1) + 0.1 ln(1 + e) = 0.281936 + 0.131326 = 0.413262
    chosen, rejected = leaf([-1.0]), leaf([-3.0])
    ref_chosen, ref_rejected = torch.tensor([-2.0]), torch.tensor([-2.0])
    losses, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    assert float(chosen_rewards) == pytest.approx(0.5) and float(rejected_rewards) == pytest.approx(-0.5)
    assert not chosen_rewards.requires_grad
    smoothed, _, _ = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5, label_smoothing=0.1)
    assert smoothed.item() == pytest.approx(0.9 * math.log(1 + math.exp(-1)) + 0.1 * math.log(1 + E), abs=1e-6)
    losses.sum().backward()
    # d/d chosen = -beta sigmoid(-beta h) = -0.5 * 0.268941 = -0.134471: descent raises the chosen log-prob
    assert float(chosen.grad) == pytest.approx(-0.5 / (1 + E), abs=1e-6)
    assert float(rejected.grad) == pytest.approx(0.5 / (1 + E), abs=1e-6)


def test_ipo_is_minimal_at_h_equal_one_over_two_beta():
    # beta 0.5 -> target h = 1/(2 * 0.5) = 1; losses (h - 1)^2 for h = 0, 1, 2 -> 1, 0, 1
    chosen = leaf([0.0, 1.0, 2.0])
    zeros = torch.zeros(3)
    losses, _, _ = dpo_loss(chosen, zeros, zeros, zeros, beta=0.5, kind="ipo")
    assert losses.tolist() == pytest.approx([1.0, 0.0, 1.0])
    losses.sum().backward()
    assert chosen.grad.tolist() == pytest.approx([-2.0, 0.0, 2.0])  # 2 (h - 1)


def test_dpo_rejects_bad_arguments():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="hinge"):
        dpo_loss(x, x, x, x, kind="hinge")
    for eps in (-0.1, 0.5):
        with pytest.raises(ValueError, match="label_smoothing"):
            dpo_loss(x, x, x, x, label_smoothing=eps)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="ipo"):
        dpo_loss(x, x, x, x, kind="ipo", label_smoothing=0.1)


# ---------------------------------------------------------------- GRPO


def test_grpo_averages_per_sequence_then_over_sequences():
    # At ratio 1 and pi = pi_ref each token costs -A_i. Sequence 1 has 3 tokens (A = 1), sequence 2 one (A = -3).
    # Per sequence then over sequences (DeepSeekMath eq. 3): (-1 + 3)/2 = 1.
    # (A token-level mean would give (3 * -1 + 3)/4 = 0, so the reduction is really per sequence.)
    # A third, empty row is left out of the mean.
    logprobs = torch.full((3, 3), -1.0)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    out = grpo_policy_loss(logprobs, logprobs, logprobs, torch.tensor([1.0, -3.0, 50.0]), mask)
    assert out.loss.item() == pytest.approx(1.0)
    assert float(out.clipfrac) == 0 and float(out.approx_kl) == 0 and float(out.ref_kl) == 0
    token_level = ppo_policy_loss(logprobs, logprobs, torch.tensor([1.0, -3.0, 50.0]), mask)
    assert token_level.loss.item() == pytest.approx(0.0)


def test_grpo_kl_term_by_hand_and_its_gradient_pulls_towards_ref():
    # A = 0 isolates the KL term. logp = -1; sequence 1 ref = [-1, -2, 0] -> log r = ref - logp = [0, -1, 1]
    # k3 = e^{log r} - 1 - log r = [0, e^-1, e - 2] = [0, 0.367879, 0.718282]; sequence mean 0.362054
    # sequence 2 (one token, ref = logp) -> 0. kl_coef 0.1: loss = 0.1 * (0.362054 + 0)/2 = 0.018103
    # ref_kl metric (token level over 4 real tokens) = (0.367879 + 0.718282)/4 = 0.271540
    logprobs = leaf([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, math.nan, math.nan]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    out = grpo_policy_loss(logprobs, logprobs.detach(), ref, torch.zeros(2), mask, kl_coef=0.1)
    seq1 = (0 + 1 / E + (E - 2)) / 3
    assert out.loss.item() == pytest.approx(0.1 * seq1 / 2, abs=1e-6)
    assert float(out.ref_kl) == pytest.approx((1 / E + E - 2) / 4, abs=1e-6)
    out.loss.backward()
    # d k3 / d logp = 1 - e^{ref - logp}; weight kl_coef / (3 tokens * 2 sequences) = 0.1/6
    # token 2 (ref below): (1 - e^-1) * 0.1/6 > 0 -> descent lowers logp; token 3 (ref above): (1 - e) * 0.1/6 < 0
    expected = [0.0, (1 - 1 / E) * 0.1 / 6, (1 - E) * 0.1 / 6, 0.0, 0.0, 0.0]
    assert logprobs.grad.flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_grpo_clips_like_ppo():
    # One sequence, A = +1, ratio 1.5 -> clipped at 1.2: loss -1.2, clipfrac 1, no gradient (pi = pi_ref -> k3 = 0)
    logprobs = leaf([[math.log(1.5)]])
    out = grpo_policy_loss(logprobs, torch.zeros(1, 1), logprobs.detach(), torch.tensor([1.0]), torch.ones(1, 1))
    assert out.loss.item() == pytest.approx(-1.2) and float(out.clipfrac) == 1.0
    out.loss.backward()
    assert float(logprobs.grad) == pytest.approx(0.0)
