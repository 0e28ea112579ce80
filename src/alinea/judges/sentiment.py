"""Sentiment judges: how positive an answer is, in [-1, 1] (higher is more positive).

- `sentiment`: English answers get VADER's compound score (Hutto & Gilbert 2014, "VADER: A Parsimonious Rule-based
  Model for Sentiment Analysis of Social Media Text": a hand-rated lexicon plus rules for negation, intensifiers
  such as "very", capitals and "!", normalised to [-1, 1] by `x / sqrt(x^2 + 15)`). VADER knows only English, so
  French, Spanish and Malagasy answers get `alinea.data.synthetic.score_sentiment`, the lexicon score the demo data
  is generated with. The answer's language is identified offline (`alinea.judges.language`).
- `sentiment_lexicon`: `score_sentiment` for every language: exactly the definition of sentiment the synthetic
  data uses, so it is the judge to use where the demo's gold judge must agree with its data.

Both can be gamed (repeated positive words, exclamation marks for VADER); the KL penalty is what holds a policy back.
docs/judges.md gives how well each agrees with the synthetic documents' labels.
"""

from __future__ import annotations

import functools

from alinea.data.synthetic import score_sentiment
from alinea.judges.language import UNDETERMINED, identify_language


@functools.lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(text: str) -> float:
    """VADER's compound score of `text` in [-1, 1]; 0 for a text without sentiment words."""
    return float(_vader().polarity_scores(text)["compound"])


def sentiment_score(text: str, language: str | None = None) -> float:
    """Sentiment of one text in [-1, 1]: VADER for English, the synthetic data's lexicon score otherwise.

    `language` (an ISO 639 code) skips identification when the caller knows it; None identifies it.
    """
    if language is None:
        language = identify_language(text).language
    if language == UNDETERMINED:
        return 0.0
    if language.split("-")[0].lower() == "en":
        return vader_compound(text)
    return float(score_sentiment(text))


def sentiment(prompts: list[str], responses: list[str]) -> list[float]:
    """Judge: each response's sentiment in [-1, 1] (VADER for English, the demo lexicon for fr/es/mg)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    return [sentiment_score(response) for response in responses]


def sentiment_lexicon(prompts: list[str], responses: list[str]) -> list[float]:
    """Judge: each response's `score_sentiment` in (-1, 1), the synthetic data's own definition, in every language."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    return [float(score_sentiment(response)) for response in responses]
