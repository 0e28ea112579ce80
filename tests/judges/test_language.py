"""The language identifier and the language-consistency judge, on sentences written for these tests."""

import pytest

from alinea.errors import UserError
from alinea.judges import (
    JUDGES,
    identify_language,
    language_consistency,
    language_matches,
    supported_languages,
)

# Written for these tests (not drawn from the synthetic data): the same sentence in the four languages.
SENTENCES = {
    "en": "The train was late again this morning, so I walked to work.",
    "fr": "Le train était encore en retard ce matin, alors je suis allé au travail à pied.",
    "es": "El tren volvió a llegar tarde esta mañana, así que fui andando al trabajo.",
    "mg": "Tara indray ny lamasinina androany maraina, ka nandeha an-tongotra nankany am-piasana aho.",
}
SHORT = {
    "en": "Thank you!",
    "fr": "Merci beaucoup !",
    "es": "¡Muchas gracias!",
    "mg": "Misaotra betsaka!",
}
PROMPTS = {
    "en": "Could you tell me how to make a simple tomato soup?",
    "fr": "Peux-tu m'expliquer comment faire une soupe de tomates toute simple ?",
    "es": "¿Me puedes explicar cómo hacer una sopa de tomate sencilla?",
    "mg": "Azonao hazavaina ve ny fomba fanaovana lasopy voatabia tsotra?",
}


def test_malagasy_is_covered_by_the_bundled_model():
    languages = supported_languages()
    assert {"en", "fr", "es", "mg"} <= set(languages)
    assert "und" not in languages


@pytest.mark.parametrize("language", ["en", "fr", "es", "mg"])
def test_sentences_and_short_phrases(language):
    guess = identify_language(SENTENCES[language])
    assert guess.language == language
    assert guess.reliable and guess.confidence > 0.99
    short = identify_language(SHORT[language])
    assert short.language == language
    assert not short.reliable  # fewer than 3 words: right here, but not to be trusted in general
    assert identify_language(PROMPTS[language]).language == language


def test_text_without_letters_is_undetermined():
    for text in ("", "   ", "42!!", "3.14 :-)"):
        guess = identify_language(text)
        assert guess.language == "und" and guess.confidence == 0.0 and guess.n_words == 0
    # Letters, but nothing the model knows and no function word: no evidence either way.
    assert identify_language("ok").language == "und"
    assert language_consistency([PROMPTS["en"]], ["ok"]) == [0.0]


def test_candidates_restrict_the_answer():
    assert identify_language(SENTENCES["fr"], candidates=("en", "es")).language in ("en", "es")
    assert identify_language("Guten Morgen, wie geht es dir heute?", candidates=("en", "fr", "es", "mg", "de")).language == "de"
    assert identify_language("anything at all", candidates=("mg",)).language == "mg"
    with pytest.raises(UserError, match="xx"):
        identify_language("anything at all", candidates=("xx",))


def test_unknown_candidate_is_a_user_error():
    with pytest.raises(UserError, match="'xx'"):
        identify_language("hello there", candidates=("en", "xx"))
    with pytest.raises(UserError, match="empty"):
        identify_language("hello there", candidates=())


def test_language_consistency_catches_wrong_language_answers():
    prompts, responses, expected = [], [], []
    for prompt_language, prompt in PROMPTS.items():
        for answer_language, answer in SENTENCES.items():
            prompts.append(prompt)
            responses.append(answer)
            expected.append(float(prompt_language == answer_language))
    assert language_consistency(prompts, responses) == expected
    assert sum(expected) == 4 and len(expected) == 16
    assert JUDGES["language"] is language_consistency and JUDGES["language_consistency"] is language_consistency


def test_language_consistency_edge_cases():
    # An empty or letterless answer is never consistent; a letterless prompt accepts anything.
    assert language_consistency([PROMPTS["fr"], PROMPTS["fr"]], ["", "!!!"]) == [0.0, 0.0]
    assert language_consistency(["???"], [SENTENCES["mg"]]) == [1.0]
    with pytest.raises(ValueError):
        language_consistency(["a", "b"], ["c"])


def test_language_matches_with_known_languages():
    responses = [SENTENCES["en"], SENTENCES["mg"], SENTENCES["es"], SENTENCES["fr"]]
    assert language_matches(["en", "fr", "es-MX", "und"], responses) == [1.0, 0.0, 1.0, 1.0]
