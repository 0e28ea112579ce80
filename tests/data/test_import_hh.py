"""HH-RLHF import: transcript splitting checked message by message, and each real-data quirk."""

from __future__ import annotations

import gzip
import json

import pytest

from alinea.data.importers import SkippedRow, _RowProblem, import_hh_rlhf, split_hh_transcript
from alinea.data.records import Comparison, Message
from alinea.errors import UserError

SHARED = (
    "\n\nHuman: What is a good name for a cat?\n\nAssistant:  Maybe Whiskers? \n\nHuman: Something rarer."
    "\n\nAssistant:"
)
CHOSEN = SHARED + " How about Ptolemy, after the astronomer?"
REJECTED = SHARED + " Cat."


def hh(chosen: str, rejected: str) -> dict:
    return {"chosen": chosen, "rejected": rejected}


def test_split_transcript_message_by_message():
    messages = split_hh_transcript(CHOSEN)
    assert messages == [
        Message("user", "What is a good name for a cat?"),
        Message("assistant", "Maybe Whiskers?"),
        Message("user", "Something rarer."),
        Message("assistant", "How about Ptolemy, after the astronomer?"),
    ]


def test_split_keeps_inner_newlines_and_inline_role_words():
    text = "\n\nHuman: line one\nline two\n\nAssistant: Human: is not a turn marker here\nAssistant: nor this"
    assert split_hh_transcript(text) == [
        Message("user", "line one\nline two"),
        Message("assistant", "Human: is not a turn marker here\nAssistant: nor this"),
    ]


def test_split_accepts_a_transcript_without_leading_blank_line():
    assert split_hh_transcript("Human: hi\n\nAssistant: hello") == [
        Message("user", "hi"),
        Message("assistant", "hello"),
    ]


def test_consecutive_turns_of_one_speaker_are_joined():
    text = "\n\nHuman: Hi\n\nAssistant: One.\n\nAssistant:  Two.\n\nHuman: Ok\n\nAssistant: Three."
    assert split_hh_transcript(text) == [
        Message("user", "Hi"),
        Message("assistant", "One.\n\nTwo."),
        Message("user", "Ok"),
        Message("assistant", "Three."),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Hello\n\nHuman: hi\n\nAssistant: yo",
            "a transcript starting with 'Human:', found text before the first turn",
        ),
        ("\n\nAssistant: hi\n\nHuman: yo", "a transcript starting with 'Human:', found 'Assistant:' first"),
        ("just text", "a transcript starting with 'Human:', found text before the first turn"),
        ("", "a transcript of 'Human:' and 'Assistant:' turns, found no turns"),
        ("\n\nHuman:  \n\nAssistant: yo", "a non-empty text in every turn, found an empty turn 1"),
    ],
)
def test_split_refuses_malformed_transcripts(text, expected):
    with pytest.raises(_RowProblem) as caught:
        split_hh_transcript(text, "chosen")
    assert (caught.value.field, caught.value.expected) == ("chosen", expected)


def test_import_builds_the_comparison(write_lines):
    path = write_lines("hh.jsonl", [hh(CHOSEN, REJECTED)])
    records, skipped = import_hh_rlhf(path)
    assert skipped == []
    assert records == [
        Comparison(
            messages=[
                Message("user", "What is a good name for a cat?"),
                Message("assistant", "Maybe Whiskers?"),
                Message("user", "Something rarer."),
            ],
            response_a="How about Ptolemy, after the astronomer?",
            response_b="Cat.",
            preference="a",
            strength=1,
            annotator="hh-rlhf",
            tags=["hh-rlhf"],
        )
    ]


def test_import_reads_gzip(tmp_path):
    path = tmp_path / "hh.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(hh(CHOSEN, REJECTED)) + "\n").encode()))
    assert len(import_hh_rlhf(path).records) == 1


