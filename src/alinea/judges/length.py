"""Length judge: 1 inside a target range of words, falling linearly to 0 outside it.

RL policies drift in length: longer answers please many reward models (Singhal et al. 2023, "A Long Way to Go:
Investigating Length Correlations in RLHF"), and a policy can also collapse to very short answers. A length term in
the reward mix holds answers in a range. With the range [low, high] and n words:

    score = n / low              when n < low   (0 for an empty answer)
          = 1                    when low <= n <= high
          = max(0, 2 - n / high) when n > high  (0 at twice the upper bound)

The default range, 8 to 60 words, holds 97% of the demo's demonstrations (2000 generated with seed 0: 1.3% are
shorter, 1.5% longer).
"""

from __future__ import annotations

import re

from alinea.errors import UserError

DEFAULT_LENGTH_RANGE = (8, 60)
"""Target answer length in words (inclusive)."""

_WORD = re.compile(r"\S+")


def count_words(text: str) -> int:
    """Whitespace-separated words in `text`."""
    return len(_WORD.findall(text))


def length_score(text: str, low: int = DEFAULT_LENGTH_RANGE[0], high: int = DEFAULT_LENGTH_RANGE[1]) -> float:
    """The length score of one text in [0, 1] (see the module docstring)."""
    n = count_words(text)
    if n < low:
        return n / low
    if n <= high:
        return 1.0
    return max(0.0, 2.0 - n / high)


class LengthJudge:
    """A batched length judge for a chosen range of words; picklable (a plain class, not a closure)."""

    def __init__(self, low: int = DEFAULT_LENGTH_RANGE[0], high: int = DEFAULT_LENGTH_RANGE[1]) -> None:
        if not (isinstance(low, int) and isinstance(high, int)) or not 0 < low <= high:
            raise UserError(f"length judge: expected whole numbers of words 0 < low <= high, got low={low!r}, high={high!r}.")
        self.low = low
        self.high = high

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        return [length_score(response, self.low, self.high) for response in responses]

    def __repr__(self) -> str:
        return f"LengthJudge(low={self.low}, high={self.high})"


def length(prompts: list[str], responses: list[str]) -> list[float]:
    """Judge: 1 for answers of 8 to 60 words, less outside (0 when empty or over 120 words)."""
    return LengthJudge()(prompts, responses)
