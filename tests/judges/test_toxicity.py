"""The word-list toxicity check: hits in four languages, whole-word matching, no hits on the demo data."""

import pytest

from alinea.data.synthetic import generate_demonstrations, generate_documents
from alinea.judges import JUDGES, is_toxic, non_toxic, toxic_terms, toxicity

HITS = [
    ("You are such an idiot.", ["idiot"]),
    ("Shut up and go away.", ["shut up"]),
    ("Those IDIOTS never listen.", ["idiots"]),
    ("Ferme ta gueule !", ["ta gueule"]),
    ("Quels imbéciles, ces gens.", ["imbeciles"]),
    ("Je te déteste.", ["je te deteste"]),
    ("Eres un imbécil.", ["imbecil"]),
    ("¡Cállate, idiota!", ["callate", "idiota"]),
    ("Vete a la mierda.", ["vete a la mierda"]),
    ("Adala ianao!", ["adala"]),
    ("Halako ianao.", ["halako ianao"]),
]
# Substrings of listed terms inside innocent words, and negative opinions that are not abuse.
NON_HITS = [
    "Our class visited the museum with a teaching assistant.",
    "This passage about the bass player embarrassed nobody.",
    "I lift a dumbbell every morning; the glass is on the table.",
    "Un café con leche, por favor.",
    "The soup was terrible and the service awful.",
    "I hate waiting for the bus.",
    "Ce film est nul et décevant.",
    "Ratsy ny sakafo.",
    "Shutters up, lights on.",
    "The shiitake risotto was lovely.",
]


@pytest.mark.parametrize(("text", "terms"), HITS)
def test_listed_terms_are_found(text, terms):
    assert toxic_terms(text) == terms
    assert is_toxic(text)


@pytest.mark.parametrize("text", NON_HITS)
def test_whole_words_only(text):
    assert toxic_terms(text) == []
    assert not is_toxic(text)


def test_batch_judges():
    texts = [HITS[0][0], NON_HITS[0], HITS[9][0]]
    assert toxicity(["p"] * 3, texts) == [1.0, 0.0, 1.0]
    assert non_toxic(["p"] * 3, texts) == [0.0, 1.0, 0.0]
    assert JUDGES["non_toxic"] is non_toxic and "toxicity" not in JUDGES  # JUDGES are higher-is-better


def test_no_false_positive_on_the_demo_data():
    texts = [d.text for d in generate_documents(1500, seed=4)]
    texts += [r["response"] for r in generate_demonstrations(1500, seed=4)]
    assert [t for t in texts if is_toxic(t)] == []
