"""Reward-model accuracy against the number of judgments: active (ensemble disagreement) vs random selection.

Training the full reward model dozens of times per round would not fit a laptop demo, so the measurement uses the
standard cheap stand-in from the active-learning literature: a linear Bradley-Terry reward head on frozen features
(the round's reward model's hidden state at the answer's last token), an ensemble of such heads on bootstrap
resamples, and an annotator simulated by the gold judge with Bradley-Terry noise. Both strategies start from the same
random seed set and label `batch` pairs at a time from the same pool (every pair of this round's candidates); after
each batch, accuracy is measured on held-out pairs (the evaluation prompts' answers) ordered by the gold judge.

- random: the next pairs are drawn uniformly from the unlabelled pool;
- active: the pairs whose head-wise preference probabilities vary most across the ensemble (uncertainty sampling
  by query-by-committee: Seung, Opper & Sompolinsky 1992; for reward models, e.g. Christiano et al. 2017 sec. 2.2.4).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch


@dataclass
class PairPool:
    """Pairs as (feature difference, gold gap): the annotator prefers the first answer when the gap is positive."""

    features: torch.Tensor  # (n_answers, d) frozen features
    pairs: list[tuple[int, int]]  # answer indices
    gold: torch.Tensor  # (n_answers,) gold scores


def fit_heads(diff: torch.Tensor, labels: torch.Tensor, *, heads: int, seed: int, l2: float = 1e-2, steps: int = 60) -> torch.Tensor:
    """(heads, d) linear Bradley-Terry heads, each fitted on a bootstrap of the labelled pairs (Newton-free LBFGS)."""
    generator = torch.Generator().manual_seed(seed)
    n, d = diff.shape
    weights = []
    for _ in range(heads):
        rows = torch.randint(n, (n,), generator=generator)
        x, y = diff[rows], labels[rows]
        w = torch.zeros(d, requires_grad=True)
        optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure(x=x, y=y, w=w, optimizer=optimizer):
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w, y) + l2 * (w @ w)
            loss.backward()
            return loss

        optimizer.step(closure)
        weights.append(w.detach())
    return torch.stack(weights)


def accuracy(weights: torch.Tensor, features: torch.Tensor, test_pairs: list[tuple[int, int]]) -> float:
    """Share of test pairs (first answer better by the gold judge) that the ensemble's mean reward orders right."""
    if not test_pairs:
        return float("nan")
    reward = (features @ weights.T).mean(dim=-1)  # (n,)
    right = sum(1 for a, b in test_pairs if reward[a] > reward[b])
    return right / len(test_pairs)


def disagreement(weights: torch.Tensor, features: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Per pair: variance over heads of P(a > b) = sigmoid(r_a - r_b)."""
    rewards = features @ weights.T  # (n, heads)
    index_a = torch.tensor([a for a, _ in pairs])
    index_b = torch.tensor([b for _, b in pairs])
    probs = torch.sigmoid(rewards[index_a] - rewards[index_b])  # (pairs, heads)
    return probs.var(dim=-1, unbiased=False)


def simulate_curve(
    pool: PairPool,
    test_pairs: list[tuple[int, int]],
    *,
    strategy: str,
    seed: int,
    start: int = 8,
    batch: int = 8,
    budget: int = 96,
    heads: int = 5,
    sharpness: float = 8.0,
) -> list[list[float]]:
    """[[n_judgments, held-out accuracy], ...] for one strategy."""
    rng = random.Random(seed)
    features = pool.features
    unlabelled = list(range(len(pool.pairs)))
    rng.shuffle(unlabelled)
    labelled: list[int] = []
    labels: list[float] = []

    def label(index: int) -> None:
        a, b = pool.pairs[index]
        gap = float(pool.gold[a] - pool.gold[b])
        labels.append(1.0 if rng.random() < 1 / (1 + math.exp(-sharpness * gap)) else 0.0)
        labelled.append(index)

    for index in unlabelled[:start]:
        label(index)
    unlabelled = unlabelled[start:]
    curve = []
    budget = min(budget, len(pool.pairs))
    while True:
        diff = torch.stack([features[pool.pairs[i][0]] - features[pool.pairs[i][1]] for i in labelled])
        weights = fit_heads(diff, torch.tensor(labels), heads=heads, seed=seed + len(labelled))
        curve.append([len(labelled), accuracy(weights, features, test_pairs)])
        if len(labelled) >= budget or not unlabelled:
            return curve
        take = min(batch, budget - len(labelled), len(unlabelled))
        if strategy == "active":
            scores = disagreement(weights, features, [pool.pairs[i] for i in unlabelled])
            order = torch.argsort(scores, descending=True).tolist()
            chosen = [unlabelled[i] for i in order[:take]]
        elif strategy == "random":
            chosen = unlabelled[:take]
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
        for index in chosen:
            label(index)
        unlabelled = [i for i in unlabelled if i not in set(chosen)]


@torch.no_grad()
def answer_features(rm_dir: str, prompt_messages: list[list[dict]], answers: list[str]) -> torch.Tensor:
    """(n, d) hidden states of the reward model's trunk at each answer's last token (prompt + answer, chat format)."""
    from alinea.model.reward import load_reward_model
    from alinea.train.reward import Encoder

    model, tokenizer = load_reward_model(rm_dir)
    encoder = Encoder(tokenizer, 256)
    sequences = [encoder.sequence(m, a or " ") for m, a in zip(prompt_messages, answers, strict=True)]
    feats = []
    for start in range(0, len(sequences), 32):
        chunk = sequences[start : start + 32]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, T, d)
        last = mask.sum(-1) - 1
        feats.append(hidden[torch.arange(len(chunk)), last].float())
    features = torch.cat(feats)
    return (features - features.mean(0)) / features.std(0).clamp(min=1e-6)
