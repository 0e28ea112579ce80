"""Advantage estimators, reward shaping and adaptive coefficients against numbers worked by hand."""

import math

import pytest
import torch

from alinea.advantages import (
    AdaptiveKLController,
    FixedKLController,
    LagrangeMultiplier,
    best_of_n_kl,
    explained_variance,
    gae,
    grpo_advantages,
    per_token_rewards,
    rloo_advantages,
    whiten,
)

NAN = math.nan


# ---------------------------------------------------------------- whitening


def test_whiten_by_hand():
    # real values 1, 2, 3, 4: mean 2.5; unbiased variance ((1.5^2 + 0.5^2) * 2)/3 = 5/3, std 1.290994
    # -> (x - 2.5)/1.290994 = [-1.161895, -0.387298, 0.387298, 1.161895]; padding -> 0 (even NaN padding)
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, NAN, 100.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    out = whiten(values, mask)
    s = math.sqrt(5 / 3)
    assert out.flatten().tolist() == pytest.approx([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 0.0, 0.0], abs=1e-6)
    real = out[mask.bool()]
    assert float(real.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(real.var(correction=1)) == pytest.approx(1.0, abs=1e-6)  # same (unbiased) definition


def test_whiten_without_shift_keeps_the_mean():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    s = math.sqrt(5 / 3)
    out = whiten(values, mask, shift_mean=False)
    assert out.flatten().tolist() == pytest.approx(
        [2.5 - 1.5 / s, 2.5 - 0.5 / s, 2.5 + 0.5 / s, 2.5 + 1.5 / s, 0.0, 0.0], abs=1e-6
    )


def test_whiten_single_token_is_finite():
    out = whiten(torch.tensor([[3.0, 9.0]]), torch.tensor([[1, 0]]))
    assert out.tolist() == [[0.0, 0.0]]
    kept = whiten(torch.tensor([[3.0, 9.0]]), torch.tensor([[1, 0]]), shift_mean=False)
    assert kept.tolist() == [[3.0, 0.0]]


# ---------------------------------------------------------------- per-token rewards


def test_per_token_rewards_by_hand():
    # r_t = -0.5 * kl_t, plus the score at the last real token:
    # row 1: [-0.05, -0.1, -0.15 + 1] ; row 2 (one real token): [-0.25 - 2, 0, 0]
    scores = torch.tensor([1.0, -2.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 9.0, NAN]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    rewards = per_token_rewards(scores, kl, mask, kl_coef=0.5)
    assert rewards.flatten().tolist() == pytest.approx([-0.05, -0.1, 0.85, -2.25, 0.0, 0.0], abs=1e-6)


def test_per_token_rewards_rejects_empty_rows_and_bad_shapes():
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        per_token_rewards(torch.zeros(2), torch.zeros(2, 2), torch.tensor([[1, 0], [0, 0]]), kl_coef=0.1)
    with pytest.raises(ValueError, match="scores"):
        per_token_rewards(torch.zeros(3), torch.zeros(2, 2), torch.ones(2, 2), kl_coef=0.1)


# ---------------------------------------------------------------- GAE


REWARDS = torch.tensor([[1.0, 0.0, 2.0]])
VALUES = torch.tensor([[0.5, 1.0, 1.5]])
FULL = torch.ones(1, 3)


def test_gae_lambda_one_gamma_one_is_reward_to_go_minus_value():
    # reward-to-go of [1, 0, 2] = [3, 2, 2]; minus V [0.5, 1, 1.5] -> [2.5, 1, 0.5]; returns = reward-to-go
    advantages, returns = gae(REWARDS, VALUES, FULL, gamma=1.0, lam=1.0)
    assert advantages[0].tolist() == pytest.approx([2.5, 1.0, 0.5])
    assert returns[0].tolist() == pytest.approx([3.0, 2.0, 2.0])


def test_gae_lambda_zero_is_one_step_td():
    # gamma 0.9: A_t = r_t + 0.9 V_{t+1} - V_t = [1 + 0.9 - 0.5, 0 + 1.35 - 1, 2 + 0 - 1.5] = [1.4, 0.35, 0.5]
    advantages, returns = gae(REWARDS, VALUES, FULL, gamma=0.9, lam=0.0)
    assert advantages[0].tolist() == pytest.approx([1.4, 0.35, 0.5])
    assert returns[0].tolist() == pytest.approx([1.9, 1.35, 2.0])


def test_gae_general_by_hand():
    # gamma 0.9, lam 0.5 (gamma lam = 0.45), deltas [1.4, 0.35, 0.5]:
    # A_2 = 0.5; A_1 = 0.35 + 0.45 * 0.5 = 0.575; A_0 = 1.4 + 0.45 * 0.575 = 1.65875; returns = A + V
    advantages, returns = gae(REWARDS, VALUES, FULL, gamma=0.9, lam=0.5)
    assert advantages[0].tolist() == pytest.approx([1.65875, 0.575, 0.5])
    assert returns[0].tolist() == pytest.approx([2.15875, 1.575, 2.0])


def test_gae_rows_of_different_lengths():
    # Row 2 ends after two tokens: the value after its last real token is 0, whatever the padding holds.
    # gamma = lam = 1: reward-to-go [1 + 0, 0] = [1, 0] minus V [0.5, 1] -> [0.5, -1]; padding 0.
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, NAN]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 50.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert advantages.flatten().tolist() == pytest.approx([2.5, 1.0, 0.5, 0.5, -1.0, 0.0])
    assert returns.flatten().tolist() == pytest.approx([3.0, 2.0, 2.0, 1.0, 0.0, 0.0])
    # and each row equals GAE of that row alone, cut to its length (here with the default lam 0.95)
    batch_advantages, _ = gae(rewards, values, mask)
    alone, _ = gae(rewards[1:, :2], values[1:, :2], torch.ones(1, 2))
    assert batch_advantages[1, :2].tolist() == pytest.approx(alone[0].tolist())


# ---------------------------------------------------------------- RLOO and GRPO


def test_rloo_by_hand():
    # k = 2: (R1 - R2, R2 - R1) = (2, -2)
    assert rloo_advantages(torch.tensor([[3.0, 1.0]])).tolist() == [[2.0, -2.0]]
    # k = 3, [1, 2, 6]: 1 - (2+6)/2 = -3, 2 - (1+6)/2 = -1.5, 6 - (1+2)/2 = 4.5
    out = rloo_advantages(torch.tensor([[1.0, 2.0, 6.0], [5.0, 5.0, 5.0]]))
    assert out.flatten().tolist() == pytest.approx([-3.0, -1.5, 4.5, 0.0, 0.0, 0.0])


def test_rloo_and_grpo_need_groups():
    for fn in (rloo_advantages, grpo_advantages):
        with pytest.raises(ValueError, match="k >= 2"):
            fn(torch.ones(4, 1))
        with pytest.raises(ValueError, match="n_prompts, k"):
            fn(torch.ones(4))


def test_grpo_by_hand():
    # [1, 2, 3, 6]: mean 3, deviations [-2, -1, 0, 3], squares sum 14; sample std sqrt(14/3) = 2.160247
    # -> [-0.925820, -0.462910, 0, 1.388730] (eps 0 here)
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    std = math.sqrt(14 / 3)
    assert grpo_advantages(rewards, eps=0.0)[0].tolist() == pytest.approx([-2 / std, -1 / std, 0.0, 3 / std], abs=1e-6)
    # population std sqrt(14/4) = 1.870829
    pop = math.sqrt(14 / 4)
    assert grpo_advantages(rewards, eps=0.0, unbiased=False)[0].tolist() == pytest.approx(
        [-2 / pop, -1 / pop, 0.0, 3 / pop], abs=1e-6
    )
    assert grpo_advantages(rewards, scale=False)[0].tolist() == pytest.approx([-2.0, -1.0, 0.0, 3.0])
    # k = 2, [1, 0]: sample std 1/sqrt 2 -> +-0.5 * sqrt 2; default eps 1e-4 -> 0.5 / (0.707107 + 0.0001)
    assert grpo_advantages(torch.tensor([[1.0, 0.0]]))[0].tolist() == pytest.approx(
        [0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4)], abs=1e-6
    )


