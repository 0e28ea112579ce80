"""Record types: round trips, defaults, and every rule with the field path and expectation it reports."""

from __future__ import annotations

import dataclasses

import pytest

from alinea.data.records import (
    Comparison,
    Demonstration,
    Message,
    Prompt,
    Ranking,
    Rating,
    RecordError,
    Thumb,
    allowed_fields,
    parse_record,
)

CHAT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Capital of Madagascar?"},
    {"role": "assistant", "content": "Antananarivo."},
    {"role": "user", "content": "And its population?"},
]

# One canonical line per type: to_json gives back exactly these (defaults left out, strength and scale kept).
CANONICAL = [
    {"type": "prompt", "prompt": "Write a haiku about rain."},
    {
        "type": "prompt",
        "id": "p-2",
        "messages": CHAT,
        "language": "fr",
        "tags": ["geo"],
        "annotator": "ana",
        "time": "2024-05-01T12:30:00Z",
    },
    {"type": "demonstration", "prompt": "Say hi.", "response": "Hi!"},
    {"type": "demonstration", "messages": CHAT, "response": "About 1.3 million.", "language": "mg"},
    {
        "type": "comparison",
        "prompt": "2+2?",
        "response_a": "4",
        "response_b": "5",
        "preference": "a",
        "strength": 3,
    },
    {
        "type": "comparison",
        "prompt": "Hi",
        "response_a": "Hello",
        "response_b": "Hey",
        "preference": "tie",
        "strength": 0,
        "annotator": "bob",
        "time": "2024-05-01T12:30:00+02:00",
    },
    {"type": "ranking", "prompt": "Name a colour.", "responses": ["red", "blue", "car"], "ranks": [1, 1, 3]},
    {
        "type": "rating",
        "prompt": "Joke?",
        "response": "Knock knock.",
        "ratings": {"humour": 2, "safety": 6.5},
        "scale": [1, 7],
    },
    {
        "type": "rating",
        "prompt": "Joke?",
        "response": "Knock knock.",
        "ratings": {"humour": 0.25},
        "scale": [0, 1],
    },
    {"type": "thumb", "prompt": "Hi", "response": "Go away.", "thumb": "down", "comment": "rude"},
    {"type": "thumb", "messages": CHAT, "response": "Many.", "thumb": "up"},
]


@pytest.mark.parametrize("row", CANONICAL, ids=lambda row: row["type"])
def test_round_trip(row):
    record = parse_record(row)
    assert record.to_json() == row
    assert parse_record(record.to_json()) == record


def test_each_type_maps_to_its_class():
    classes = [type(parse_record(row)) for row in CANONICAL]
    assert classes == [
        Prompt,
        Prompt,
        Demonstration,
        Demonstration,
        Comparison,
        Comparison,
        Ranking,
        Rating,
        Rating,
        Thumb,
        Thumb,
    ]


def test_defaults_are_filled_and_left_out_again():
    record = parse_record(
        {
            "type": "comparison",
            "prompt": "p",
            "response_a": "x",
            "response_b": "y",
            "preference": "b",
            "tags": None,
            "annotator": None,
        }
    )
    assert (record.language, record.tags, record.annotator, record.time, record.strength) == (
        "en",
        (),
        None,
        None,
        1,
    )
    assert record.to_json() == {
        "type": "comparison",
        "prompt": "p",
        "response_a": "x",
        "response_b": "y",
        "preference": "b",
        "strength": 1,
    }
    tie = parse_record(
        {"type": "comparison", "prompt": "p", "response_a": "x", "response_b": "y", "preference": "tie"}
    )
    assert tie.strength == 0
    rating = parse_record({"type": "rating", "prompt": "p", "response": "r", "ratings": {"q": 7}})
    assert rating.scale == (1, 7)
    assert parse_record({"type": "thumb", "prompt": "p", "response": "r", "thumb": "up"}).comment == ""


def test_prompt_messages_and_lengths():
    plain = parse_record({"type": "prompt", "prompt": "Hello there"})
    assert plain.prompt_messages() == [{"role": "user", "content": "Hello there"}]
    assert plain.prompt_chars() == 11
    chat = parse_record({"type": "prompt", "messages": CHAT})
    assert chat.prompt_messages() == CHAT
    assert chat.messages[0] == Message("system", "Answer briefly.")
    assert chat.prompt_chars() == sum(len(m["content"]) for m in CHAT)


def test_comparison_chosen_and_rejected():
    a = Comparison(prompt="p", response_a="x", response_b="y", preference="a")
    b = Comparison(prompt="p", response_a="x", response_b="y", preference="b", strength=2)
    tie = Comparison(prompt="p", response_a="x", response_b="y", preference="tie")
    assert (a.chosen, a.rejected, b.chosen, b.rejected, tie.chosen, tie.rejected) == (
        "x",
        "y",
        "y",
        "x",
        None,
        None,
    )


