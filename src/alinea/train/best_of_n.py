"""Best-of-n: sample n answers per prompt, keep the one the reward likes best.

An inference-time policy with no training, and the baseline RL curves are compared with: its KL from the sampling
policy is `log n - (n - 1) / n` nats (Stiennon et al. 2020; Gao et al. 2022), so best-of-n at a given n marks what
reward that much KL buys without optimisation. The same sampling also builds preference pairs (best vs worst answer
of each prompt) for DPO from any reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alinea.advantages import best_of_n_kl
from alinea.errors import UserError
from alinea.train.rewards import RewardInputs, RewardMix
from alinea.train.rollout import PromptSet, sample_episodes


@dataclass
class Candidates:
    """n scored answers for each prompt."""

    prompt_index: int
    prompt_text: str
    answers: list[str]
    scores: list[float]
    finished: list[bool]

    @property
    def best(self) -> int:
        return max(range(len(self.scores)), key=lambda i: self.scores[i])

    @property
    def worst(self) -> int:
        return min(range(len(self.scores)), key=lambda i: self.scores[i])


@torch.no_grad()
def sample_candidates(
    model,
    tokenizer,
    prompts: PromptSet,
    rewards: RewardMix,
    *,
    n: int,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    indices: list[int] | None = None,
) -> list[Candidates]:
    """Sample `n` answers for each prompt (all of them, or `indices`) and score every answer."""
    if n < 1:
        raise UserError(f"best-of-n: n must be >= 1, found {n}.")
    indices = list(range(len(prompts))) if indices is None else indices
    episodes = [i for i in indices for _ in range(n)]
    chunk = max(n, (batch_size // n) * n)
    rollout = sample_episodes(
        model, tokenizer, prompts, episodes, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
        seed=seed, chunk_size=chunk,
    )
    total, _ = rewards.score(
        RewardInputs(prompts=rollout.prompt_texts, responses=rollout.response_texts, sequences=rollout.sequences())
    )
    out = []
    for k, index in enumerate(indices):
        rows = range(k * n, (k + 1) * n)
        out.append(
            Candidates(
                prompt_index=index,
                prompt_text=prompts.texts[index],
                answers=[rollout.response_texts[r] for r in rows],
                scores=[float(total[r]) for r in rows],
                finished=[bool(rollout.finished[r]) for r in rows],
            )
        )
    return out


def summarise(candidates: list[Candidates], n: int) -> dict[str, float]:
    """Mean reward of one random answer (the first sample) vs the best of n, and the analytic KL of best-of-n."""
    first = [c.scores[0] for c in candidates]
    best = [c.scores[c.best] for c in candidates]
    return {
        "n": n,
        "prompts": len(candidates),
        "reward_sample": sum(first) / max(1, len(first)),
        "reward_best_of_n": sum(best) / max(1, len(best)),
        "kl_best_of_n": best_of_n_kl(n),
    }


def preference_records(candidates: list[Candidates], prompts_records) -> list:
    """Comparison records best (a) vs worst (b) per prompt; prompts whose answers all score the same are skipped."""
    from alinea.data.records import Comparison

    records = []
    for c in candidates:
        best, worst = c.best, c.worst
        if c.scores[best] == c.scores[worst] or c.answers[best] == c.answers[worst]:
            continue
        if not c.answers[best].strip() or not c.answers[worst].strip():
            continue
        source = prompts_records[c.prompt_index]
        records.append(
            Comparison(
                messages=source.messages, prompt=source.prompt if source.messages is None else None,
                response_a=c.answers[best], response_b=c.answers[worst], preference="a", strength=1,
                language=source.language, annotator="reward",
            )
        )
    return records
