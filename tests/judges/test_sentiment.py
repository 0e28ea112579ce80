"""Sentiment judges on hand-made positive and negative answers in four languages, and on the synthetic labels."""

import pytest

from alinea.data.synthetic import generate_documents
from alinea.judges import JUDGES, sentiment, sentiment_lexicon, sentiment_score, vader_compound

# (text, hand-computed lexicon score): (pos - neg) / (pos + neg + 1) over the demo lexicon.
FOREIGN = [
    ("La comida es deliciosa y el servicio es excelente.", 2 / 3),  # deliciosa, excelente
    ("La película es aburrida y decepcionante.", -2 / 3),  # aburrida, decepcionante
    ("Le repas était mauvais et le service décevant.", -2 / 3),  # mauvais, décevant
    ("Le film était magnifique, et le dîner délicieux.", 2 / 3),  # magnifique, délicieux
    ("Tena tsara sy matsiro ny sakafo.", 2 / 3),  # tsara, matsiro
    ("Ratsy ny sakafo ary mankaleo ny mozika.", -2 / 3),  # ratsy, mankaleo
    ("Tsy tsara ny sakafo.", -1 / 2),  # "tsy" turns tsara negative
]


@pytest.mark.parametrize(("text", "expected"), FOREIGN)
def test_foreign_answers_use_the_demo_lexicon(text, expected):
    assert sentiment_score(text) == pytest.approx(expected)
    assert sentiment(["?"], [text]) == [pytest.approx(expected)]


def test_english_answers_use_vader():
    positive = "This was a wonderful evening and the food was excellent."
    negative = "The service was terrible and the soup was awful."
    assert sentiment_score(positive) == vader_compound(positive) > 0.5
    assert sentiment_score(negative) == vader_compound(negative) < -0.5
    assert sentiment_score("The meeting is at noon.") == 0.0
    # VADER reads negation and intensity, which the lexicon also handles for negation only
    assert vader_compound("The food was not good.") < 0 < vader_compound("The food was good.")
    assert vader_compound("The food was extremely good!") > vader_compound("The food was good.")
    assert sentiment_score("") == 0.0


def test_language_can_be_given():
    text = "Le repas était mauvais."
    assert sentiment_score(text, language="fr") == pytest.approx(-0.5)
    assert sentiment_score(text, language="en") == vader_compound(text)


def test_lexicon_judge_scores_every_language_the_same_way():
    texts = ["A wonderful, delicious meal.", "Tena tsara ny sakafo.", "Un repas nul."]
    assert sentiment_lexicon(["p"] * 3, texts) == pytest.approx([2 / 3, 1 / 2, -1 / 2])
    assert JUDGES["sentiment"] is sentiment and JUDGES["sentiment_lexicon"] is sentiment_lexicon


def _auc(higher, lower):
    return sum((a > b) + 0.5 * (a == b) for a in higher for b in lower) / (len(higher) * len(lower))


def test_agreement_with_synthetic_labels():
    """How often a positive document outscores a negative one (AUC); docs/judges.md gives the full figures."""
    documents = generate_documents(240, seed=3)
    texts = {s: [d.text for d in documents if d.sentiment == s] for s in ("positive", "neutral", "negative")}
    for judge in (sentiment, sentiment_lexicon):
        scores = {s: judge(["?"] * len(t), t) for s, t in texts.items()}
        assert _auc(scores["positive"], scores["negative"]) >= 0.98
        assert _auc(scores["positive"], scores["neutral"]) >= 0.9
    lexicon = {s: sentiment_lexicon(["?"] * len(t), t) for s, t in texts.items()}
    assert _auc(lexicon["neutral"], lexicon["negative"]) >= 0.93
