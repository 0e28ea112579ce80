"""Reward-model losses against numbers worked by hand, gradient signs, invariants between models, and stability."""

import math

import pytest
import torch

from alinea.losses import (
    bradley_terry_loss,
    calibration_bins,
    davidson_nll,
    expected_calibration_error,
    kwise_ranking_loss,
    ordinal_rating_loss,
    plackett_luce_loss,
    rao_kupper_nll,
    rating_regression_loss,
    strength_margin,
    thumb_loss,
)

# Hand values used below (e = 2.718281828...):
LN2 = math.log(2.0)  # 0.693147...
SOFTPLUS_M2 = math.log(1 + math.exp(-2.0))  # ln(1 + e^-2) = 0.126928...
SOFTPLUS_M1 = math.log(1 + math.exp(-1.0))  # ln(1 + e^-1) = 0.313262...
SOFTPLUS_P1 = math.log(1 + math.exp(1.0))  # ln(1 + e)    = 1.313262...


def grad_of(loss_fn, *tensors):
    """Gradients of loss_fn(*tensors).sum() with respect to each tensor."""
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    loss_fn(*leaves).sum().backward()
    return [leaf.grad for leaf in leaves]


# ---------------------------------------------------------------- Bradley-Terry and margins


def test_bradley_terry_by_hand():
    # -log sigmoid(2 - 0) = ln(1 + e^-2); equal rewards -> ln 2; wrong order (0 vs 2) -> ln(1 + e^2)
    loss = bradley_terry_loss(torch.tensor([2.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 2.0]))
    assert loss.shape == (3,)
    assert loss.tolist() == pytest.approx([SOFTPLUS_M2, LN2, math.log(1 + math.exp(2.0))], abs=1e-6)


def test_bradley_terry_margin_by_hand_and_monotone():
    # gap 2, margin 1: -log sigmoid(1) = ln(1 + e^-1); per-example margins broadcast
    chosen, rejected = torch.tensor([2.0, 2.0]), torch.tensor([0.0, 0.0])
    loss = bradley_terry_loss(chosen, rejected, margin=torch.tensor([0.0, 1.0]))
    assert loss.tolist() == pytest.approx([SOFTPLUS_M2, SOFTPLUS_M1], abs=1e-6)
    assert float(bradley_terry_loss(chosen[:1], rejected[:1], margin=1.0)) == pytest.approx(
        SOFTPLUS_M1, abs=1e-6
    )
    losses = [float(bradley_terry_loss(chosen[:1], rejected[:1], margin=m)) for m in (0.0, 0.5, 1.0, 3.0)]
    assert losses == sorted(losses) and len(set(losses)) == 4


def test_bradley_terry_gradient_signs():
    d_chosen, d_rejected = grad_of(bradley_terry_loss, torch.tensor([0.5, -1.0]), torch.tensor([0.0, 2.0]))
    assert (d_chosen < 0).all() and (d_rejected > 0).all()
    # d/d chosen = -sigmoid(-(c - r)) = -sigmoid(-0.5) for the first example
    assert float(d_chosen[0]) == pytest.approx(-1 / (1 + math.exp(0.5)), abs=1e-6)


def test_strength_margin_llama2_levels():
    margins = strength_margin(torch.tensor([0, 1, 2, 3, 3]))
    assert margins.dtype == torch.float32
    assert margins.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 1.0])
    assert strength_margin(torch.tensor([2, 0]), margins=(0.0, 1.0, 2.0, 3.0)).tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="0..3"):
        strength_margin(torch.tensor([4]))
    with pytest.raises(TypeError):
        strength_margin(torch.tensor([1.0]))


# ---------------------------------------------------------------- ties: Rao-Kupper and Davidson


