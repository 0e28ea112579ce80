"""Offline language identification, and the language-consistency judge: is the answer in the prompt's language?

The identifier is py3langid (a maintained fork of langid.py, Lui & Baldwin 2012: a naive Bayes classifier over byte
n-grams, trained on many domains). Its model ships with the package, so nothing is downloaded. py3langid 0.4 knows
140 labels; Malagasy (`mg`) is one of them, and so are English, French and Spanish. `supported_languages()` lists
them at run time.

Restricting the classifier to the languages that can occur (here English, French, Spanish and Malagasy by default)
makes it far more accurate on short texts: with all 140 labels, a three-word Spanish fragment is often taken for
Catalan, Galician or Portuguese. A text in a language outside the candidates is forced into one of them; pass a larger
`candidates` set to catch such answers.

Short texts. Below `SHORT_TEXT_WORDS` words the byte n-grams carry little evidence, so a few function words per
language ("the", "est", "los", "ny", ...) are added as a tie-break: each such word adds `FUNCTION_WORD_BONUS` to the
log-probability of its language. A text with no letter at all, or with no feature the model knows and no function
word (e.g. "ok"), is `und` (undetermined). docs/judges.md gives the
measured accuracy by length (`alinea eval language-id`).
"""

from __future__ import annotations

import copy
import functools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from alinea.errors import UserError

DEFAULT_CANDIDATES = ("en", "fr", "es", "mg")
"""The languages of the demo data: English, French, Spanish and Malagasy."""

UNDETERMINED = "und"
"""The language of a text without evidence: no letter (empty, digits, punctuation, emoji) or no n-gram the model knows
and no function word; ISO 639-2 'undetermined'."""

SHORT_TEXT_WORDS = 4
"""Texts with fewer words than this get the function-word tie-break."""

FUNCTION_WORD_BONUS = 1.0
"""Log-probability added to a language for each of its function words in a short text."""

RELIABLE_WORDS = 3
"""A guess is `reliable` with at least this many words ..."""

RELIABLE_CONFIDENCE = 0.8
"""... and at least this probability (among the candidates)."""

# Frequent words that belong to one candidate language only: words shared by two are left out ("la", "de", "en",
# "no", "que", "tu", "es" as in French "tu es", "y" as in "il y a", "he" as in Spanish "he visto", "mes").
# Written from general knowledge of the languages, not tuned on the synthetic data.
_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the an is are was were you she it we they and of to my your this that with not yes thanks thank "
        "please hello what how very would will can".split()
    ),
    "fr": frozenset(
        "le les une des est et je il elle nous vous du au aux pas oui merci bonjour très c'est ce qui mon ma "
        "avec pour dans sur ton ta était".split()
    ),
    "es": frozenset(
        "el los las una yo tú del al sí gracias hola muy con para mi está por pero su lo esto esta fue".split()
    ),
    "mg": frozenset(
        "ny dia sy ary aho ianao izy tsy eny tsia misaotra salama tena ve ho amin'ny an'i izany ity io fa nefa koa "
        "tsara izao hoe".split()
    ),
}

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


@dataclass(frozen=True)
class LanguageGuess:
    """The identified language of one text."""

    language: str
    """An ISO 639 code among the candidates, or `und` for a text without letters."""
    confidence: float
    """Probability of `language` among the candidates (0 for `und`)."""
    n_words: int
    """Words in the text (runs of letters)."""

    @property
    def reliable(self) -> bool:
        """At least `RELIABLE_WORDS` words and `RELIABLE_CONFIDENCE` probability: short or unsure guesses are not."""
        return self.n_words >= RELIABLE_WORDS and self.confidence >= RELIABLE_CONFIDENCE