def test_grpo_equal_rewards_give_zeros():
    out = grpo_advantages(torch.tensor([[0.7, 0.7, 0.7], [1.0, 0.0, 1.0]]))
    assert out[0].tolist() == [0.0, 0.0, 0.0]
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- diagnostics


def test_explained_variance_by_hand():
    returns = torch.tensor([[1.0, 2.0, 3.0], [4.0, NAN, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full((2, 3), 2.5), returns, mask) == pytest.approx(0.0)  # the mean return
    # V = [1, 2, 3, 5]: residual [0, 0, 0, -1], population var 1/4 - 1/16 = 0.1875; Var R = 1.25 -> 1 - 0.15 = 0.85
    values = torch.tensor([[1.0, 2.0, 3.0], [5.0, 7.0, 7.0]])
    assert explained_variance(values, returns, mask) == pytest.approx(0.85)


def test_explained_variance_is_nan_when_returns_are_constant_or_absent():
    assert math.isnan(explained_variance(torch.zeros(1, 3), torch.ones(1, 3), torch.ones(1, 3)))
    assert math.isnan(explained_variance(torch.zeros(1, 3), torch.ones(1, 3), torch.zeros(1, 3)))


def test_best_of_n_kl():
    # log n - (n-1)/n: n=1 -> 0; n=2 -> ln 2 - 0.5 = 0.193147; n=4 -> ln 4 - 0.75 = 0.636294
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(4) == pytest.approx(0.636294, abs=1e-6)
    with pytest.raises(ValueError):
        best_of_n_kl(0)


# ---------------------------------------------------------------- coefficients


def test_fixed_kl_controller_never_moves():
    controller = FixedKLController(0.05)
    controller.update(current_kl=100.0, n_steps=1000)
    assert controller.value == 0.05
    restored = FixedKLController(0.3)
    restored.load_state_dict(controller.state_dict())
    assert restored.value == 0.05


def test_adaptive_kl_controller_by_hand():
    # beta 0.1, target 6, horizon 10,000, n_steps 1,000 (n_steps/horizon = 0.1)
    def after(kl):
        controller = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
        controller.update(kl, n_steps=1_000)
        return controller.value

    assert after(6.6) == pytest.approx(0.1 * (1 + 0.1 * 0.1))  # e = 0.1 -> 0.101
    assert after(9.0) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # e = 0.5, clipped to 0.2 -> 0.102
    assert after(600.0) == pytest.approx(0.102)  # still clipped
    assert after(5.4) == pytest.approx(0.1 * (1 - 0.1 * 0.1))  # e = -0.1 -> 0.099
    assert after(0.0) == pytest.approx(0.1 * (1 - 0.2 * 0.1))  # e = -1, clipped to -0.2 -> 0.098
    assert after(6.0) == pytest.approx(0.1)


def test_adaptive_kl_controller_resumes_with_the_same_coefficient():
    controller = AdaptiveKLController(0.1, target=6.0, horizon=100)
    for _ in range(3):
        controller.update(12.0, n_steps=10)  # e = 0.2 each time: 0.1 * 1.02^3 = 0.1061208
    assert controller.value == pytest.approx(0.1061208)
    resumed = AdaptiveKLController(0.1, target=6.0, horizon=100)
    resumed.load_state_dict(controller.state_dict())
    assert resumed.value == controller.value
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=100)


def test_lagrange_multiplier_projected_by_hand():
    # lr 0.05: cost 3 over limit 1 -> 1 + 0.05 * 2 = 1.1; cost 0 under limit 1 -> 1.1 - 0.05 = 1.05
    multiplier = LagrangeMultiplier(init=1.0, lr=0.05)
    assert multiplier.update(mean_cost=3.0, limit=1.0) == pytest.approx(1.1)
    assert multiplier.update(mean_cost=0.0, limit=1.0) == pytest.approx(1.05)
    # from 0.02, one step of -0.05 would reach -0.03: projected to 0, and it stays there while the cost is low
    low = LagrangeMultiplier(init=0.02, lr=0.05)
    assert low.update(mean_cost=0.0, limit=1.0) == 0.0
    assert low.update(mean_cost=0.0, limit=1.0) == 0.0
    assert not low.saturated


def test_lagrange_multiplier_saturates_at_max_value_and_resumes():
    multiplier = LagrangeMultiplier(init=9.0, lr=1.0, max_value=10.0)
    assert not multiplier.saturated
    assert multiplier.update(mean_cost=5.0, limit=1.0) == 10.0  # 9 + 4 = 13, capped at 10
    assert multiplier.saturated
    assert multiplier.update(mean_cost=0.5, limit=1.0) == pytest.approx(9.5)  # falls again: 10 - 0.5
    assert not multiplier.saturated
    resumed = LagrangeMultiplier(init=1.0, lr=1.0, max_value=10.0)
    resumed.load_state_dict(multiplier.state_dict())
    assert resumed.value == pytest.approx(9.5)


def test_lagrange_multiplier_log_rule_by_hand():
    # log lambda <- log lambda + lr * lambda * (cost - limit): from 1, lr 0.05, violation 2 -> e^0.1 = 1.105171
    multiplier = LagrangeMultiplier(init=1.0, lr=0.05, rule="log")
    assert multiplier.update(mean_cost=3.0, limit=1.0) == pytest.approx(math.exp(0.1))
    down = LagrangeMultiplier(init=1.0, lr=0.05, rule="log")
    assert down.update(mean_cost=0.0, limit=1.0) == pytest.approx(math.exp(-0.05))  # 0.951229
    for _ in range(1000):
        down.update(mean_cost=0.0, limit=1.0)
    assert 0.0 < down.value < 0.05  # falls, never reaches 0
    big = LagrangeMultiplier(init=50.0, lr=1.0, max_value=100.0, rule="log")
    assert big.update(mean_cost=1e6, limit=0.0) == 100.0 and big.saturated  # no overflow, capped
    with pytest.raises(ValueError):
        LagrangeMultiplier(init=0.0, rule="log")
    with pytest.raises(ValueError):
        LagrangeMultiplier(rule="pid")