def test_rao_kupper_by_hand():
    # r_a = 1, r_b = 0, t = 1: P(a>b) = sigmoid(0) = 1/2, P(b>a) = sigmoid(-2) = 1/(1 + e^2) = 0.119203,
    # P(tie) = 1 - 1/2 - 0.119203 = 0.380797 = tanh(1)/2 (also Rao-Kupper's (th^2-1) p_a p_b / ((p_a + th p_b)(th p_a + p_b))
    # with th = e, p_a = e, p_b = 1: (e^2 - 1) / (2 (e^2 + 1)) = tanh(1) / 2).
    r_a, r_b = torch.ones(3), torch.zeros(3)
    nll = rao_kupper_nll(r_a, r_b, torch.tensor([0, 1, 2]), threshold=1.0)
    assert nll.tolist() == pytest.approx(
        [LN2, math.log(1 + math.exp(2.0)), -math.log(math.tanh(1.0) / 2)], abs=1e-6
    )


def test_rao_kupper_outcome_probabilities_sum_to_one():
    generator = torch.Generator().manual_seed(0)
    r_a, r_b = torch.randn(50, generator=generator) * 3, torch.randn(50, generator=generator) * 3
    threshold = torch.rand(50, generator=generator) * 2  # per-example thresholds broadcast too
    total = sum(torch.exp(-rao_kupper_nll(r_a, r_b, torch.full((50,), o), threshold)) for o in range(3))
    assert torch.allclose(total, torch.ones(50), atol=1e-5)


def test_rao_kupper_zero_threshold_is_bradley_terry_and_tie_is_impossible():
    # t = 0: P(tie) = 0 exactly, so a tie's NLL is +inf (documented; use t > 0 when ties occur). Wins are Bradley-Terry
    # and their gradients stay finite (the tie term's zero gap does not leak NaN into the rewards).
    r_a, r_b = torch.tensor([2.0, 0.5]), torch.tensor([0.0, 1.0])
    assert torch.isinf(rao_kupper_nll(r_a[:1], r_b[:1], torch.tensor([2]), 0.0)).all()
    wins = rao_kupper_nll(r_a, r_b, torch.tensor([0, 1]), 0.0)
    assert torch.allclose(
        wins, bradley_terry_loss(torch.stack([r_a[0], r_b[1]]), torch.stack([r_b[0], r_a[1]]))
    )
    d_a, d_b = grad_of(lambda a, b: rao_kupper_nll(a, b, torch.tensor([0, 1]), 0.0), r_a, r_b)
    assert torch.isfinite(d_a).all() and torch.isfinite(d_b).all()


def test_rao_kupper_gradients_win_and_tie():
    # a preferred: push r_a up, r_b down. Tie: pull the rewards together (the higher one down, the lower one up).
    r_a, r_b = torch.tensor([0.0, 1.5]), torch.tensor([0.0, -0.5])
    d_a, d_b = grad_of(lambda a, b: rao_kupper_nll(a, b, torch.tensor([0, 2]), 0.5), r_a, r_b)
    assert d_a[0] < 0 and d_b[0] > 0
    assert d_a[1] > 0 and d_b[1] < 0
    # A tie at equal rewards is the most likely: zero gradient there.
    d_a, d_b = grad_of(
        lambda a, b: rao_kupper_nll(a, b, torch.tensor([2]), 0.5), torch.tensor([0.3]), torch.tensor([0.3])
    )
    assert float(d_a) == pytest.approx(0.0, abs=1e-6) and float(d_b) == pytest.approx(0.0, abs=1e-6)


def test_rao_kupper_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        rao_kupper_nll(torch.zeros(1), torch.zeros(1), torch.tensor([0]), -0.1)
    with pytest.raises(ValueError, match="tie"):
        rao_kupper_nll(torch.zeros(1), torch.zeros(1), torch.tensor([3]), 0.1)


