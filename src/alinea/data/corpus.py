"""Raw-text corpora: read documents (blocks separated by blank lines), split off held-out text, pack into sequences."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from alinea.errors import UserError


def read_documents(path: str | Path) -> list[str]:
    """Documents of a raw-text corpus: blocks separated by blank lines, whitespace-normalised, empty ones dropped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: corpus file not found.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: encoding: expected UTF-8 text, found byte 0x{raw[err.start]:02x}."
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    documents = []
    for block in re.split(r"\n[ \t\f\v]*\n", text):  # a line of only spaces or tabs separates documents too
        cleaned = "\n".join(line.strip() for line in block.strip().split("\n") if line.strip())
        if cleaned:
            documents.append(cleaned)
    if not documents:
        raise UserError(f"{path}: the corpus has no text.")
    return documents


def split_documents(documents: list[str], *, heldout_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split into (train, heldout); at least one held-out document when the fraction is > 0."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise UserError(f"pretrain.heldout_fraction: expected a number in [0, 1), got {heldout_fraction}.")
    order = np.random.default_rng(seed).permutation(len(documents))
    n_heldout = int(round(len(documents) * heldout_fraction))
    if heldout_fraction > 0:
        n_heldout = max(1, n_heldout)
    if n_heldout >= len(documents):
        raise UserError(f"corpus: {len(documents)} documents are too few to hold {heldout_fraction:.0%} out.")
    heldout = [documents[i] for i in sorted(order[:n_heldout])]
    train = [documents[i] for i in sorted(order[n_heldout:])]
    return train, heldout


def pack_documents(documents: list[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Token ids of the documents joined by end-of-text, cut into rows of `seq_len` (the remainder is dropped)."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    encoded = tokenizer(documents, add_special_tokens=False)["input_ids"]
    for doc in encoded:
        ids.extend(doc)
        ids.append(eos)
    n_rows = len(ids) // seq_len
    if n_rows == 0:
        raise UserError(f"corpus: {len(ids)} tokens are fewer than one sequence of pretrain.seq_len={seq_len}.")
    return torch.tensor(ids[: n_rows * seq_len], dtype=torch.long).view(n_rows, seq_len)


def records_to_documents(records) -> list[str]:
    """One document per record and response: the prompt's turns, then the response, a line each."""
    documents = []
    for record in records:
        prompt = "\n".join(m["content"].strip() for m in record.prompt_messages())
        responses = record.response_texts() or [""]
        for response in responses:
            text = f"{prompt}\n{response.strip()}".strip()
            # A blank line would split the document in two when the corpus is read back.
            documents.append("\n".join(line for line in text.split("\n") if line.strip()))
    return [d for d in documents if d]


def write_documents(path: str | Path, documents: list[str]) -> int:
    """Write documents separated by blank lines, atomically (see `alinea.data.jsonl.write_text`)."""
    from alinea.data.jsonl import write_text

    write_text(path, ["\n\n".join(documents) + "\n"])
    return len(documents)


def source_documents(path: str | Path, *, skip_invalid: bool = False) -> tuple[list[str], int]:
    """(documents, rows skipped) of one source of a pretraining corpus, by what the file holds:

    - a `.txt` file of sentiment trees, one a line (SST; see `alinea.data.treebank`): one document per sentence;
    - any other `.txt` file: its blank-line separated blocks, as `read_documents` reads them;
    - a record file in any format `alinea data import` reads: one document per conversation (`records_to_documents`).
    """
    from alinea.data.importers import import_file
    from alinea.data.treebank import looks_like_treebank, treebank_sentences

    path = Path(path)
    if path.suffix == ".txt":
        if path.is_file() and looks_like_treebank(path):
            return treebank_sentences(path), 0
        return read_documents(path), 0
    records, skipped = import_file(path, "auto", skip_invalid=skip_invalid)
    return records_to_documents(records), len(skipped)
