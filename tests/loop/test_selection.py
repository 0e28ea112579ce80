"""Active selection: disagreement of reward-model heads per pair, the top pairs picked, random reproducible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alinea.loop.selection import pair_disagreement, score_pairs, select_pairs


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_bt_variance_by_hand():
    # Two heads, three candidates. Pair (0, 1): margins 1 and -1 -> p = sigmoid(1), sigmoid(-1).
    scores = [[1.0, 0.0, 0.0],
              [0.0, 1.0, 0.0]]
    values = pair_disagreement(scores, "bt_variance")
    p1, p2 = sigmoid(1.0), sigmoid(-1.0)
    mean = (p1 + p2) / 2  # = 0.5
    expected = ((p1 - mean) ** 2 + (p2 - mean) ** 2) / 2  # population variance over the two heads
    assert values[0, 1] == pytest.approx(expected)
    assert values[1, 0] == pytest.approx(expected)
    # Pair (0, 2): margins 1 and 0 -> p = sigmoid(1) and 0.5.
    q = (sigmoid(1.0) - 0.5) / 2
    assert values[0, 2] == pytest.approx(q * q)
    assert values[0, 0] == 0.0
    assert expected == pytest.approx(0.2310585786 ** 2, rel=1e-6)  # sigmoid(1) - 0.5 = 0.2310585786


def test_margin_std_and_uncertainty_by_hand():
    scores = [[2.0, 0.0],
              [0.0, 0.0],
              [1.0, 0.0]]  # margins of (0, 1) over heads: 2, 0, 1
    assert pair_disagreement(scores, "margin_std")[0, 1] == pytest.approx(math.sqrt(2 / 3))
    # mean margin 1 -> p = sigmoid(1); 1 - |2p - 1|
    assert pair_disagreement(scores, "uncertainty")[0, 1] == pytest.approx(1 - abs(2 * sigmoid(1.0) - 1))
    # A single head (1-D scores) has no variance but does have uncertainty.
    assert pair_disagreement([0.3, 0.3], "bt_variance")[0, 1] == 0.0
    assert pair_disagreement([0.3, 0.3], "uncertainty")[0, 1] == pytest.approx(1.0)


def test_heads_that_agree_have_no_disagreement():
    scores = np.array([[0.1, 0.7, -0.4]] * 4)
    assert np.allclose(pair_disagreement(scores, "bt_variance"), 0.0)
    assert np.allclose(pair_disagreement(scores, "margin_std"), 0.0)


def test_the_highest_disagreement_pairs_are_picked():
    agree = [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]  # prompt 0: heads agree everywhere
    split = [[0.0, 3.0, 0.0], [3.0, 0.0, 0.0]]  # prompt 1: heads disagree about (0, 1) (margins -3 and 3)
    mild = [[0.0, 0.5, 0.0], [0.0, -0.5, 0.0]]  # prompt 2: heads disagree a little about (0, 1) and (1, 2)
    chosen = select_pairs([agree, split, mild], 2)
    assert [(c.prompt_index, c.i, c.j) for c in chosen] == [(1, 0, 1), (2, 0, 1)]
    assert chosen[0].disagreement > chosen[1].disagreement > 0
    # Every pair's disagreement, ranked by hand, agrees with the order select_pairs uses.
    ranked = sorted(score_pairs([agree, split, mild]), key=lambda c: -c.disagreement)
    assert (ranked[0].prompt_index, ranked[0].i, ranked[0].j) == (1, 0, 1)
    assert ranked[0].disagreement == pytest.approx(np.var([sigmoid(-3.0), sigmoid(3.0)]))
    assert all(c.disagreement == 0.0 for c in ranked if c.prompt_index == 0)


def test_per_prompt_limit():
    split = [[0.0, 3.0, 0.0], [3.0, 0.0, 0.0]]  # pairs (0,1) 0.2, (0,2) and (1,2) smaller but > 0
    calm = [[0.0, 0.1], [0.0, 0.0]]
    one = select_pairs([split, calm], 3, per_prompt=1)
    assert [(c.prompt_index, c.i, c.j) for c in one] == [(0, 0, 1), (1, 0, 1)]  # only 2 prompts -> 2 pairs
    two = select_pairs([split, calm], 3, per_prompt=2)
    assert [c.prompt_index for c in two] == [0, 0, 1]
    assert (two[0].i, two[0].j) == (0, 1)


def test_mean_margin_is_the_ensemble_mean_difference():
    (pair,) = score_pairs([[[1.0, 0.0], [3.0, 0.0]]])
    assert pair.mean_margin == pytest.approx(2.0)


def test_random_is_reproducible_by_seed_and_differs_across_seeds():
    rng = np.random.default_rng(0)
    scores = [rng.normal(size=(3, 4)) for _ in range(30)]  # 30 prompts, 6 pairs each
    first = select_pairs(scores, 10, strategy="random", seed=7)
    again = select_pairs(scores, 10, strategy="random", seed=7)
    other = select_pairs(scores, 10, strategy="random", seed=8)
    key = [(c.prompt_index, c.i, c.j) for c in first]
    assert key == [(c.prompt_index, c.i, c.j) for c in again]
    assert key != [(c.prompt_index, c.i, c.j) for c in other]
    assert len({c.prompt_index for c in first}) == 10  # per_prompt=1
    # Random picks carry their disagreement too, and on average less than the active picks.
    active = select_pairs(scores, 10)
    assert np.mean([c.disagreement for c in active]) > np.mean([c.disagreement for c in first])
    assert min(c.disagreement for c in active) >= max(
        c.disagreement for c in score_pairs(scores)
        if (c.prompt_index, c.i, c.j) not in {(a.prompt_index, a.i, a.j) for a in active}
        and c.prompt_index not in {a.prompt_index for a in active})


def test_fewer_pairs_than_asked_and_bad_input():
    assert len(select_pairs([[[0.0, 1.0]]], 5)) == 1
    assert select_pairs([[[0.0, 1.0]]], 0) == []
    with pytest.raises(ValueError, match="strategy"):
        select_pairs([[[0.0, 1.0]]], 1, strategy="best")
    with pytest.raises(ValueError, match="method"):
        pair_disagreement([[0.0, 1.0]], "entropy")
    with pytest.raises(ValueError, match="finite"):
        select_pairs([[[0.0, float("nan")]]], 1)
    with pytest.raises(ValueError, match="shape"):
        select_pairs([np.zeros((2, 2, 2))], 1)
