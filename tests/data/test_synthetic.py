"""Tests for the synthetic demo data: determinism, variety, grammar checks, labels, record shapes, the sentiment
score and the files written."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from alinea.data.synthetic import (
    KINDS,
    LANGUAGES,
    SENTIMENTS,
    generate_corpus,
    generate_demonstrations,
    generate_documents,
    generate_foreign_documents,
    generate_prompts,
    score_sentiment,
    sentiment_lexicon,
    write_demo_data,
)


def split_sentences(text: str) -> list[str]:
    """Sentences end with . ! or ? followed by whitespace (a quoted "...!" said X does not end one)."""
    return [part for part in re.split(r"(?<=[.!?])\s+", text.strip()) if part]


@pytest.fixture(scope="module")
def documents():
    """The corpus at its default size (about 0.6 s to generate)."""
    return generate_documents()


# --- determinism ------------------------------------------------------------------------------------------------------


def test_same_seed_gives_same_output_and_different_seed_different_output():
    assert generate_corpus(200, seed=0) == generate_corpus(200, seed=0)
    assert generate_corpus(200, seed=0) != generate_corpus(200, seed=1)
    assert generate_prompts(50, seed=3) == generate_prompts(50, seed=3)
    assert generate_prompts(50, seed=3) != generate_prompts(50, seed=4)
    assert generate_demonstrations(50, seed=3) == generate_demonstrations(50, seed=3)
    assert generate_demonstrations(50, seed=3) != generate_demonstrations(50, seed=4)


def test_prompts_and_demonstrations_use_separate_streams():
    prompts = {record["prompt"] for record in generate_prompts(100)}
    demonstration_prompts = [record.get("prompt") for record in generate_demonstrations(100)]
    shared = sum(prompt in prompts for prompt in demonstration_prompts)
    assert shared < 20


def test_write_demo_data_is_byte_identical_for_the_same_seed(tmp_path):
    sizes = dict(n_documents=300, n_prompts=40, n_demonstrations=40)
    first = write_demo_data(tmp_path / "a", seed=7, **sizes)
    second = write_demo_data(tmp_path / "b", seed=7, **sizes)
    other = write_demo_data(tmp_path / "c", seed=8, **sizes)
    for name in ("corpus", "prompts", "demonstrations"):
        assert first[name].read_bytes() == second[name].read_bytes()
        assert first[name].read_bytes() != other[name].read_bytes()


# --- the corpus -------------------------------------------------------------------------------------------------------


def test_default_corpus_size_and_variety(documents):
    texts = [document.text for document in documents]
    size = len("\n\n".join(texts).encode("utf-8"))
    assert 2_000_000 <= size <= 4_000_000, size
    assert len(set(texts)) / len(texts) > 0.95
    sentences = [sentence for text in texts for sentence in split_sentences(text)]
    assert len(set(sentences)) > 10_000
    assert len(set(sentences)) / len(sentences) > 0.25


def test_every_document_has_two_to_eight_sentences(documents):
    counts = Counter(len(split_sentences(document.text)) for document in documents)
    assert min(counts) >= 2 and max(counts) <= 8, counts
    assert counts[2] < counts[6] < counts[8]  # mostly longer documents


def test_kinds_and_sentiments_are_balanced(documents):
    kinds = Counter(document.kind for document in documents)
    assert set(kinds) == set(KINDS)
    assert all(0.10 <= kinds[kind] / len(documents) <= 0.45 for kind in KINDS), kinds
    sentiments = Counter(document.sentiment for document in documents)
    assert all(0.20 <= sentiments[sentiment] / len(documents) <= 0.50 for sentiment in SENTIMENTS), sentiments
    topics = Counter((document.kind, document.topic) for document in documents)
    for topic in ("product", "restaurant", "film", "book"):
        assert topics["review", topic] > 300
    assert topics["note", "howto"] > 0 and topics["note", "facts"] > 0


def test_surface_grammar(documents):
    """Articles agree with the next sound, slots are all filled, sentences are capitalised and punctuated."""
    for document in documents[:2000]:
        text = document.text
        assert not re.search(r"\b[Aa] (?!uni|use|usu|one|eu)[aeiouAEIOU]", text), text
        assert not re.search(r"\b[Aa]n (?!hour|honest)[^aeiouAEIOU\W]", text), text
        assert "{" not in text and "}" not in text, text
        assert "  " not in text and not re.search(r" [,.!?]", text), text
        assert "\n\n" not in text
        body = text.replace("Q: ", "").replace("\nA: ", " ")
        for sentence in split_sentences(body):
            assert sentence[0].isupper() or sentence[0] == '"', (sentence, text)
        assert text[-1] in ".!?", text


def test_replies_are_a_question_then_an_answer(documents):
    replies = [document.text for document in documents if document.kind == "reply"]
    assert replies
    for text in replies:
        question, answer = text.split("\n")
        assert question.startswith("Q: ") and question.endswith("?")
        assert answer.startswith("A: ") and len(answer) > 10


def test_sentiment_labels_are_visible_to_the_score(documents):
    """The lexicon score separates the three sentiments: a reward can steer towards one of them."""
    by_sentiment = {sentiment: [] for sentiment in SENTIMENTS}
    for document in documents:
        by_sentiment[document.sentiment].append(score_sentiment(document.text))
    mean = {sentiment: sum(scores) / len(scores) for sentiment, scores in by_sentiment.items()}
    assert mean["positive"] > 0.5
    assert mean["negative"] < -0.5
    assert abs(mean["neutral"]) < 0.15
    assert sum(score > 0 for score in by_sentiment["positive"]) / len(by_sentiment["positive"]) > 0.95
    assert sum(score < 0 for score in by_sentiment["negative"]) / len(by_sentiment["negative"]) > 0.90


def test_stories_keep_their_characters_pronouns():
    stories = [document.text for document in generate_documents(600, seed=2) if document.kind == "story"]
    female = re.compile(r"\b(Maya|Clara|Nora|Priya|Sofia|Hannah)\b (walked|went|decided|set off)")
    checked = 0
    for text in stories:
        match = female.match(text.split(", ", 1)[-1]) or female.match(text)
        if match:
            about_her = text.replace("an old man carry his bags", "")  # the one "his" that is not about her
            assert not re.search(r"\b([Hh]e|[Hh]is|him|himself)\b", about_her), text
            checked += 1
    assert checked > 5


# --- prompts ----------------------------------------------------------------------------------------------------------


def test_prompt_records_have_the_schema():
    prompts = generate_prompts(200)
    assert len(prompts) == 200
    assert len({record["id"] for record in prompts}) == 200
    for record in prompts:
        assert set(record) == {"type", "id", "prompt", "language", "tags"}
        assert record["type"] == "prompt"
        assert re.fullmatch(r"p-\d{6}", record["id"])
        assert isinstance(record["prompt"], str) and len(record["prompt"].strip()) > 10
        assert record["language"] in LANGUAGES
        kind, target, language = record["tags"]
        assert kind in KINDS
        assert target in {f"target:{sentiment}" for sentiment in SENTIMENTS}
        assert language == f"lang:{record['language']}"


def test_prompt_languages_are_mostly_english_with_each_other_language_present():
    prompts = generate_prompts(200)
    languages = Counter(record["language"] for record in prompts)
    assert languages["en"] == 180
    assert languages["fr"] >= 6 and languages["es"] >= 6 and languages["mg"] >= 6
    assert Counter(record["tags"][0] for record in prompts).keys() == set(KINDS)


def test_foreign_share_sets_the_languages_of_prompts_and_demonstrations():
    prompts = generate_prompts(300, foreign_share=0.3)
    languages = Counter(record["language"] for record in prompts)
    assert languages == {"en": 210, "fr": 30, "es": 30, "mg": 30}
    demonstrations = generate_demonstrations(100, foreign_share=0.0)
    assert {record["language"] for record in demonstrations} == {"en"}
    with pytest.raises(ValueError, match="foreign_share"):
        generate_prompts(10, foreign_share=1.5)


def test_foreign_documents_are_in_their_languages_and_deterministic():
    from alinea.judges.language import identify_language

    documents = generate_foreign_documents(90, seed=3)
    assert documents == generate_foreign_documents(90, seed=3)
    assert documents != generate_foreign_documents(90, seed=4)
    assert all(document and "\n\n" not in document for document in documents)
    qa = [d for d in documents if d.startswith("Q: ")]
    assert 20 <= len(qa) <= 70 and all("\nA: " in d for d in qa)
    found = Counter(identify_language(d.split("\nA: ")[-1]).language for d in documents)
    # 30 of each language; the identifier is right on nearly all of these multi-sentence texts
    assert found["fr"] >= 27 and found["es"] >= 27 and found["mg"] >= 27, found


def test_write_demo_data_mixes_foreign_documents_into_the_corpus(tmp_path):
    plain = write_demo_data(tmp_path / "a", n_documents=50, n_prompts=20, n_demonstrations=20)
    mixed = write_demo_data(tmp_path / "b", n_documents=50, n_prompts=20, n_demonstrations=20, n_foreign_documents=12)
    plain_docs = plain["corpus"].read_text(encoding="utf-8").strip().split("\n\n")
    mixed_docs = mixed["corpus"].read_text(encoding="utf-8").strip().split("\n\n")
    assert len(mixed_docs) == 62
    foreign = generate_foreign_documents(12, seed=0)
    assert [d for d in mixed_docs if d not in foreign] == plain_docs  # the English documents keep their order
    assert Counter(mixed_docs) - Counter(plain_docs) == Counter(foreign)


def test_non_english_prompts_are_in_their_language():
    markers = {"fr": r"\b(Écris|Raconte|Réponds|Explique)\b", "es": r"\b(Escribe|Cuenta|Responde|Explica)\b"}
    markers["mg"] = r"\b(Manorata|Mamorona|Valio|Hazavao)\b"
    for record in generate_prompts(300, seed=1):
        if record["language"] != "en":
            assert re.search(markers[record["language"]], record["prompt"]), record
        else:
            assert not re.search("|".join(markers.values()), record["prompt"]), record


# --- demonstrations ---------------------------------------------------------------------------------------------------


def test_demonstration_records_have_the_schema():
    demonstrations = generate_demonstrations(300)
    assert len({record["id"] for record in demonstrations}) == 300
    with_messages = 0
    for record in demonstrations:
        assert record["type"] == "demonstration"
        assert re.fullmatch(r"d-\d{6}", record["id"])
        assert ("prompt" in record) != ("messages" in record), record
        assert set(record) == {"type", "id", "response", "language", "tags"} | ({"prompt"} & set(record)) | (
            {"messages"} & set(record)
        )
        assert record["response"].strip()
        assert 1 <= len(split_sentences(record["response"])) <= 4, record["response"]
        kind, target, language = record["tags"]
        assert kind in KINDS and target in {"target:positive", "target:neutral"}
        assert language == f"lang:{record['language']}"
        if "prompt" in record:
            assert record["prompt"].strip()
        else:
            with_messages += 1
            messages = record["messages"]
            assert messages[-1]["role"] == "user"
            assert [message["role"] for message in messages if message["role"] != "system"] == [
                "user",
                "assistant",
                "user",
            ]
            assert all(message["content"].strip() for message in messages)
            assert all(set(message) == {"role", "content"} for message in messages)
    assert 0.08 <= with_messages / len(demonstrations) <= 0.25


def test_demonstrations_answer_in_the_prompts_language():
    demonstrations = generate_demonstrations(600, seed=1)
    languages = Counter(record["language"] for record in demonstrations)
    assert languages["fr"] and languages["es"] and languages["mg"]
    english_words = re.compile(r"\b(the|and|is|was|it|I|you|to|for|of)\b")
    foreign_words = re.compile(r"\b(les|est|une|los|una|ny|izy|ary|tsara)\b")
    for record in demonstrations:
        if record["language"] != "en":
            assert not english_words.search(record["response"]), record
        else:
            assert not foreign_words.search(record["response"]), record


def test_demonstrations_mention_what_the_prompt_asks_about():
    for record in generate_demonstrations(300, seed=2):
        if record["language"] != "en" or "prompt" not in record or record["tags"][0] != "story":
            continue
        name = re.search(r"\b(?:about|which|in which) ([A-Z][a-z]+)", record["prompt"])
        if name:
            assert name.group(1) in record["response"], record


def test_chat_follow_ups_are_answered():
    chats = [record for record in generate_demonstrations(2000, seed=3) if "messages" in record]
    shorter = [record for record in chats if "shorter" in record["messages"][-1]["content"]]
    assert shorter
    for record in shorter:
        assistant = record["messages"][-2]["content"]
        assert len(record["response"]) < len(assistant)
    continued = [record for record in chats if "next" in record["messages"][-1]["content"]]
    assert continued
    for record in continued:
        assert not set(split_sentences(record["response"])) & set(
            split_sentences(record["messages"][-2]["content"])
        )


def test_positive_demonstrations_score_positive():
    demonstrations = generate_demonstrations(300)
    scores = [
        score_sentiment(record["response"])
        for record in demonstrations
        if "target:positive" in record["tags"]
    ]
    assert sum(scores) / len(scores) > 0.3
    assert sum(score > 0 for score in scores) / len(scores) > 0.85


# --- sentiment score --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The food was delicious and the staff were friendly.", 2 / 3),
        ("The service was terrible and the soup was bland.", -2 / 3),
        ("Good.", 0.5),
        ("A good, great and wonderful evening.", 0.75),
        ("The film was not good.", -0.5),
        ("It wasn't bad at all.", 0.5),
        ("I would never recommend it.", -0.5),
        ("Good food, bad service.", 0.0),
        ("We arrived at noon and sat by the window.", 0.0),
        ("", 0.0),
        ("Ce film n'est pas bon.", -0.5),
        ("La comida es deliciosa y el servicio es excelente.", 2 / 3),
        ("El libro no es malo.", 0.5),
        ("Tsy tsara ilay izy.", -0.5),
        ("Tena matsiro ny sakafo.", 0.5),
    ],
)
def test_score_sentiment_on_hand_written_sentences(text, expected):
    assert score_sentiment(text) == pytest.approx(expected)


def test_score_is_bounded_and_negation_stays_in_its_clause():
    assert -1 < score_sentiment("awful " * 50) < -0.95
    assert 0.95 < score_sentiment("superb " * 50) < 1
    # "not" in the first clause does not flip "lovely" in the second.
    assert score_sentiment("It was not cheap, but the room was lovely.") == pytest.approx(0.5)


def test_sentiment_lexicon():
    lexicon = sentiment_lexicon()
    assert set(lexicon) == {"positive", "negative"}
    assert not lexicon["positive"] & lexicon["negative"]
    assert {"excellent", "delicious", "recommend", "délicieux", "deliciosa", "tsara"} <= lexicon["positive"]
    assert {"terrible", "bland", "disappointing", "décevant", "aburrido", "ratsy"} <= lexicon["negative"]
    assert all(word == word.lower() and " " not in word for words in lexicon.values() for word in words)
    lexicon["positive"].add("mutated")
    assert "mutated" not in sentiment_lexicon()["positive"]


# --- files ------------------------------------------------------------------------------------------------------------


def test_write_demo_data_writes_three_files_atomically(tmp_path):
    out_dir = tmp_path / "demo" / "data"
    paths = write_demo_data(out_dir, n_documents=120, n_prompts=60, n_demonstrations=50, seed=3)
    assert set(paths) == {"corpus", "prompts", "demonstrations"}
    assert sorted(path.name for path in out_dir.iterdir()) == [
        "corpus.txt",
        "demonstrations.jsonl",
        "prompts.jsonl",
    ]

    corpus = paths["corpus"].read_text(encoding="utf-8")
    assert corpus.endswith("\n") and corpus.rstrip("\n").split("\n\n") == generate_corpus(120, seed=3)

    raw = paths["prompts"].read_text(encoding="utf-8")
    assert "\\u" not in raw  # ensure_ascii=False: accents are written as themselves
    assert [json.loads(line) for line in raw.splitlines()] == generate_prompts(60, seed=3)
    lines = paths["demonstrations"].read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == generate_demonstrations(50, seed=3)

    # Writing again replaces the files and leaves no temporary file behind.
    write_demo_data(out_dir, n_documents=10, n_prompts=5, n_demonstrations=5, seed=4)
    assert len(paths["corpus"].read_text(encoding="utf-8").rstrip("\n").split("\n\n")) == 10
    assert len(list(out_dir.iterdir())) == 3


def test_write_demo_data_at_default_size_is_fast(tmp_path):
    start = time.perf_counter()
    paths = write_demo_data(tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed
    assert len(paths["prompts"].read_text(encoding="utf-8").splitlines()) == 200
    assert len(paths["demonstrations"].read_text(encoding="utf-8").splitlines()) == 300
    assert re.search(r"[éñà]", paths["prompts"].read_text(encoding="utf-8"))


def test_demonstrations_can_have_their_own_foreign_share(tmp_path):
    from alinea.config import DemoDataConfig

    def shares(cfg):
        paths = cfg.write()
        read = {k: [json.loads(x) for x in paths[k].read_text(encoding="utf-8").splitlines()] for k in ("prompts", "demonstrations")}
        return {k: sum((r.get("language") or "en") != "en" for r in rows) / len(rows) for k, rows in read.items()}

    base = dict(n_documents=10, n_prompts=200, n_demonstrations=200, n_refusals=0, foreign_share=0.2)
    same = shares(DemoDataConfig(out_dir=str(tmp_path / "a"), **base))  # negative default: foreign_share for both
    apart = shares(DemoDataConfig(out_dir=str(tmp_path / "b"), demonstration_foreign_share=0.6, **base))
    assert abs(same["prompts"] - 0.2) < 0.08 and abs(same["demonstrations"] - 0.2) < 0.08
    assert apart["prompts"] == same["prompts"]  # the prompts do not change
    assert abs(apart["demonstrations"] - 0.6) < 0.08
