"""Offline gold judges and rule judges: automated scores for evaluation, the RL reward mix and safety evaluation.

Every judge is a batched function `fn(prompts: list[str], responses: list[str]) -> list[float]`, one float per
response, higher is better, so the RL trainers take them as reward sources by name (`JUDGES`) or as
`alinea.judges:sentiment`. Nothing is downloaded: VADER's lexicon and py3langid's model ship with their packages.

| name                   | measures                                                        | range    |
|------------------------|-----------------------------------------------------------------|----------|
| `sentiment`            | VADER compound (English), the demo lexicon (fr, es, mg)          | [-1, 1]  |
| `sentiment_lexicon`    | the demo data's own lexicon score, every language                | (-1, 1)  |
| `language_consistency` | 1 if the answer is in the prompt's language (alias `language`)   | {0, 1}   |
| `length`               | 1 within 8..60 words, falling linearly to 0 outside              | [0, 1]   |
| `non_toxic`            | 1 unless a listed insult or profanity occurs                     | {0, 1}   |
| `non_refusal`          | 1 unless the answer opens with a refusal                         | {0, 1}   |
| `harmless`             | 1 - harm: toxic terms, or a harmful request answered (`harm.py`) | [0, 1]   |

`DETECTORS` holds the rule judges the other way round (`toxicity`, `refusal`: 1 = found; `harm` in [0, 1]), for
safety evaluation and as costs of constrained RL.
`weighted({...})` and `parse_judge_spec("sentiment=1,language=0.5")` build a weighted sum of judges that also
reports each term (`components`). docs/judges.md has each judge's measured accuracy and what it does not cover.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from alinea.errors import UserError
from alinea.judges.harm import harm, harm_score, harmful_request_phrase, harmless, is_harmful_request
from alinea.judges.language import (
    DEFAULT_CANDIDATES,
    LanguageGuess,
    identify_language,
    language_consistency,
    language_matches,
    supported_languages,
)
from alinea.judges.length import DEFAULT_LENGTH_RANGE, LengthJudge, length, length_score
from alinea.judges.refusal import is_refusal, non_refusal, refusal, refusal_phrase
from alinea.judges.sentiment import sentiment, sentiment_lexicon, sentiment_score, vader_compound
from alinea.judges.toxicity import is_toxic, non_toxic, toxic_terms, toxicity

RewardFn = Callable[[list[str], list[str]], Sequence[float]]
"""A batched judge: prompts and responses in, one float per response out (higher is better)."""

JUDGES: dict[str, RewardFn] = {
    "sentiment": sentiment,
    "sentiment_lexicon": sentiment_lexicon,
    "language_consistency": language_consistency,
    "language": language_consistency,
    "length": length,
    "non_toxic": non_toxic,
    "non_refusal": non_refusal,
    "harmless": harmless,
}
"""Judge name -> batched function; every one is higher-is-better (`language` is an alias of `language_consistency`)."""

DETECTORS: dict[str, RewardFn] = {"toxicity": toxicity, "refusal": refusal, "harm": harm}
"""Rule detectors: 1.0 where the thing was found, else 0.0 (lower is better; give them a negative weight in a mix)."""


def get_judge(name: str) -> RewardFn:
    """A judge or detector by name, or any batched function as `package.module:function`; unknown names: UserError."""
    name = name.strip()
    if name in JUDGES:
        return JUDGES[name]
    if name in DETECTORS:
        return DETECTORS[name]
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UserError(f"judge {name!r}: cannot import module {module_name!r} ({err}).") from None
        fn = getattr(module, attribute, None)
        if not callable(fn):
            raise UserError(f"judge {name!r}: module {module_name!r} has no function {attribute!r}.")
        return fn
    known = ", ".join([*JUDGES, *DETECTORS])
    raise UserError(f"judge {name!r}: no such judge; expected one of {known}, or package.module:function.")


@dataclass(frozen=True)
class JudgeTerm:
    """One term of a weighted mix."""

    name: str
    """How the term is reported: the judge name or `module:function`."""
    fn: RewardFn
    """The batched function."""
    weight: float
    """Its weight in the sum (may be negative, e.g. for a detector)."""


class WeightedJudge:
    """A weighted sum of judges: `total = sum_i weight_i * judge_i(prompts, responses)` (no normalisation).

    Itself a batched judge; `components` returns each term's unweighted scores for logging.
    """

    def __init__(self, terms: Sequence[JudgeTerm]) -> None:
        if not terms:
            raise UserError("judge mix: no judge given; name at least one, e.g. sentiment=1.")
        self.terms = tuple(terms)

    @property
    def names(self) -> list[str]:
        return [term.name for term in self.terms]

    @property
    def weights(self) -> list[float]:
        return [term.weight for term in self.terms]

    @property
    def spec(self) -> str:
        """The mix as `parse_judge_spec` reads it: "sentiment=1,language_consistency=0.5"."""
        return ",".join(f"{term.name}={term.weight:g}" for term in self.terms)

    def components(self, prompts: list[str], responses: list[str]) -> dict[str, list[float]]:
        """Each term's unweighted scores, keyed by name; a wrong count or a non-finite value is a UserError."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        scores: dict[str, list[float]] = {}
        for term in self.terms:
            values = [float(v) for v in term.fn(list(prompts), list(responses))]
            if len(values) != len(responses):
                raise UserError(f"judge {term.name}: returned {len(values)} scores for {len(responses)} responses.")
            bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
            if bad:
                raise UserError(f"judge {term.name}: non-finite score at response {bad[0]} ({values[bad[0]]}).")
            scores[term.name] = values
        return scores

    def combine(self, components: Mapping[str, Sequence[float]]) -> list[float]:
        """The weighted total of precomputed `components` (as returned by `components`)."""
        n = len(next(iter(components.values())))
        return [sum(term.weight * components[term.name][i] for term in self.terms) for i in range(n)]

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        return self.combine(self.components(prompts, responses))

    def __repr__(self) -> str:
        return f"WeightedJudge({self.spec!r})"


