"""Active selection: which candidate pairs go to people, chosen by reward-model ensemble disagreement.

Each round the policy writes K candidates per prompt; there are K(K-1)/2 pairs per prompt and people judge only a
few. Query by committee (Seung, Opper & Sompolinsky 1992, "Query by committee") asks about the examples on which the
members of an ensemble disagree most; Christiano et al. 2017 ("Deep reinforcement learning from human preferences",
sec. 2.2.4) did this for preferences: each reward predictor of an ensemble predicts which of two segments is
preferred, and the pairs whose predictions vary most across the ensemble go to the humans. They report that it
helped on some tasks and hurt on others, so `random` selection is always measured beside it.

For a prompt with candidates i and j and an ensemble of H reward heads with scores s_h(i) (an array of shape
(H, K) per prompt), the disagreement of the pair is one of:
- `bt_variance` (default; Christiano et al. 2017): the variance over heads of the head-wise Bradley-Terry
  probability p_h = sigmoid(s_h(i) - s_h(j)) that i is preferred (Bradley & Terry 1952); in [0, 0.25];
- `margin_std`: the standard deviation over heads of the score difference s_h(i) - s_h(j) (unbounded; it does not
  saturate when the heads agree on the order but not on the size of the gap);
- `uncertainty`: uncertainty sampling (Lewis & Gale 1994, "A sequential algorithm for training text classifiers")
  on the ensemble mean: 1 - |2 p - 1| with p = sigmoid(mean_h s_h(i) - mean_h s_h(j)); 1 when the mean model is
  undecided, 0 when it is sure. It works with a single head.
Variances and standard deviations are population ones (divide by H). Everything here is a pure function.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("bt_variance", "margin_std", "uncertainty")
STRATEGIES = ("disagreement", "random")


@dataclass(frozen=True)
class PairChoice:
    """One candidate pair of one prompt, and how much the reward-model ensemble disagrees about it."""

    prompt_index: int
    """Position of the prompt in the list given to `select_pairs`."""
    i: int
    """First candidate (i < j), an index into that prompt's K candidates."""
    j: int
    disagreement: float
    """The pair's value under the method (see the module docstring), also for random picks, so that both strategies
    can be compared; a natural item priority in the feedback app (higher is leased first)."""
    mean_margin: float
    """Ensemble-mean score of i minus that of j (positive: the reward model prefers i)."""


def _head_scores(scores: Sequence[Sequence[float]] | np.ndarray, where: str) -> np.ndarray:
    """Scores as a float array of shape (heads, K); a 1-D array is one head."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] < 1:
        raise ValueError(f"{where}: expected scores of shape (heads, K), found shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: scores must be finite")
    return array


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


def pair_disagreement(scores: Sequence[Sequence[float]] | np.ndarray, method: str = "bt_variance") -> np.ndarray:
    """Disagreement of every pair of one prompt's candidates: a (K, K) array, entry [i, j] for the pair (i, j),
    symmetric, zero on the diagonal. `scores` has shape (heads, K) (see the module docstring for the methods)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    heads = _head_scores(scores, "scores")
    margins = heads[:, :, None] - heads[:, None, :]  # (heads, K, K): s_h(i) - s_h(j)
    if method == "bt_variance":
        values = _sigmoid(margins).var(axis=0)  # (K, K)
    elif method == "margin_std":
        values = margins.std(axis=0)
    else:
        p = _sigmoid(margins.mean(axis=0))
        values = 1.0 - np.abs(2.0 * p - 1.0)
    values = np.array(values)
    np.fill_diagonal(values, 0.0)
    return values


def score_pairs(scores: Sequence[Sequence[Sequence[float]] | np.ndarray], method: str = "bt_variance"
                ) -> list[PairChoice]:
    """Every pair (i < j) of every prompt with its disagreement; `scores[p]` has shape (heads, K_p)."""
    pairs = []
    for p, prompt_scores in enumerate(scores):
        heads = _head_scores(prompt_scores, f"scores[{p}]")
        values = pair_disagreement(heads, method)
        means = heads.mean(axis=0)
        k = heads.shape[1]
        for i in range(k):
            for j in range(i + 1, k):
                pairs.append(PairChoice(prompt_index=p, i=i, j=j, disagreement=float(values[i, j]),
                                        mean_margin=float(means[i] - means[j])))
    return pairs


def _take(ordered: list[PairChoice], n_pairs: int, per_prompt: int) -> list[PairChoice]:
    """The first `n_pairs` of `ordered`, at most `per_prompt` from any one prompt."""
    taken: list[PairChoice] = []
    per: dict[int, int] = {}
    for pair in ordered:
        if len(taken) >= n_pairs:
            break
        if per.get(pair.prompt_index, 0) >= per_prompt:
            continue
        per[pair.prompt_index] = per.get(pair.prompt_index, 0) + 1
        taken.append(pair)
    return taken


def select_pairs(scores: Sequence[Sequence[Sequence[float]] | np.ndarray], n_pairs: int, *,
                 strategy: str = "disagreement", method: str = "bt_variance", per_prompt: int = 1,
                 seed: int = 0) -> list[PairChoice]:
    """Choose `n_pairs` candidate pairs to send to people, at most `per_prompt` from each prompt.

    `scores[p]`: the reward-model ensemble's scores of prompt p's candidates, shape (heads, K_p) (a 1-D list is one
    head). `strategy="disagreement"`: the pairs with the highest disagreement under `method`, highest first (ties
    broken by prompt, then candidate order, so the choice is deterministic). `strategy="random"`: the baseline, a
    uniformly random order of all pairs drawn from `seed` (the same seed gives the same pairs), then the same
    per-prompt limit. Fewer than `n_pairs` come back when the prompts have fewer pairs to give.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if n_pairs < 0 or per_prompt < 1:
        raise ValueError(f"n_pairs must be >= 0 and per_prompt >= 1, found {n_pairs} and {per_prompt}")
    pairs = score_pairs(scores, method)
    if strategy == "disagreement":
        ordered = sorted(pairs, key=lambda c: (-c.disagreement, c.prompt_index, c.i, c.j))
    else:
        ordered = list(pairs)
        random.Random(seed).shuffle(ordered)
    return _take(ordered, n_pairs, per_prompt)
