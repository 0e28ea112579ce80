"""Penn-Treebank-style sentiment trees (the Stanford Sentiment Treebank, SST) as plain sentences.

A file holds one tree a line, `(label children)` at every node and `(label token)` at a leaf; the root's label is the
sentence's sentiment, 0 (very negative) to 4 (very positive). For a text corpus only the leaves matter: they are
joined back into a sentence, with the PTB escapes undone (`-LRB-` -> `(`, two backquotes -> `"`) and the spaces
the tokenizer put before punctuation and clitics removed ("does n't" -> "doesn't", "film ." -> "film.").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from alinea.errors import UserError

_PIECE = re.compile(r"\(|\)|[^\s()]+")
_LABEL = re.compile(r"\d+")

_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}", "``": '"', "''": '"'}
# Tokens written without a space before them: punctuation and the clitics the PTB tokenizer splits off.
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", "...", ")", "]", "}", "%", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "#"}


class TreeError(ValueError):
    """A line that is not one well-formed tree: what was expected, and at which character (1-based)."""

    def __init__(self, expected: str, column: int) -> None:
        super().__init__(f"{expected} at column {column}")
        self.expected = expected
        self.column = column


class LabelledSentence(NamedTuple):
    label: int
    """The root label (SST: 0 very negative .. 4 very positive)."""
    tokens: list[str]
    """The leaves, left to right, as written in the file (still PTB-escaped)."""


def parse_tree(line: str) -> LabelledSentence:
    """The root label and the leaves of one tree; `TreeError` when the line is not exactly one tree."""
    pieces = [(m.group(), m.start() + 1) for m in _PIECE.finditer(line)]
    if not pieces or pieces[0][0] != "(":
        raise TreeError("a tree starting with '('", pieces[0][1] if pieces else 1)
    tokens: list[str] = []
    root_label = -1
    depth = 0
    i = 0
    while i < len(pieces):
        piece, column = pieces[i]
        if piece == "(":
            if i + 1 >= len(pieces) or not _LABEL.fullmatch(pieces[i + 1][0]):
                raise TreeError("a numeric label after '('", pieces[i + 1][1] if i + 1 < len(pieces) else column)
            if depth == 0 and i > 0:
                raise TreeError("one tree per line, found a second one", column)
            if depth == 0:
                root_label = int(pieces[i + 1][0])
            depth += 1
            i += 2
            if i < len(pieces) and pieces[i][0] not in ("(", ")"):  # a leaf: (label token)
                words = []
                while i < len(pieces) and pieces[i][0] not in ("(", ")"):
                    words.append(pieces[i][0])
                    i += 1
                if i >= len(pieces) or pieces[i][0] != ")":
                    raise TreeError("')' closing the leaf", pieces[i][1] if i < len(pieces) else len(line) + 1)
                tokens.append(" ".join(words))  # SST has three leaves with a space inside: "8 1\\/2"
                depth -= 1
                i += 1
            elif i < len(pieces) and pieces[i][0] == ")":
                raise TreeError("a token or a subtree after the label, found ')'", pieces[i][1])
            continue
        if piece == ")":
            if depth == 0:
                raise TreeError("the end of the tree, found one ')' too many", column)
            depth -= 1
            i += 1
            continue
        raise TreeError(f"'(' or ')', found the bare token {piece!r}", column)
    if depth:
        raise TreeError(f"{depth} more ')' to close the tree", len(line) + 1)
    return LabelledSentence(root_label, tokens)


def detokenize(tokens: list[str]) -> str:
    """PTB tokens back to text: escapes undone, no space before punctuation and clitics, quotes hugging their words.

    Double quotes come as an opening two-backquote and a closing two-apostrophe token; a single backquote opens a
    single quote that the next lone apostrophe closes (any other lone apostrophe stays a word of its own).
    """
    words: list[str] = []
    glue_next = False
    single_open = False
    for raw in tokens:
        token = _ESCAPES.get(raw, raw).replace("\\/", "/").replace("\\*", "*")
        glue = glue_next or token in _NO_SPACE_BEFORE
        glue_next = token in _NO_SPACE_AFTER
        if raw in ("``", "`"):
            token, glue_next = ('"' if raw == "``" else "'"), True
            single_open = single_open or raw == "`"
        elif raw == "''" or (raw == "'" and single_open):
            glue = True
            single_open = single_open and raw != "'"
        if glue and words:
            words[-1] += token
        else:
            words.append(token)
    return " ".join(words)


def looks_like_treebank(path: str | Path) -> bool:
    """True when the first non-blank line of a UTF-8 text file parses as one labelled tree."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.strip():
                if not line.lstrip().startswith("("):
                    return False
                try:
                    parse_tree(line)
                except TreeError:
                    return False
                return True
    return False


def read_treebank(path: str | Path) -> list[LabelledSentence]:
    """Every tree of a file, one a line (blank lines skipped); `UserError` listing each bad line as FILE:LINE."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: treebank file not found.")
    sentences: list[LabelledSentence] = []
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: expected UTF-8 text, found byte 0x{err.object[err.start]:02x}.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sentences.append(parse_tree(line))
        except TreeError as err:
            problems.append(f"{path}:{number}: tree: {err}")
    if problems:
        raise UserError(f"{len(problems)} lines of {path} are not one well-formed tree each.", details=problems)
    if not sentences:
        raise UserError(f"{path}: the treebank has no trees.")
    return sentences


def treebank_sentences(path: str | Path) -> list[str]:
    """The sentences of a treebank file as plain text, in file order (see `detokenize`)."""
    return [detokenize(s.tokens) for s in read_treebank(path)]