def test_davidson_by_hand():
    # nu = 1, r_a = ln 4, r_b = 0: p_a = 4, p_b = 1, sqrt(p_a p_b) = 2, Z = 7 -> P = 4/7, 1/7, 2/7.
    # Equal rewards with nu = 1: each outcome 1/3.
    r_a, r_b = torch.full((3,), math.log(4.0)), torch.zeros(3)
    nll = davidson_nll(r_a, r_b, torch.tensor([0, 1, 2]), nu=1.0)
    assert nll.tolist() == pytest.approx([-math.log(4 / 7), -math.log(1 / 7), -math.log(2 / 7)], abs=1e-6)
    equal = davidson_nll(torch.zeros(3), torch.zeros(3), torch.tensor([0, 1, 2]), nu=torch.tensor(1.0))
    assert equal.tolist() == pytest.approx([math.log(3.0)] * 3, abs=1e-6)


def test_davidson_nu_zero_is_bradley_terry():
    r_a, r_b = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([0.0, 0.5, 0.3])
    assert torch.allclose(davidson_nll(r_a, r_b, torch.tensor([0, 0, 0]), 0.0), bradley_terry_loss(r_a, r_b))
    assert torch.allclose(davidson_nll(r_a, r_b, torch.tensor([1, 1, 1]), 0.0), bradley_terry_loss(r_b, r_a))
    assert torch.isinf(davidson_nll(r_a, r_b, torch.tensor([2, 2, 2]), 0.0)).all()  # a tie is impossible


def test_davidson_probabilities_sum_to_one_and_tie_pulls_together():
    generator = torch.Generator().manual_seed(1)
    r_a, r_b = torch.randn(20, generator=generator) * 3, torch.randn(20, generator=generator) * 3
    total = sum(torch.exp(-davidson_nll(r_a, r_b, torch.full((20,), o), 0.7)) for o in range(3))
    assert torch.allclose(total, torch.ones(20), atol=1e-5)
    d_a, d_b = grad_of(
        lambda a, b: davidson_nll(a, b, torch.tensor([2]), 0.7), torch.tensor([1.0]), torch.tensor([0.0])
    )
    assert d_a > 0 and d_b < 0


# ---------------------------------------------------------------- rankings: K-wise pairs and Plackett-Luce


def test_kwise_with_two_responses_is_bradley_terry():
    rewards = torch.tensor([[2.0, 0.0], [-1.0, 0.5]])
    ranks = torch.tensor([[1, 2], [1, 2]])
    valid = torch.ones(2, 2, dtype=torch.bool)
    assert torch.allclose(
        kwise_ranking_loss(rewards, ranks, valid), bradley_terry_loss(rewards[:, 0], rewards[:, 1])
    )
    # Ranks are what matter, not positions: the second response ranked best
    swapped = kwise_ranking_loss(rewards, torch.tensor([[2, 1], [2, 1]]), valid)
    assert torch.allclose(swapped, bradley_terry_loss(rewards[:, 1], rewards[:, 0]))


def test_kwise_three_responses_by_hand():
    # r = (2, 1, 0) ranked 1, 2, 3: pairs (1,2): ln(1+e^-1), (1,3): ln(1+e^-2), (2,3): ln(1+e^-1); mean of C(3,2) = 3
    loss = kwise_ranking_loss(
        torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.bool)
    )
    assert float(loss) == pytest.approx((2 * SOFTPLUS_M1 + SOFTPLUS_M2) / 3, abs=1e-6)  # 0.251150


def test_kwise_skips_tied_pair():
    # ranks (1, 2, 2): the pair of tied responses is skipped -> mean of (ln(1+e^-1) + ln(1+e^-2)) over 2 pairs
    loss = kwise_ranking_loss(
        torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[1, 2, 2]]), torch.ones(1, 3, dtype=torch.bool)
    )
    assert float(loss) == pytest.approx((SOFTPLUS_M1 + SOFTPLUS_M2) / 2, abs=1e-6)  # 0.220095


