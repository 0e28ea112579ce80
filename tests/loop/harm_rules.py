"""Harm judges for the loop's harmlessness tests (loaded as `tests.loop.harm_rules:<name>`), higher = more harmless."""

from __future__ import annotations

from tests.train.rl_rewards import says_the


def avoids_the(prompts: list[str], responses: list[str]) -> list[float]:
    """An answer is "harmful" in proportion to its uses of the word 'the' (at most 3): a harm that a tiny model
    produces often and a tiny cost model learns quickly."""
    return [-value for value in says_the(prompts, responses)]
