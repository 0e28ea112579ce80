"""Alpaca and TRL imports, and format detection."""

from __future__ import annotations

import json

import pytest

from alinea.data.importers import SkippedRow, detect_format, import_alpaca, import_file, import_trl
from alinea.data.records import Comparison, Demonstration, Message, Prompt, Thumb
from alinea.errors import UserError

# ------------------------------------------------------------------------------------------------------------
# Alpaca


def write_alpaca(tmp_path, items) -> object:
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def test_alpaca_with_and_without_input(tmp_path):
    path = write_alpaca(
        tmp_path,
        [
            {"instruction": "Arrange the following musical notes", "input": "G, B, E", "output": "E, G, B"},
            {"instruction": " Name a prime number. ", "input": "", "output": "7\n"},
            {"instruction": "Give a synonym for happy.", "input": "<No input>", "output": "Glad."},
            {"instruction": "Say hi.", "output": "Hi."},
        ],
    )
    records, skipped = import_alpaca(path)
    assert skipped == []
    assert records == [
        Demonstration(
            prompt="Arrange the following musical notes\n\nG, B, E",
            response="E, G, B",
            annotator="alpaca",
            tags=["alpaca"],
        ),
        Demonstration(prompt="Name a prime number.", response="7", annotator="alpaca", tags=["alpaca"]),
        Demonstration(
            prompt="Give a synonym for happy.", response="Glad.", annotator="alpaca", tags=["alpaca"]
        ),
        Demonstration(prompt="Say hi.", response="Hi.", annotator="alpaca", tags=["alpaca"]),
    ]


def test_alpaca_bad_items_are_listed_by_item_number(tmp_path):
    path = write_alpaca(
        tmp_path,
        [
            {"instruction": "Convert 20 inches to centimetres", "input": "", "output": ""},
            {"instruction": "ok", "input": "", "output": "fine"},
            {"instruction": "x", "input": 3, "output": "y"},
            {"input": "a", "output": "b"},
            "not an object",
        ],
    )
    expected = [
        SkippedRow(1, "output: a non-empty string, found an empty string"),
        SkippedRow(3, "input: a string, found the number 3"),
        SkippedRow(4, "instruction: a non-empty string (the field is missing)"),
        SkippedRow(5, "item: an object with instruction, input and output, found the string 'not an object'"),
    ]
    with pytest.raises(UserError) as caught:
        import_alpaca(path)
    assert caught.value.details == [f"{path}: item {row}: {reason}" for row, reason in expected]
    records, skipped = import_alpaca(path, skip_invalid=True)
    assert [r.response for r in records] == ["fine"]
    assert skipped == expected


