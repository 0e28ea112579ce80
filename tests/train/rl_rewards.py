"""Python reward functions used by the RL tests (loaded as `tests.train.rl_rewards:<name>`)."""

from __future__ import annotations

import math

TARGET = "e"


def target_share(prompts: list[str], responses: list[str]) -> list[float]:
    """Share of the answer's characters that are the letter 'e' (x10): a dense signal any tiny model can chase."""
    return [10.0 * text.count(TARGET) / max(len(text), 1) for text in responses]


def length_reward(prompts: list[str], responses: list[str]) -> list[float]:
    return [len(text) / 100 for text in responses]


def raises(prompts: list[str], responses: list[str]) -> list[float]:
    raise RuntimeError("judge offline")


def returns_nan(prompts: list[str], responses: list[str]) -> list[float]:
    return [math.nan for _ in responses]


def wrong_count(prompts: list[str], responses: list[str]) -> list[float]:
    return [0.0]


def says_the(prompts: list[str], responses: list[str]) -> list[float]:
    """How often the answer uses the word 'the' (at most 3): a preference a tiny reward model learns quickly."""
    return [min(3, sum(1 for word in text.lower().split() if word.strip(".,!?") == "the")) / 3 for text in responses]


def a_share(prompts: list[str], responses: list[str]) -> list[float]:
    """Share of the answer's characters that are the letter 'a' (x10): a synthetic cost for constrained RL."""
    return [10.0 * text.count("a") / max(len(text), 1) for text in responses]


def always_one(prompts: list[str], responses: list[str]) -> list[float]:
    """A cost no policy can lower: the constraint `cost <= 0` can never be met."""
    return [1.0 for _ in responses]