def _term_name(judge: str | RewardFn) -> str:
    if isinstance(judge, str):
        return judge.strip()
    for name, fn in JUDGES.items():
        if fn is judge:
            return name
    qualname = getattr(judge, "__qualname__", None)
    return f"{judge.__module__}:{qualname}" if qualname else repr(judge)


def weighted(weights: Mapping[str | RewardFn, float] | Iterable[tuple[str | RewardFn, float]]) -> WeightedJudge:
    """A weighted sum of judges, each given by name (`JUDGES`, `DETECTORS`, `module:function`) or as a function.

    >>> mix = weighted({"sentiment_lexicon": 1.0, "length": 0.5})
    >>> mix(["Review a film."], ["A wonderful film."])
    [0.6875]
    """
    pairs = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    terms = []
    for judge, weight in pairs:
        name = _term_name(judge)
        fn = get_judge(judge) if isinstance(judge, str) else judge
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise UserError(f"judge mix: the weight of {name} must be a finite number, got {weight!r}.")
        if name in (term.name for term in terms):
            raise UserError(f"judge mix: {name} appears twice; give each judge once.")
        terms.append(JudgeTerm(name, fn, float(weight)))
    return WeightedJudge(terms)


def parse_judge_spec(spec: str) -> WeightedJudge:
    """A weighted mix from text: comma-separated `name=weight` parts; a part without `=` has weight 1.

    Names are those of `JUDGES` and `DETECTORS`, or `package.module:function`. Every mistake is a UserError that
    quotes the bad part: `parse_judge_spec("sentiment=1,language=x")` -> "... part 'language=x': the weight 'x' is
    not a number ...".
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UserError("judge spec: empty; expected name=weight parts separated by commas, e.g. sentiment=1,language=0.5.")
    terms: list[JudgeTerm] = []
    for raw_part in spec.split(","):
        part = raw_part.strip()
        where = f"judge spec {spec!r}: part {part!r}"
        if not part:
            raise UserError(f"judge spec {spec!r}: an empty part (two commas in a row, or a comma at an end).")
        name, has_weight, weight_text = part.partition("=")
        name = name.strip()
        if not name:
            raise UserError(f"{where}: no judge name before '='.")
        weight = 1.0
        if has_weight:
            try:
                weight = float(weight_text.strip())
            except ValueError:
                raise UserError(f"{where}: the weight {weight_text.strip()!r} is not a number (e.g. 0.5).") from None
            if not math.isfinite(weight):
                raise UserError(f"{where}: the weight must be finite, got {weight_text.strip()!r}.")
        if any(term.name == name for term in terms):
            raise UserError(f"{where}: {name} appears twice; give each judge once.")
        try:
            fn = get_judge(name)
        except UserError as err:
            raise UserError(f"{where}: {err.message}") from None
        terms.append(JudgeTerm(name, fn, weight))
    if all(term.weight == 0 for term in terms):
        raise UserError(f"judge spec {spec!r}: every weight is 0, so the mix would score everything 0.")
    return WeightedJudge(terms)


__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_LENGTH_RANGE",
    "DETECTORS",
    "JUDGES",
    "JudgeTerm",
    "LanguageGuess",
    "LengthJudge",
    "RewardFn",
    "WeightedJudge",
    "get_judge",
    "harm",
    "harm_score",
    "harmful_request_phrase",
    "harmless",
    "identify_language",
    "is_harmful_request",
    "is_refusal",
    "is_toxic",
    "language_consistency",
    "language_matches",
    "length",
    "length_score",
    "non_refusal",
    "non_toxic",
    "parse_judge_spec",
    "refusal",
    "refusal_phrase",
    "sentiment",
    "sentiment_lexicon",
    "sentiment_score",
    "supported_languages",
    "toxic_terms",
    "toxicity",
    "vader_compound",
    "weighted",
]