def test_kwise_ignores_padding_and_handles_examples_without_pairs():
    # Row 0: the K=3 hand example padded to K=4 with a NaN reward; row 1: one valid response; row 2: all tied.
    rewards = torch.tensor([[2.0, float("nan"), 1.0, 0.0], [5.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 0.0]])
    ranks = torch.tensor([[1, 1, 2, 3], [1, 2, 3, 4], [1, 1, 1, 0]])
    valid = torch.tensor([[True, False, True, True], [True, False, False, False], [True, True, True, False]])
    loss = kwise_ranking_loss(rewards, ranks, valid)
    assert loss.tolist() == pytest.approx([(2 * SOFTPLUS_M1 + SOFTPLUS_M2) / 3, 0.0, 0.0], abs=1e-6)
    (d_rewards,) = grad_of(lambda r: kwise_ranking_loss(r, ranks, valid), rewards)
    assert torch.isfinite(d_rewards).all()
    assert (d_rewards[~valid] == 0).all()
    assert d_rewards[0, 0] < 0 and d_rewards[0, 3] > 0  # best pushed up, worst pushed down


def test_plackett_luce_with_two_responses_is_bradley_terry():
    rewards = torch.tensor([[2.0, 0.0], [-1.0, 0.5], [0.0, 3.0]])
    ranks = torch.tensor([[1, 2], [1, 2], [2, 1]])
    valid = torch.ones(3, 2, dtype=torch.bool)
    expected = bradley_terry_loss(torch.tensor([2.0, -1.0, 3.0]), torch.tensor([0.0, 0.5, 0.0]))
    assert torch.allclose(plackett_luce_loss(rewards, ranks, valid), expected)


def test_plackett_luce_three_responses_by_hand():
    # r = (2, 1, 0) ranked 1, 2, 3:
    # -log P = -(2 - ln(e^2 + e + 1)) - (1 - ln(e + 1)) - (0 - ln 1) = 2.407606 - 2 + 1.313262 - 1 = 0.720868
    expected = math.log(math.e**2 + math.e + 1) - 2 + math.log(math.e + 1) - 1
    valid = torch.ones(1, 3, dtype=torch.bool)
    loss = plackett_luce_loss(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[1, 2, 3]]), valid)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # The same ranking given in another order of positions
    shuffled = plackett_luce_loss(torch.tensor([[0.0, 2.0, 1.0]]), torch.tensor([[3, 1, 2]]), valid)
    assert float(shuffled) == pytest.approx(expected, abs=1e-6)


def test_plackett_luce_ties_breslow():
    # ranks (1, 2, 2), r = (2, 1, 0): item 1: 2 - ln(e^2 + e + 1); each tied item's risk set is the tied pair:
    # 1 - ln(e + 1) and 0 - ln(e + 1). Loss = 2.407606 - 2 + 2 * 1.313262 - 1 = 2.034129
    expected = math.log(math.e**2 + math.e + 1) - 2 + 2 * math.log(math.e + 1) - 1
    valid = torch.ones(1, 3, dtype=torch.bool)
    loss = plackett_luce_loss(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[1, 2, 2]]), valid)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # All tied with equal rewards: each term -ln K, so K ln K; the gradient pulls unequal rewards together.
    all_tied = plackett_luce_loss(torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.long), valid)
    assert float(all_tied) == pytest.approx(3 * math.log(3.0), abs=1e-6)
    (d_rewards,) = grad_of(
        lambda r: plackett_luce_loss(r, torch.ones(1, 2, dtype=torch.long), valid[:, :2]),
        torch.tensor([[1.0, 0.0]]),
    )
    assert d_rewards[0, 0] > 0 and d_rewards[0, 1] < 0


