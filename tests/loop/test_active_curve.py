"""Active vs random selection on a planted linear preference: both learn it, curves are well formed."""

from __future__ import annotations

import itertools

import pytest
import torch

from alinea.loop.active_curve import PairPool, accuracy, disagreement, fit_heads, simulate_curve


def planted(n: int = 60, d: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=generator)
    true_w = torch.randn(d, generator=generator)
    gold = features @ true_w / true_w.norm()
    return features, gold


def test_heads_learn_a_planted_preference_and_disagree_where_data_is_thin():
    features, gold = planted()
    pairs = list(itertools.combinations(range(40), 2))
    diff = torch.stack([features[a] - features[b] for a, b in pairs])
    labels = torch.tensor([1.0 if gold[a] > gold[b] else 0.0 for a, b in pairs])
    weights = fit_heads(diff, labels, heads=3, seed=0)
    test = [(a, b) if gold[a] > gold[b] else (b, a) for a, b in itertools.combinations(range(40, 60), 2)]
    assert accuracy(weights, features, test) > 0.9
    # Fitted on 4 pairs only, the heads (bootstraps) disagree more than heads fitted on 780 pairs.
    few = fit_heads(diff[:4], labels[:4], heads=5, seed=1)
    many = fit_heads(diff, labels, heads=5, seed=1)
    assert disagreement(few, features, test).mean() > disagreement(many, features, test).mean()


@pytest.mark.slow
def test_curves_rise_with_judgments_for_both_strategies():
    features, gold = planted(seed=3)
    pairs = list(itertools.combinations(range(40), 2))
    test = [(a, b) if gold[a] > gold[b] else (b, a) for a, b in itertools.combinations(range(40, 60), 2)
            if abs(gold[a] - gold[b]) > 0.05]
    pool = PairPool(features=features, pairs=pairs, gold=gold)
    curves = {s: simulate_curve(pool, test, strategy=s, seed=0, start=4, batch=4, budget=40, heads=3, sharpness=20)
              for s in ("active", "random")}
    for curve in curves.values():
        assert [n for n, _ in curve] == list(range(4, 41, 4))
        assert curve[-1][1] > curve[0][1]
        assert curve[-1][1] > 0.8
    assert curves["active"][0] == curves["random"][0]  # the same seed set