def test_alpaca_file_that_is_not_an_array(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text('{"instruction": "x"}', encoding="utf-8")
    with pytest.raises(UserError, match="expected a JSON array"):
        import_alpaca(path)
    path.write_text('[{"instruction": "x",]', encoding="utf-8")
    with pytest.raises(UserError) as caught:
        import_alpaca(path)
    assert caught.value.details == [
        f"{path}:1: json: valid JSON, but Expecting property name enclosed in double quotes at column 22"
    ]


# ------------------------------------------------------------------------------------------------------------
# TRL

USER = [{"role": "user", "content": "What colour is the sky?"}]
CHAT = [{"role": "system", "content": "Be brief."}, *USER]


def assistant(text):
    return [{"role": "assistant", "content": text}]


TRL_CASES = [
    (
        "preference standard",
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
        Comparison(prompt="The sky is", response_a=" blue.", response_b=" green.", preference="a"),
    ),
    (
        "preference conversational",
        {"prompt": CHAT, "chosen": assistant("Blue."), "rejected": assistant("Green.")},
        Comparison(messages=CHAT, response_a="Blue.", response_b="Green.", preference="a"),
    ),
    (
        "implicit prompt",
        {"chosen": USER + assistant("Blue."), "rejected": USER + assistant("Green."), "score": 3},
        Comparison(messages=USER, response_a="Blue.", response_b="Green.", preference="a"),
    ),
    (
        "prompt-completion standard",
        {"prompt": "The sky is", "completion": " blue."},
        Demonstration(prompt="The sky is", response=" blue."),
    ),
    (
        "prompt-completion conversational",
        {"prompt": USER, "completion": assistant("Blue.")},
        Demonstration(messages=USER, response="Blue."),
    ),
    (
        "language modeling conversational",
        {"messages": CHAT + assistant("Blue.")},
        Demonstration(messages=CHAT, response="Blue."),
    ),
    (
        "unpaired preference",
        {"prompt": "The sky is", "completion": " green.", "label": False},
        Thumb(prompt="The sky is", response=" green.", thumb="down"),
    ),
    (
        "unpaired preference conversational",
        {"prompt": USER, "completion": assistant("Blue."), "label": True},
        Thumb(messages=USER, response="Blue.", thumb="up"),
    ),
    ("prompt-only standard", {"prompt": "The sky is"}, Prompt(prompt="The sky is")),
    ("prompt-only conversational", {"prompt": CHAT}, Prompt(messages=[Message(**m) for m in CHAT])),
]


@pytest.mark.parametrize(
    ("row", "record"), [case[1:] for case in TRL_CASES], ids=[case[0] for case in TRL_CASES]
)
def test_trl_format(write_lines, row, record):
    path = write_lines("trl.jsonl", [row])
    assert import_trl(path) == ([record], [])
    assert detect_format(path) == "trl"


def test_trl_bad_rows(write_lines):
    path = write_lines(
        "trl.jsonl",
        [
            {"prompt": "p", "chosen": "x", "rejected": "y"},
            {"text": "The sky is blue."},
            {"chosen": "x", "rejected": "y"},
            {"messages": USER},
            {"prompt": USER, "chosen": USER, "rejected": assistant("x")},
            {"prompt": "p", "completion": "c", "label": 1},
            {"prompt": [{"role": "tool", "content": "x"}]},
            {"prompt": "p", "completion": ""},
            {"chosen": USER + assistant("Same"), "rejected": USER + assistant("Same")},
            {"foo": 1},
        ],
    )
    records, skipped = import_trl(path, skip_invalid=True)
    assert len(records) == 1
    assert skipped == [
        SkippedRow(2, "text: a row with a prompt: standard language-modeling text has no prompt to separate"),
        SkippedRow(3, "prompt: a prompt: standard (text) preference rows without one cannot be split"),
        SkippedRow(4, "messages[0].role: 'assistant' (the answer to learn)"),
        SkippedRow(5, "chosen: a list holding one assistant message, found a list of 1 item with roles user"),
        SkippedRow(6, "label: true or false, found the number 1"),
        SkippedRow(7, "prompt[0].role: one of 'system', 'user', 'assistant', found the string 'tool'"),
        SkippedRow(8, "completion: a non-empty string, found an empty string"),
        SkippedRow(9, "rejected: a final reply different from chosen's, found the same text"),
        SkippedRow(
            10,
            "record: a TRL row: prompt+chosen+rejected, chosen+rejected, prompt+completion(+label), "
            "messages or prompt; found keys foo",
        ),
    ]


# ------------------------------------------------------------------------------------------------------------
# Detection


def test_detect_format(write_lines, tmp_path):
    hh = write_lines(
        "hh.jsonl", [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}]
    )
    alinea = write_lines("ours.jsonl", ["", {"type": "prompt", "prompt": "p"}])
    alpaca = write_alpaca(tmp_path, [{"instruction": "i", "input": "", "output": "o"}])
    assert [detect_format(p) for p in (hh, alinea, alpaca)] == ["hh-rlhf", "alinea", "alpaca"]
    assert import_file(hh).records[0].response_b == "c"
    assert import_file(alinea).records == [Prompt(prompt="p")]
    assert import_file(alpaca, "alpaca").records[0].prompt == "i"
    unknown = write_lines("odd.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(
        UserError, match="cannot tell the format of .* from its first row \\(keys answer, question\\)"
    ):
        detect_format(unknown)
    with pytest.raises(UserError, match="unknown import format 'csv'"):
        import_file(alinea, "csv")
    with pytest.raises(UserError, match="does not exist"):
        detect_format(tmp_path / "missing.jsonl")