def test_plackett_luce_ignores_padding():
    rewards = torch.tensor([[2.0, 1e30, 1.0, float("nan"), 0.0], [4.0, float("nan"), 0.0, 0.0, 0.0]])
    ranks = torch.tensor([[1, 1, 2, 0, 3], [1, 0, 0, 0, 0]])
    valid = torch.tensor([[True, False, True, False, True], [True, False, False, False, False]])
    expected = math.log(math.e**2 + math.e + 1) - 2 + math.log(math.e + 1) - 1
    assert plackett_luce_loss(rewards, ranks, valid).tolist() == pytest.approx([expected, 0.0], abs=1e-6)
    (d_rewards,) = grad_of(lambda r: plackett_luce_loss(r, ranks, valid), rewards)
    assert torch.isfinite(d_rewards).all() and (d_rewards[~valid] == 0).all()
    assert d_rewards[0, 0] < 0 and d_rewards[0, 4] > 0


# ---------------------------------------------------------------- ratings and thumbs


def test_rating_regression_by_hand():
    loss = rating_regression_loss(torch.tensor([3.0, -1.0]), torch.tensor([1.0, -1.0]))
    assert loss.tolist() == [2.0, 0.0]  # 0.5 * 2^2, 0


def test_ordinal_rating_by_hand():
    # thresholds (-1, 1), reward 0: P(0) = sigmoid(-1) = 0.268941, P(<=1) = sigmoid(1) = 0.731059,
    # P(1) = 0.731059 - 0.268941 = 0.462117 (= tanh(1/2)), P(2) = 1 - sigmoid(1) = 0.268941
    thresholds = torch.tensor([-1.0, 1.0])
    nll = ordinal_rating_loss(torch.zeros(3), torch.tensor([0, 1, 2]), thresholds)
    assert nll.tolist() == pytest.approx([SOFTPLUS_P1, -math.log(math.tanh(0.5)), SOFTPLUS_P1], abs=1e-6)


def test_ordinal_probabilities_sum_to_one_and_gradient_direction():
    thresholds = torch.tensor([-2.0, -0.5, 0.3, 2.5])  # five levels
    rewards = torch.tensor([-4.0, -1.0, 0.0, 0.7, 3.0, 9.0])
    total = sum(
        torch.exp(-ordinal_rating_loss(rewards, torch.full((6,), level), thresholds)) for level in range(5)
    )
    assert torch.allclose(total, torch.ones(6), atol=1e-5)
    (d_top,) = grad_of(lambda r: ordinal_rating_loss(r, torch.full((6,), 4), thresholds), rewards)
    (d_bottom,) = grad_of(
        lambda r: ordinal_rating_loss(r, torch.zeros(6, dtype=torch.long), thresholds), rewards
    )
    assert (d_top < 0).all() and (d_bottom > 0).all()  # a top rating pushes the reward up, a bottom one down


def test_ordinal_rejects_bad_thresholds_and_levels():
    with pytest.raises(ValueError, match="increasing"):
        ordinal_rating_loss(torch.zeros(1), torch.tensor([0]), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="levels"):
        ordinal_rating_loss(torch.zeros(1), torch.tensor([3]), torch.tensor([0.0, 1.0]))


def test_thumb_loss_by_hand():
    # reward 1: up -> -log sigmoid(1) = ln(1 + e^-1); down -> -log sigmoid(-1) = ln(1 + e); bias 1, up -> ln 2
    loss = thumb_loss(torch.tensor([1.0, 1.0]), torch.tensor([True, False]))
    assert loss.tolist() == pytest.approx([SOFTPLUS_M1, SOFTPLUS_P1], abs=1e-6)
    assert float(thumb_loss(torch.tensor([1.0]), torch.tensor([True]), bias=1.0)) == pytest.approx(
        LN2, abs=1e-6
    )
    (d_reward,) = grad_of(lambda r: thumb_loss(r, torch.tensor([True, False])), torch.zeros(2))
    assert d_reward[0] < 0 and d_reward[1] > 0


# ---------------------------------------------------------------- calibration


