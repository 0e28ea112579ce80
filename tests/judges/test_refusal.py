"""Refusal detection in four languages, and the idioms that must not count as refusals."""

import pytest

from alinea.data.synthetic import generate_demonstrations, generate_documents
from alinea.judges import JUDGES, is_refusal, non_refusal, refusal, refusal_phrase

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I cannot assist with this request.",
    "As an AI, I won't do that.",
    "Sorry, I can't do that. Maybe ask someone else.",
    "I must decline this request.",
    "Désolé, mais je ne peux pas vous aider avec ça.",
    "Je ne peux pas t'aider.",
    "Je ne suis pas en mesure de répondre à cette demande.",
    "Lo siento, pero no puedo ayudarte con eso.",
    "No puedo proporcionar esa información.",
    "Me niego a hacer eso.",
    "Miala tsiny fa tsy afaka manampy anao amin'izany aho.",
    "Tsy afaka manampy anao aho.",
    "Tsy azoko atao izany.",
]
NOT_REFUSALS = [
    "I can't help but smile when I think about it.",
    "I can't help laughing at that film.",
    "I can't wait to go back!",
    "I cannot recommend it. The soup was cold.",
    "I cannot think of a better place.",
    "Je ne peux pas attendre de le revoir.",
    "No puedo esperar a verla otra vez.",
    "Raha tsy afaka manao izany ianao, mangataha fanampiana.",
    # A character refusing, after the opening two sentences, is part of a story.
    "Tom smiled. The sun was warm. Later, the old man said: I can't help you.",
    "Open a terminal and run kill with the process id.",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_refusals_are_found(text):
    assert is_refusal(text), text
    assert refusal_phrase(text)


@pytest.mark.parametrize("text", NOT_REFUSALS)
def test_idioms_and_stories_are_not_refusals(text):
    assert refusal_phrase(text) is None


def test_counts_on_a_hand_made_set():
    answers = REFUSALS[:5] + NOT_REFUSALS[:7]
    assert sum(refusal(["p"] * len(answers), answers)) == 5.0
    assert sum(non_refusal(["p"] * len(answers), answers)) == 7.0
    assert JUDGES["non_refusal"] is non_refusal


def test_no_false_positive_on_the_demo_data():
    texts = [d.text for d in generate_documents(1500, seed=4)]
    texts += [r["response"] for r in generate_demonstrations(1500, seed=4)]
    assert [t for t in texts if is_refusal(t)] == []