def test_ranking_winning_pairs_skip_ties():
    ranking = Ranking(prompt="p", responses=["w", "x", "y", "z"], ranks=[2, 1, 2, 4])
    assert ranking.winning_pairs() == [(1, 0), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_built_in_python_lists_become_tuples_and_records_are_frozen():
    record = Demonstration(messages=[{"role": "user", "content": "hi"}], response="hello", tags=["a", "b"])
    assert record.messages == (Message("user", "hi"),)
    assert record.tags == ("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.response = "changed"  # type: ignore[misc]
    with pytest.raises(RecordError) as caught:
        Demonstration(prompt="hi", response="  ")
    assert (caught.value.field, caught.value.expected) == (
        "response",
        "a non-empty string, found a string of only whitespace",
    )


def test_expected_type_lets_a_file_leave_type_out():
    record = parse_record({"prompt": "p", "response": "r"}, expected_type="demonstration")
    assert isinstance(record, Demonstration)
    assert record.to_json()["type"] == "demonstration"
    with pytest.raises(RecordError) as caught:
        parse_record(
            {"type": "thumb", "prompt": "p", "response": "r", "thumb": "up"}, expected_type="demonstration"
        )
    assert caught.value.field == "type"
    assert (
        caught.value.expected
        == "'demonstration' (only demonstration records are expected here), found 'thumb'"
    )


def test_timestamps_with_z_and_offsets_are_accepted():
    for stamp in ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00.123+02:00", "2024-05-01"):
        assert parse_record({"type": "prompt", "prompt": "p", "time": stamp}).time == stamp


def test_unknown_field_lists_the_allowed_ones():
    with pytest.raises(RecordError) as caught:
        parse_record({"type": "demonstration", "prompt": "p", "respnse": "r"})
    assert caught.value.field == "respnse"
    assert caught.value.expected == (
        "no such field in a demonstration record; allowed: "
        "type, id, prompt, messages, response, language, tags, annotator, time"
    )
    assert allowed_fields("comparison")[4:8] == ["response_a", "response_b", "preference", "strength"]


COMPARISON = {"type": "comparison", "prompt": "p", "response_a": "x", "response_b": "y", "preference": "a"}
RANKING = {"type": "ranking", "prompt": "p", "responses": ["x", "y"], "ranks": [1, 2]}
RATING = {"type": "rating", "prompt": "p", "response": "r", "ratings": {"help": 3}}
THUMB = {"type": "thumb", "prompt": "p", "response": "r", "thumb": "up"}
DEMO = {"type": "demonstration", "prompt": "p", "response": "r"}


def changed(base: dict, **fields) -> dict:
    row = {**base, **fields}
    return {key: value for key, value in row.items() if value is not DROP}


DROP = object()

BAD = [
    # (id, row, field, expected)
    ("not-an-object", ["a"], "record", "a JSON object, found a list of 1 item"),
    (
        "type-missing",
        {"prompt": "p"},
        "type",
        "one of 'prompt', 'demonstration', 'comparison', 'ranking', 'rating', 'thumb' (the field is missing)",
    ),
    (
        "type-unknown",
        {"type": "essay", "prompt": "p"},
        "type",
        "one of 'prompt', 'demonstration', 'comparison', 'ranking', 'rating', 'thumb', found the string 'essay'",
    ),
    (
        "response-missing",
        changed(DEMO, response=DROP),
        "response",
        "a non-empty string (the field is missing)",
    ),
    ("response-empty", changed(DEMO, response=""), "response", "a non-empty string, found an empty string"),
    ("response-null", changed(DEMO, response=None), "response", "a non-empty string, found null"),
    ("response-number", changed(DEMO, response=3), "response", "a non-empty string, found the number 3"),
    (
        "prompt-and-messages",
        changed(DEMO, messages=CHAT),
        "prompt",
        "either 'prompt' or 'messages', not both",
    ),
    (
        "no-prompt",
        changed(DEMO, prompt=DROP),
        "prompt",
        "a non-empty string 'prompt' or a 'messages' list (neither is present)",
    ),
    (
        "prompt-blank",
        changed(DEMO, prompt=" \n"),
        "prompt",
        "a non-empty string, found a string of only whitespace",
    ),
    (
        "messages-empty",
        changed(DEMO, prompt=DROP, messages=[]),
        "messages",
        "a non-empty list of {role, content} objects, found an empty list",
    ),
    (
        "messages-not-list",
        changed(DEMO, prompt=DROP, messages="hi"),
        "messages",
        "a non-empty list of {role, content} objects, found the string 'hi'",
    ),
    (
        "message-role",
        changed(DEMO, prompt=DROP, messages=[CHAT[0], {"role": "bot", "content": "x"}, CHAT[1]]),
        "messages[1].role",
        "one of 'system', 'user', 'assistant', found the string 'bot'",
    ),
    (
        "message-content",
        changed(DEMO, prompt=DROP, messages=[{"role": "user", "content": ""}]),
        "messages[0].content",
        "a non-empty string, found an empty string",
    ),
    (
        "message-extra-key",
        changed(DEMO, prompt=DROP, messages=[{"role": "user", "content": "x", "name": "n"}]),
        "messages[0].name",
        "no such field: a message has only 'role' and 'content'",
    ),
    (
        "message-not-object",
        changed(DEMO, prompt=DROP, messages=["hi"]),
        "messages[0]",
        "an object with 'role' and 'content', found the string 'hi'",
    ),
    (
        "last-message-assistant",
        changed(DEMO, prompt=DROP, messages=CHAT[:3]),
        "messages[2].role",
        "'user' (the last message of a prompt is the turn being answered), found 'assistant'",
    ),
    (
        "preference-enum",
        changed(COMPARISON, preference="c"),
        "preference",
        "one of 'a', 'b', 'tie', found the string 'c'",
    ),
    (
        "preference-missing",
        changed(COMPARISON, preference=DROP),
        "preference",
        "one of 'a', 'b', 'tie' (the field is missing)",
    ),
    (
        "strength-bool",
        changed(COMPARISON, strength=True),
        "strength",
        "an integer from 0 to 3, found true (a boolean)",
    ),
    (
        "strength-float",
        changed(COMPARISON, strength=1.0),
        "strength",
        "an integer from 0 to 3, found the number 1.0",
    ),
    (
        "strength-range",
        changed(COMPARISON, strength=4),
        "strength",
        "an integer from 0 to 3, found the number 4",
    ),
    (
        "tie-with-strength",
        changed(COMPARISON, preference="tie", strength=2),
        "strength",
        "0 for a tie (a tie has no winner to be better), found 2",
    ),
    (
        "response-b-empty",
        changed(COMPARISON, response_b=""),
        "response_b",
        "a non-empty string, found an empty string",
    ),
    (
        "ranks-length",
        changed(RANKING, ranks=[1, 2, 3]),
        "ranks",
        "one rank per response (2 ranks), found a list of 3 items",
    ),
    (
        "ranks-zero",
        changed(RANKING, ranks=[1, 0]),
        "ranks[1]",
        "an integer >= 1 (1 is best), found the number 0",
    ),
    (
        "ranks-bool",
        changed(RANKING, ranks=[True, 2]),
        "ranks[0]",
        "an integer >= 1 (1 is best), found true (a boolean)",
    ),
    (
        "one-response",
        changed(RANKING, responses=["x"], ranks=[1]),
        "responses",
        "a list of at least 2 non-empty strings, found a list of 1 item",
    ),
    (
        "ranking-empty-response",
        changed(RANKING, responses=["x", ""]),
        "responses[1]",
        "a non-empty string, found an empty string",
    ),
    (
        "rating-out-of-scale",
        changed(RATING, ratings={"help": 8}),
        "ratings.help",
        "a number within the scale [1, 7], found 8",
    ),
    (
        "rating-below-custom-scale",
        changed(RATING, ratings={"help": -1}, scale=[0, 10]),
        "ratings.help",
        "a number within the scale [0, 10], found -1",
    ),
    (
        "rating-bool",
        changed(RATING, ratings={"help": False}),
        "ratings.help",
        "a number, found false (a boolean)",
    ),
    (
        "ratings-empty",
        changed(RATING, ratings={}),
        "ratings",
        "a non-empty object mapping each aspect to a number, found an object",
    ),
    ("scale-reversed", changed(RATING, scale=[7, 1]), "scale", "[min, max] with min < max, found [7, 1]"),
    (
        "scale-three",
        changed(RATING, scale=[1, 4, 7]),
        "scale",
        "two numbers [min, max], found a list of 3 items",
    ),
    (
        "thumb-enum",
        changed(THUMB, thumb="sideways"),
        "thumb",
        "one of 'up', 'down', found the string 'sideways'",
    ),
    ("thumb-bool", changed(THUMB, thumb=True), "thumb", "one of 'up', 'down', found true (a boolean)"),
    ("comment-number", changed(THUMB, comment=5), "comment", "a string, found the number 5"),
    (
        "language",
        changed(DEMO, language="English"),
        "language",
        "a language code such as 'en', 'fr' or 'pt-BR', found the string 'English'",
    ),
    ("tags-string", changed(DEMO, tags="a,b"), "tags", "a list of strings, found the string 'a,b'"),
    ("tag-empty", changed(DEMO, tags=["ok", ""]), "tags[1]", "a non-empty string, found an empty string"),
    ("annotator-number", changed(DEMO, annotator=7), "annotator", "a non-empty string, found the number 7"),
    (
        "time",
        changed(DEMO, time="yesterday"),
        "time",
        "an ISO-8601 timestamp such as '2024-05-01T12:30:00Z', found the string 'yesterday'",
    ),
    (
        "time-number",
        changed(DEMO, time=1714566600),
        "time",
        "an ISO-8601 timestamp string, found the number 1714566600",
    ),
    ("id-empty", changed(DEMO, id=""), "id", "a non-empty string, found an empty string"),
    (
        "unknown-on-prompt",
        {"type": "prompt", "prompt": "p", "response": "r"},
        "response",
        "no such field in a prompt record; allowed: type, id, prompt, messages, language, tags, annotator, time",
    ),
]


@pytest.mark.parametrize(
    ("row", "field", "expected"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_bad_record(row, field, expected):
    with pytest.raises(RecordError) as caught:
        parse_record(row)
    assert caught.value.field == field
    assert caught.value.expected == expected
    assert str(caught.value) == f"{field}: {expected}"