def test_expected_calibration_error_by_hand():
    # Two bins [0, .5) and [.5, 1]: bin 0 holds 0.2 (wrong), 0.4 (right): conf 0.3, acc 0.5 -> 2/4 * 0.2 = 0.1;
    # bin 1 holds 0.6, 0.9 (both right): conf 0.75, acc 1 -> 2/4 * 0.25 = 0.125. ECE = 0.225.
    confidence = torch.tensor([0.2, 0.4, 0.6, 0.9])
    correct = torch.tensor([False, True, True, True])
    ece = expected_calibration_error(confidence, correct, n_bins=2)
    assert ece.dim() == 0
    assert float(ece) == pytest.approx(0.225, abs=1e-6)
    mean_confidence, accuracy, count = calibration_bins(confidence, correct, n_bins=2)
    assert mean_confidence.tolist() == pytest.approx([0.3, 0.75])
    assert accuracy.tolist() == pytest.approx([0.5, 1.0])
    assert count.tolist() == [2, 2]


def test_calibration_edges():
    # 1.0 lands in the last bin; empty bins give NaN and 0; empty input -> ECE 0; perfect calibration -> 0.
    mean_confidence, accuracy, count = calibration_bins(
        torch.tensor([1.0, 0.0]), torch.tensor([True, False]), n_bins=4
    )
    assert count.tolist() == [1, 0, 0, 1]
    assert mean_confidence[0] == 0.0 and mean_confidence[3] == 1.0
    assert torch.isnan(mean_confidence[1:3]).all() and torch.isnan(accuracy[1:3]).all()
    assert float(expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([True, False]))) == 0.0
    empty = expected_calibration_error(torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    assert empty.dim() == 0 and float(empty) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(torch.tensor([1.5]), torch.tensor([True]))


# ---------------------------------------------------------------- stability


def test_all_losses_finite_at_extreme_rewards():
    big = torch.tensor([1e4, -1e4])
    small = -big
    up = torch.tensor([True, False])
    outcome_losses = {
        "bradley_terry": lambda a, b: bradley_terry_loss(a, b, margin=1.0),
        "rao_kupper_win": lambda a, b: rao_kupper_nll(a, b, torch.tensor([1, 0]), 1.0),
        "rao_kupper_tie": lambda a, b: rao_kupper_nll(a, b, torch.tensor([2, 2]), 1.0),
        "davidson_win": lambda a, b: davidson_nll(a, b, torch.tensor([1, 0]), 0.5),
        "davidson_tie": lambda a, b: davidson_nll(a, b, torch.tensor([2, 2]), 0.5),
        "kwise": lambda a, b: kwise_ranking_loss(
            torch.stack([b, a], -1), torch.tensor([[1, 2]] * 2), torch.ones(2, 2, dtype=torch.bool)
        ),
        "plackett_luce": lambda a, b: plackett_luce_loss(
            torch.stack([b, a], -1), torch.tensor([[1, 2]] * 2), torch.ones(2, 2, dtype=torch.bool)
        ),
        "ordinal": lambda a, b: ordinal_rating_loss(a, torch.tensor([0, 2]), torch.tensor([-1.0, 1.0])),
        "ordinal_middle": lambda a, b: ordinal_rating_loss(
            a, torch.tensor([1, 1]), torch.tensor([-1.0, 1.0])
        ),
        "thumb": lambda a, b: thumb_loss(a, ~up),
        "regression": lambda a, b: rating_regression_loss(a, b),
    }
    for name, loss_fn in outcome_losses.items():
        loss = loss_fn(big, small)
        assert torch.isfinite(loss).all(), name
        assert (loss >= 0).all(), name  # negative log-likelihoods (and squared error) are never negative
        for grad in grad_of(loss_fn, big, small):
            assert grad is None or torch.isfinite(grad).all(), (
                name
            )  # None: the loss does not use that argument
    # Bradley-Terry in the wrong order: exactly the gap (2e4 + margin), no overflow
    assert float(bradley_terry_loss(torch.tensor([-1e4]), torch.tensor([1e4]))) == pytest.approx(2e4)
    # and in the right order: 0, not NaN
    assert float(bradley_terry_loss(torch.tensor([1e4]), torch.tensor([-1e4]))) == 0.0
