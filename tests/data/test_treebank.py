"""Sentiment trees (SST) as plain sentences: parsing, detokenizing, errors, and `data text` on a treebank file."""

from __future__ import annotations

import pytest

from alinea.data.corpus import source_documents
from alinea.data.treebank import (
    TreeError,
    detokenize,
    looks_like_treebank,
    parse_tree,
    read_treebank,
    treebank_sentences,
)
from alinea.errors import UserError

# Shaped like SST's train.txt: nested nodes, PTB escapes, clitics, a leaf with a space inside.
TREES = [
    "(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 (2 ``) (2 great) (2 ''))) (2 .)))",
    "(1 (2 (2 It) (1 (2 does) (1 (2 n't) (2 work)))) (2 ,) (2 (2 -LRB-) (2 sadly) (2 -RRB-)) (2 .))",
    "(2 (2 Like) (2 (2 8 1\\/2) (2 !)))",
]


def test_parse_tree_gives_the_root_label_and_the_leaves_in_order():
    assert parse_tree(TREES[0]) == (3, ["The", "Rock", "is", "``", "great", "''", "."])
    assert parse_tree(TREES[1]).label == 1
    assert parse_tree(TREES[2]).tokens == ["Like", "8 1\\/2", "!"]  # SST writes three leaves like this one


def test_detokenize_undoes_escapes_and_tokenizer_spaces():
    assert detokenize(parse_tree(TREES[0]).tokens) == 'The Rock is "great".'
    assert detokenize(parse_tree(TREES[1]).tokens) == "It doesn't work, (sadly)."
    assert detokenize(parse_tree(TREES[2]).tokens) == "Like 8 1/2!"
    assert detokenize(["`", "Tadpole", "'", "is", "rock", "'n'", "roll", "..."]) == "'Tadpole' is rock 'n' roll..."
    assert detokenize(["the", "actors", "'", "work", "--", "$", "5", "."]) == "the actors ' work -- $5."


@pytest.mark.parametrize(
    ("line", "expected", "column"),
    [
        ("(2 (2 a) (2 b)", "1 more ')' to close the tree", 15),
        ("(2 a) (3 b)", "one tree per line, found a second one", 7),
        ("(x a)", "a numeric label after '('", 2),
        ("(2 (2 a) b)", "'(' or ')', found the bare token 'b'", 10),
        ("(2 )", "a token or a subtree after the label, found ')'", 4),
        ("(2 a))", "the end of the tree, found one ')' too many", 6),
        ("plain text", "a tree starting with '('", 1),
    ],
)
def test_bad_trees_say_what_was_expected_and_where(line, expected, column):
    with pytest.raises(TreeError) as caught:
        parse_tree(line)
    assert (caught.value.expected, caught.value.column) == (expected, column)


def test_read_treebank_lists_every_bad_line(tmp_path):
    path = tmp_path / "trees.txt"
    path.write_text(f"{TREES[0]}\n(2 (2 a)\n\n{TREES[1]}\n(2 a) (2 b)\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:
        read_treebank(path)
    assert "2 lines" in str(caught.value)
    assert caught.value.details == [
        f"{path}:2: tree: 1 more ')' to close the tree at column 9",
        f"{path}:5: tree: one tree per line, found a second one at column 7",
    ]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="no trees"):
        read_treebank(empty)


def test_a_treebank_txt_becomes_one_document_per_sentence(tmp_path):
    trees = tmp_path / "sst.txt"
    trees.write_text("\n".join(TREES) + "\n", encoding="utf-8")
    plain = tmp_path / "plain.txt"
    plain.write_text("(An aside in brackets.)\nSecond line.\n\nNext document.\n", encoding="utf-8")
    assert looks_like_treebank(trees) and not looks_like_treebank(plain)
    assert source_documents(trees) == (treebank_sentences(trees), 0)
    assert source_documents(trees)[0] == ['The Rock is "great".', "It doesn't work, (sadly).", "Like 8 1/2!"]
    assert source_documents(plain) == (["(An aside in brackets.)\nSecond line.", "Next document."], 0)


def test_data_text_cli_reads_treebanks(run_cli, tmp_path):
    trees = tmp_path / "sst.txt"
    trees.write_text("\n".join(TREES) + "\n", encoding="utf-8")
    out = tmp_path / "corpus.txt"
    code, stdout, stderr = run_cli("data", "text", trees, "-o", out)
    assert code == 0, stderr
    assert out.read_text(encoding="utf-8") == 'The Rock is "great".\n\nIt doesn\'t work, (sadly).\n\nLike 8 1/2!\n'
    assert "3 documents" in stdout
