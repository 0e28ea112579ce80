"""Win rates with bootstrap confidence intervals, and the over-optimisation curves of Gao et al. (2022).

Pure functions over plain numbers (numpy only), used by the loop's evaluation phase and by the report.

**Win rate** (RLHF-NOTES.md, "Over-optimisation and evaluation"): two systems answer the same prompts; a judge
scores both answers of each prompt. System A *wins* a prompt when its score beats B's by more than `tie_tolerance`,
*ties* when the two differ by at most `tie_tolerance`; the win rate is `(wins + ties / 2) / prompts`. 0.5 means "no
better than B"; 1 means "better on every prompt".

**Bootstrap interval**: resample the prompts with replacement `n_boot` times, take the win rate of each resample and
report the central `confidence` share of them (percentile bootstrap, Efron & Tibshirani 1993, ch. 13). The unit
resampled is the prompt, so the interval says how much the rate would move on another draw of prompts from the same
distribution; it does not cover judge noise.

**Gao, Schulman & Hilton 2022** ("Scaling Laws for Reward Model Overoptimization"): with
`d = sqrt(KL(pi || pi_init))`, the *gold* reward gained over the initial policy follows

    best-of-n:  R(d) = d (a - b d)
    RL:         R(d) = d (a - b log d)

with `R(0) = 0`: pass gold rewards **relative to the initial policy's** (gold - gold of the SFT model). The proxy
reward (the reward model being optimised) keeps rising while the gold reward peaks and falls: the gap is
over-optimisation.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

KINDS = ("rl", "bon")


def _paired(scores_a: Sequence[float], scores_b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(scores_a, dtype=float).reshape(-1)  # (prompts,)
    b = np.asarray(scores_b, dtype=float).reshape(-1)  # (prompts,)
    if a.shape != b.shape:
        raise ValueError(f"win rate: {a.size} scores for A but {b.size} for B; expected one pair per prompt.")
    if a.size == 0:
        raise ValueError("win rate: no scores; expected at least one prompt.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("win rate: a score is NaN or infinite; expected finite numbers.")
    return a, b


def outcomes(scores_a: Sequence[float], scores_b: Sequence[float], *, tie_tolerance: float = 0.0) -> np.ndarray:
    """Per prompt: 1 where A wins, 0.5 for a tie (|a - b| <= tie_tolerance), 0 where B wins."""
    if tie_tolerance < 0:
        raise ValueError(f"win rate: tie_tolerance must be >= 0, got {tie_tolerance}.")
    a, b = _paired(scores_a, scores_b)
    diff = a - b  # (prompts,)
    return np.where(np.abs(diff) <= tie_tolerance, 0.5, np.where(diff > 0, 1.0, 0.0))


def win_rate(scores_a: Sequence[float], scores_b: Sequence[float], *, tie_tolerance: float = 0.0) -> float:
    """Share of prompts where A's score beats B's, ties counting half.

    `scores_a[i]` and `scores_b[i]` are the judge's scores of the two answers to prompt i.
    """
    return float(outcomes(scores_a, scores_b, tie_tolerance=tie_tolerance).mean())


def bootstrap_win_rate(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    tie_tolerance: float = 0.0,
) -> dict[str, float | int]:
    """`{"rate", "low", "high", "n"}`: the win rate and its percentile-bootstrap interval over prompts.

    A resample of n prompts drawn with replacement is summarised by how many wins, ties and losses it holds, and those
    counts are multinomial(n; share of wins, ties, losses): drawing the counts directly is the same distribution as
    drawing prompt indices, in O(n_boot) instead of O(n_boot * n). Seeded: the same inputs give the same interval.
    """
    if n_boot < 1:
        raise ValueError(f"bootstrap: n_boot must be >= 1, got {n_boot}.")
    if not 0 < confidence < 1:
        raise ValueError(f"bootstrap: confidence must be in (0, 1), got {confidence}.")
    per_prompt = outcomes(scores_a, scores_b, tie_tolerance=tie_tolerance)  # (prompts,)
    n = per_prompt.size
    shares = np.array([(per_prompt == 1.0).sum(), (per_prompt == 0.5).sum(), (per_prompt == 0.0).sum()]) / n
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, shares, size=n_boot)  # (n_boot, 3): wins, ties, losses of each resample
    rates = (counts[:, 0] + 0.5 * counts[:, 1]) / n  # (n_boot,)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(rates, [tail, 1.0 - tail])
    return {"rate": float(per_prompt.mean()), "low": float(low), "high": float(high), "n": int(n)}


def win_rate_by_group(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    groups: Sequence[Hashable],
    **bootstrap_kwargs,
) -> dict[Hashable, dict[str, float | int]]:
    """`bootstrap_win_rate` within each group (e.g. each prompt's language), groups in sorted order.

    `groups[i]` is prompt i's group; keyword arguments go to `bootstrap_win_rate` (the same seed for every group).
    """
    a, b = _paired(scores_a, scores_b)
    if len(groups) != a.size:
        raise ValueError(f"win rate by group: {len(groups)} group labels for {a.size} prompts.")
    labels = np.asarray([str(g) for g in groups])
    result: dict[Hashable, dict[str, float | int]] = {}
    for group in sorted(set(groups), key=str):
        chosen = labels == str(group)
        result[group] = bootstrap_win_rate(a[chosen], b[chosen], **bootstrap_kwargs)
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Gao et al. 2022: gold reward against d = sqrt(KL)


def _features(sqrt_kl: np.ndarray, kind: str) -> np.ndarray:
    """Columns multiplying a and b: R(d) = a * f_a(d) + b * f_b(d)."""
    if kind == "rl":
        with np.errstate(divide="ignore", invalid="ignore"):
            d_log_d = np.where(sqrt_kl > 0, sqrt_kl * np.log(np.where(sqrt_kl > 0, sqrt_kl, 1.0)), 0.0)  # d log d -> 0
        return np.stack([sqrt_kl, -d_log_d], axis=1)  # (points, 2)
    if kind == "bon":
        return np.stack([sqrt_kl, -(sqrt_kl**2)], axis=1)  # (points, 2)
    raise ValueError(f"Gao fit: kind must be one of {', '.join(KINDS)}, got {kind!r}.")


def gao_curve(sqrt_kl: Sequence[float] | float, a: float, b: float, kind: str = "rl") -> np.ndarray:
    """R(d) of Gao et al. 2022 at each d: `d (a - b log d)` (kind "rl") or `d (a - b d)` (kind "bon"); R(0) = 0."""
    d = np.atleast_1d(np.asarray(sqrt_kl, dtype=float))
    return _features(d, kind) @ np.array([a, b], dtype=float)


def fit_gao(sqrt_kl: Sequence[float], gold: Sequence[float], kind: str = "rl") -> tuple[float, float]:
    """Least-squares (a, b) of Gao et al. 2022's form for `kind` ("rl" or "bon") through the points (d, gold).

    `gold` must be measured relative to the initial policy (the forms have R(0) = 0). Both forms are linear in (a, b),
    so this is ordinary least squares on two columns; it needs at least two points with distinct d > 0 (for "rl", not
    all at d = 1, where d log d = 0).
    """
    d = np.asarray(sqrt_kl, dtype=float).reshape(-1)  # (points,)
    y = np.asarray(gold, dtype=float).reshape(-1)  # (points,)
    if d.shape != y.shape:
        raise ValueError(f"Gao fit: {d.size} sqrt(KL) values but {y.size} gold rewards.")
    if not (np.isfinite(d).all() and np.isfinite(y).all()):
        raise ValueError("Gao fit: a value is NaN or infinite.")
    if (d < 0).any():
        raise ValueError("Gao fit: sqrt(KL) must be >= 0.")
    design = _features(d, kind)  # (points, 2)
    if np.linalg.matrix_rank(design) < 2:
        raise ValueError("Gao fit: needs at least two points with distinct sqrt(KL) > 0 to determine a and b.")
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(a), float(b)


def gao_peak(a: float, b: float, kind: str = "rl") -> float | None:
    """The d = sqrt(KL) where the fitted gold reward is highest, or None when it never turns down (b <= 0).

    RL: dR/dd = a - b (log d + 1) = 0 at d = exp(a / b - 1). Best-of-n: a - 2 b d = 0 at d = a / (2 b).
    """
    if b <= 0:
        return None
    if kind == "rl":
        exponent = a / b - 1.0
        return math.exp(exponent) if exponent < 700 else None
    if kind == "bon":
        return a / (2.0 * b) if a > 0 else 0.0
    raise ValueError(f"Gao fit: kind must be one of {', '.join(KINDS)}, got {kind!r}.")
