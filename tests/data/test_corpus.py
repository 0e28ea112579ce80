"""Raw-text corpora: reading, held-out split, packing, and turning records into documents."""

import pytest

from alinea.data.corpus import (
    pack_documents,
    read_documents,
    records_to_documents,
    split_documents,
    write_documents,
)
from alinea.data.records import Comparison, Demonstration, Message
from alinea.errors import UserError


def test_documents_are_blank_line_separated_and_cleaned(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("  First doc, line one.\r\nline two  \n\n\n\nSecond doc.\n \n\t\nThird.", encoding="utf-8")
    assert read_documents(path) == ["First doc, line one.\nline two", "Second doc.", "Third."]


def test_empty_and_missing_corpora(tmp_path):
    empty = tmp_path / "e.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(UserError, match="no text"):
        read_documents(empty)
    with pytest.raises(UserError, match="not found"):
        read_documents(tmp_path / "none.txt")


def test_split_is_seeded_and_disjoint():
    docs = [f"doc {i}" for i in range(20)]
    train, heldout = split_documents(docs, heldout_fraction=0.25, seed=1)
    assert len(heldout) == 5 and len(train) == 15 and not set(train) & set(heldout)
    assert split_documents(docs, heldout_fraction=0.25, seed=1) == (train, heldout)
    assert split_documents(docs, heldout_fraction=0.25, seed=2)[1] != heldout
    with pytest.raises(UserError, match="heldout_fraction"):
        split_documents(docs, heldout_fraction=1.0, seed=0)


def test_packing_joins_with_end_of_text(tokenizer):
    rows = pack_documents(["a b", "c"], tokenizer, seq_len=2)
    ids = sum(tokenizer(["a b", "c"], add_special_tokens=False)["input_ids"], [])
    flat = rows.flatten().tolist()
    assert tokenizer.eos_token_id in flat
    assert len(flat) == (len(ids) + 2) // 2 * 2
    with pytest.raises(UserError, match="fewer than one sequence"):
        pack_documents(["a"], tokenizer, seq_len=1000)


def test_records_become_documents_and_round_trip(tmp_path):
    records = [
        Demonstration(prompt="Say hi.", response="Hi!\n\nHow are you?"),
        Comparison(
            messages=(Message("user", "Q1"), Message("assistant", "A1"), Message("user", "Q2")),
            response_a="good", response_b="bad", preference="a",
        ),
    ]
    documents = records_to_documents(records)
    assert documents == ["Say hi.\nHi!\nHow are you?", "Q1\nA1\nQ2\ngood", "Q1\nA1\nQ2\nbad"]
    path = tmp_path / "out" / "corpus.txt"
    assert write_documents(path, documents) == 3
    assert read_documents(path) == documents
