"""Win rates, bootstrap intervals and Gao et al. fits against numbers worked by hand."""

import math

import numpy as np
import pytest

from alinea.eval.winrate import (
    bootstrap_win_rate,
    fit_gao,
    gao_curve,
    gao_peak,
    outcomes,
    win_rate,
    win_rate_by_group,
)


def test_win_rate_counts_ties_half():
    # per prompt: 3>1 win, 2=2 tie, 1<4 loss, 5=5 tie -> (1 + 0.5 + 0 + 0.5) / 4
    assert win_rate([3, 2, 1, 5], [1, 2, 4, 5]) == 0.5
    assert outcomes([3, 2, 1, 5], [1, 2, 4, 5]).tolist() == [1.0, 0.5, 0.0, 0.5]
    # win, loss, win -> 2/3; with tolerance 0.2 the 3.0 vs 2.9 prompt is a tie -> (1 + 0 + 0.5) / 3
    assert win_rate([1.0, 2.0, 3.0], [0.0, 2.5, 2.9]) == pytest.approx(2 / 3)
    assert win_rate([1.0, 2.0, 3.0], [0.0, 2.5, 2.9], tie_tolerance=0.2) == pytest.approx(0.5)
    # tolerance 2: the difference of exactly 2 is a tie too -> (0.5 + 0.5 + 0 + 0.5) / 4
    assert win_rate([3, 2, 1, 5], [1, 2, 4, 5], tie_tolerance=2.0) == 0.375


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        ([1, 2], [1], {}, "2 scores for A but 1 for B"),
        ([], [], {}, "no scores"),
        ([1, float("nan")], [0, 0], {}, "NaN"),
        ([1], [0], {"tie_tolerance": -1}, "tie_tolerance"),
    ],
)
def test_win_rate_rejects_bad_input(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        win_rate(a, b, **kwargs)


def test_bootstrap_degenerate_cases():
    assert bootstrap_win_rate([2, 3, 4], [1, 1, 1]) == {"rate": 1.0, "low": 1.0, "high": 1.0, "n": 3}
    assert bootstrap_win_rate([1, 1], [1, 1]) == {"rate": 0.5, "low": 0.5, "high": 0.5, "n": 2}
    assert bootstrap_win_rate([0.0], [1.0]) == {"rate": 0.0, "low": 0.0, "high": 0.0, "n": 1}
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_win_rate([1], [0], confidence=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_win_rate([1], [0], n_boot=0)


def test_bootstrap_matches_the_normal_approximation():
    # 300 wins and 100 losses: p = 0.75, standard error sqrt(0.75 * 0.25 / 400) = 0.02165, so the 95% interval of
    # the normal approximation is 0.75 -+ 1.96 * 0.02165 = (0.7076, 0.7924); the bootstrap should agree closely.
    a = [1.0] * 300 + [-1.0] * 100
    b = [0.0] * 400
    result = bootstrap_win_rate(a, b, n_boot=4000, seed=1)
    assert result["rate"] == 0.75 and result["n"] == 400
    assert result["low"] == pytest.approx(0.7076, abs=0.008)
    assert result["high"] == pytest.approx(0.7924, abs=0.008)
    # seeded: the same call gives the same interval
    assert bootstrap_win_rate(a, b, n_boot=4000, seed=1) == result
    # a narrower confidence gives a narrower interval: 80% -> 0.75 -+ 1.2816 * 0.02165 = (0.7223, 0.7777)
    narrow = bootstrap_win_rate(a, b, n_boot=4000, seed=1, confidence=0.8)
    assert narrow["low"] == pytest.approx(0.7223, abs=0.008) and narrow["high"] == pytest.approx(0.7777, abs=0.008)


def test_bootstrap_equals_resampling_prompt_indices():
    # Drawing win/tie/loss counts is the same distribution as drawing prompts: compare with the direct way.
    a = [1, 2, 2, 0, 5, 3, 1, 2, 4, 0, 1, 1]
    b = [0, 2, 3, 1, 1, 3, 0, 0, 2, 1, 1, 2]
    per_prompt = outcomes(a, b)
    rng = np.random.default_rng(7)
    direct = per_prompt[rng.integers(0, len(a), size=(20000, len(a)))].mean(axis=1)
    ours = bootstrap_win_rate(a, b, n_boot=20000, seed=3)
    assert ours["rate"] == pytest.approx(win_rate(a, b))
    assert ours["low"] == pytest.approx(np.quantile(direct, 0.025), abs=1 / 24 + 1e-9)
    assert ours["high"] == pytest.approx(np.quantile(direct, 0.975), abs=1 / 24 + 1e-9)


def test_win_rate_by_group():
    # en: prompts 0 (win) and 2 (tie) -> 0.75; fr: 1 (loss) and 3 (win) -> 0.5; mg: 4 (loss) -> 0
    result = win_rate_by_group([1, 0, 1, 1, 0], [0, 1, 1, 0, 1], ["en", "fr", "en", "fr", "mg"], n_boot=200)
    assert list(result) == ["en", "fr", "mg"]
    assert {k: (v["rate"], v["n"]) for k, v in result.items()} == {"en": (0.75, 2), "fr": (0.5, 2), "mg": (0.0, 1)}
    assert result["mg"]["low"] == result["mg"]["high"] == 0.0
    assert result["en"]["low"] >= 0.5 and result["en"]["high"] <= 1.0
    with pytest.raises(ValueError, match="2 group labels for 3 prompts"):
        win_rate_by_group([1, 2, 3], [0, 0, 0], ["en", "fr"])


def test_fit_gao_best_of_n_by_hand():
    # R(d) = a d - b d^2 through (1, 1), (2, 1), (3, 1). Columns x1 = d = (1, 2, 3), x2 = -d^2 = (-1, -4, -9):
    # X'X = [[14, -36], [-36, 98]] (det 76), X'y = (6, -14) -> a = (98*6 - 36*14)/76 = 21/19, b = (36*6 - 14*14)/76 = 5/19
    a, b = fit_gao([1, 2, 3], [1, 1, 1], kind="bon")
    assert a == pytest.approx(21 / 19) and b == pytest.approx(5 / 19)
    # the peak of d (a - b d) is at a / (2b) = 21/10
    assert gao_peak(a, b, "bon") == pytest.approx(2.1)
    assert gao_curve([0, 1, 2], a, b, "bon") == pytest.approx([0, 16 / 19, 2 * (21 / 19 - 10 / 19)])


def test_fit_gao_rl_by_hand():
    # R(d) = d (a - b log d). At d = 1, log d = 0 so R = a; two points at d = e with gold 0 and e average to e/2,
    # so least squares puts e (a - b) = e/2: a = 1, b = 0.5. The point at d = 0 (R(0) = 0) changes nothing.
    a, b = fit_gao([0, 1, math.e, math.e], [0, 1, 0, math.e], kind="rl")
    assert a == pytest.approx(1.0) and b == pytest.approx(0.5)
    # peak: a - b (log d + 1) = 0 -> d = exp(a/b - 1) = e
    assert gao_peak(a, b, "rl") == pytest.approx(math.e)
    # exact recovery from points on a known curve
    d = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    a, b = fit_gao(d, 2.0 * d - 0.5 * d * np.log(d))
    assert (a, b) == (pytest.approx(2.0), pytest.approx(0.5))
    assert gao_curve(0.0, a, b).tolist() == [0.0]
    assert gao_peak(1.0, -0.1, "rl") is None


@pytest.mark.parametrize(
    ("d", "gold", "kind", "message"),
    [
        ([1.0], [0.2], "rl", "at least two points"),
        ([1.0, 1.0, 0.0], [0.2, 0.3, 0.0], "rl", "at least two points"),  # d log d = 0 at d = 1: a and b tangled
        ([1.0, -2.0], [0.2, 0.3], "bon", ">= 0"),
        ([1.0, 2.0], [0.2], "rl", "2 sqrt"),
        ([1.0, 2.0], [0.2, 0.3], "ppo", "kind"),
    ],
)
def test_fit_gao_rejects_bad_input(d, gold, kind, message):
    with pytest.raises(ValueError, match=message):
        fit_gao(d, gold, kind=kind)