def test_extra_assistant_turn_in_chosen_only_becomes_part_of_the_reply(write_lines):
    # Seen in the real data: the chosen transcript splits its last reply into two "Assistant:" turns.
    path = write_lines("hh.jsonl", [hh(SHARED + " Ptolemy.\n\nAssistant: Or Hypatia.", REJECTED)])
    (record,), _ = import_hh_rlhf(path)
    assert record.response_a == "Ptolemy.\n\nOr Hypatia."
    assert record.response_b == "Cat."
    assert len(record.messages) == 3


QUIRKS = [
    hh(CHOSEN, REJECTED),  # 1 fine
    hh(SHARED + " ", REJECTED),  # 2 empty chosen reply
    hh(CHOSEN, "Preamble" + REJECTED),  # 3 rejected has text before Human
    hh(CHOSEN, CHOSEN),  # 4 identical
    hh(CHOSEN, REJECTED.replace("Something rarer.", "Something shorter.")),  # 5 differ earlier
    hh(CHOSEN + "\n\nHuman: thanks", REJECTED),  # 6 ends with Human
    '{"chosen": "x"',  # 7 malformed JSON
    {"chosen": CHOSEN},  # 8 missing rejected
    hh(CHOSEN, 7),  # 9 not a string
    "[]",  # 10 not an object
]
QUIRK_REASONS = [
    SkippedRow(2, "chosen: a non-empty final assistant reply, found an empty one"),
    SkippedRow(3, "rejected: a transcript starting with 'Human:', found text before the first turn"),
    SkippedRow(4, "rejected: a final reply different from chosen's, found the same text"),
    SkippedRow(
        5, "rejected: the same turns as chosen except the final assistant reply, found a difference at turn 3"
    ),
    SkippedRow(
        6, "chosen: a conversation ending in a user turn then an assistant reply, found it ends with user"
    ),
    SkippedRow(
        7, "json: valid JSON, but Expecting ',' delimiter at column 15"
    ),  # the line is 14 characters long
    SkippedRow(8, "rejected: a transcript string (the field is missing)"),
    SkippedRow(9, "rejected: a transcript string, found the number 7"),
    SkippedRow(10, "record: a JSON object, found a list of 0 items"),
]


def test_quirky_rows_raise_with_one_detail_each(write_lines):
    path = write_lines("hh.jsonl", QUIRKS)
    with pytest.raises(UserError) as caught:
        import_hh_rlhf(path)
    assert caught.value.message.startswith(f"9 of 10 rows in {path} cannot be imported as hh-rlhf;")
    assert caught.value.details == [f"{path}:{row}: {reason}" for row, reason in QUIRK_REASONS]


def test_quirky_rows_are_skipped_with_reasons_when_asked(write_lines):
    path = write_lines("hh.jsonl", QUIRKS)
    records, skipped = import_hh_rlhf(path, skip_invalid=True)
    assert len(records) == 1
    assert skipped == QUIRK_REASONS


def test_nothing_importable_is_an_error_even_when_skipping(write_lines):
    path = write_lines("hh.jsonl", [hh(CHOSEN, CHOSEN)])
    with pytest.raises(UserError, match="none of the 1 rows"):
        import_hh_rlhf(path, skip_invalid=True)
    empty = write_lines("empty.jsonl", [])
    with pytest.raises(UserError, match="holds no rows to import as hh-rlhf"):
        import_hh_rlhf(empty, skip_invalid=True)


def test_non_utf8_file_is_refused_even_when_skipping(tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_bytes(json.dumps(hh(CHOSEN, REJECTED)).encode() + b"\n" + b'{"chosen": "caf\xe9"}\n')
    with pytest.raises(UserError) as caught:
        import_hh_rlhf(path, skip_invalid=True)
    assert caught.value.message == f"{path} is not UTF-8 text; save it as UTF-8 and run again."
    assert caught.value.details == [f"{path}:2: encoding: expected UTF-8 text, found byte 0xe9 at column 16"]