@functools.lru_cache(maxsize=1)
def _full_identifier():
    """py3langid's bundled model with probabilities normalised, loaded once (about half a second)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    if hasattr(LanguageIdentifier, "from_model_file"):  # py3langid >= 0.4
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)  # py3langid 0.3


def supported_languages() -> tuple[str, ...]:
    """Every language code the bundled model can return, sorted."""
    identifier = _full_identifier()
    labels = identifier.labels if hasattr(identifier, "labels") else identifier.nb_classes
    return tuple(sorted(set(labels)))


@functools.lru_cache(maxsize=16)
def _identifier(candidates: tuple[str, ...]):
    """A copy of the model restricted to `candidates` (the copy shares the full model's read-only arrays)."""
    restricted = copy.copy(_full_identifier())
    restricted.set_languages(list(candidates))
    return restricted


@functools.lru_cache(maxsize=64)
def _checked_candidates(codes: tuple[str, ...]) -> tuple[str, ...]:
    if not codes:
        raise UserError("language identification: the candidate set is empty; give at least one language code.")
    unknown = [code for code in codes if code not in supported_languages()]
    if unknown:
        raise UserError(
            f"language identification: {', '.join(repr(c) for c in unknown)} not covered by py3langid's model; "
            f"covered codes: {', '.join(supported_languages())}."
        )
    return codes


def _check_candidates(candidates: Sequence[str]) -> tuple[str, ...]:
    return _checked_candidates(tuple(dict.fromkeys(candidates)))


def identify_language(text: str, candidates: Sequence[str] = DEFAULT_CANDIDATES) -> LanguageGuess:
    """The language of `text` among `candidates` (ISO 639 codes py3langid covers); `und` when it has no letter.

    >>> identify_language("Tena tsara ny sakafo.").language
    'mg'
    """
    codes = _check_candidates(candidates)
    words = _WORD.findall(unicodedata.normalize("NFC", text).replace("\u2019", "'").lower())
    if not words:
        return LanguageGuess(UNDETERMINED, 0.0, 0)
    if len(codes) == 1:
        return LanguageGuess(codes[0], 1.0, len(words))
    probabilities = dict(_identifier(codes).rank(text))
    if len(words) < SHORT_TEXT_WORDS:
        # Tie-break on function words: log p(lang) + bonus * hits, renormalised.
        scores = {
            code: math.log(max(p, 1e-12))
            + FUNCTION_WORD_BONUS * sum(word in _FUNCTION_WORDS.get(code, ()) for word in words)
            for code, p in probabilities.items()
        }
        top = max(scores.values())
        exps = {code: math.exp(score - top) for code, score in scores.items()}
        total = sum(exps.values())
        probabilities = {code: value / total for code, value in exps.items()}
    if max(probabilities.values()) - min(probabilities.values()) < 1e-9:
        return LanguageGuess(UNDETERMINED, 0.0, len(words))  # no evidence at all (e.g. "ok")
    best = max(codes, key=lambda code: probabilities.get(code, 0.0))
    return LanguageGuess(best, float(probabilities[best]), len(words))


def language_matches(
    expected: Sequence[str], responses: Sequence[str], candidates: Sequence[str] = DEFAULT_CANDIDATES
) -> list[float]:
    """1.0 where the response is identified as the expected language code, else 0.0 (when the prompt's language is
    known, e.g. a record's `language` field). An expected `und` (or empty) accepts any answer."""
    if len(expected) != len(responses):
        raise ValueError(f"{len(expected)} expected languages for {len(responses)} responses")
    scores = []
    for language, response in zip(expected, responses, strict=True):
        if not language or language == UNDETERMINED:
            scores.append(1.0)
            continue
        primary = language.split("-")[0].lower()  # "pt-BR" -> "pt"
        scores.append(float(identify_language(response, candidates).language == primary))
    return scores


def language_consistency(prompts: list[str], responses: list[str]) -> list[float]:
    """Judge: 1.0 when the answer is in the prompt's language, else 0.0 (both identified among en, fr, es, mg).

    An answer without letters (empty, only digits or punctuation) scores 0; a prompt without letters accepts any answer.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    expected = [identify_language(prompt).language for prompt in prompts]
    return language_matches(expected, responses)
