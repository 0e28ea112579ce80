"""The importers on the real files in shared/data (skipped, saying why, when that folder is absent).

The expected counts were found by reading the files: see docs/data.md, "What the real files hold".
"""

from __future__ import annotations

import gzip
import json
import re

import pytest

from alinea.data.importers import SkippedRow, detect_format, import_alpaca, import_hh_rlhf
from alinea.data.jsonl import read_records, write_records
from alinea.data.stats import dataset_stats
from alinea.errors import UserError

pytestmark = pytest.mark.shared_data

HH = "hh-rlhf/harmless-base/train-portion.jsonl.gz"
ALPACA = "alpaca/alpaca_data_5000_subset.json"
EMPTY_CHOSEN_REPLY = "chosen: a non-empty final assistant reply, found an empty one"


def test_hh_rlhf_portion(shared_file, tmp_path):
    path = shared_file(HH)
    assert detect_format(path) == "hh-rlhf"
    with pytest.raises(UserError) as caught:
        import_hh_rlhf(path)
    assert len(caught.value.details) == 3

    records, skipped = import_hh_rlhf(path, skip_invalid=True)
    assert len(records) + len(skipped) == 1600
    assert (len(records), len(skipped)) == (1597, 3)
    assert skipped == [
        SkippedRow(356, EMPTY_CHOSEN_REPLY),
        SkippedRow(632, EMPTY_CHOSEN_REPLY),
        SkippedRow(758, EMPTY_CHOSEN_REPLY),
    ]

    # The same three rows, found without our parser: a chosen transcript ending in an empty Assistant turn.
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        raw = [json.loads(line) for line in lines]
    assert [n for n, row in enumerate(raw, 1) if re.search(r"\n\nAssistant:\s*$", row["chosen"])] == [
        356,
        632,
        758,
    ]

    for record in records:
        roles = [m.role for m in record.messages]
        assert roles[0] == "user" and roles[-1] == "user"
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))  # strictly alternating
        assert record.response_a != record.response_b

    # Six rows repeat "Assistant:" twice in a row; in three of them only in the chosen reply, which is joined.
    line_867 = records[867 - 1 - 3]
    assert line_867.messages[-1].content == "Isn't that drag kings?"
    assert line_867.response_a.startswith(
        "No. Men who impersonate stereotypical women are called drag kings."
    )
    assert line_867.response_a.endswith("\n\nI think they call them that because")
    assert line_867.response_b.startswith("A drag king is the opposite of a drag queen")

    stats = dataset_stats(records)
    assert stats["comparisons"]["preference"] == {"a": 1597, "b": 0, "tie": 0}
    assert stats["annotators"] == {"hh-rlhf": 1597}

    out = tmp_path / "hh.jsonl"
    write_records(out, records)
    assert read_records(out, expected_type="comparison") == records


def test_alpaca_subset(shared_file):
    path = shared_file(ALPACA)
    assert detect_format(path) == "alpaca"
    records, skipped = import_alpaca(path, skip_invalid=True)
    assert len(records) + len(skipped) == 5000
    assert skipped == [
        SkippedRow(2336, "output: a non-empty string, found an empty string"),
        SkippedRow(4659, "output: a non-empty string, found an empty string"),
    ]

    items = json.loads(path.read_text(encoding="utf-8"))
    with_input = [item for item in items if item["input"].strip()]
    assert len(with_input) == 1943
    # 51 of those inputs are "No input" placeholders in ten spellings, treated as no input.
    placeholders = [
        i for i in with_input if re.fullmatch(r"[<(]?\s*no\s*input\.?\s*[>)]?", i["input"].strip(), re.I)
    ]
    assert len(placeholders) == 51
    assert (
        sum(
            1
            for r, i in zip(records, (i for i in items if i["output"].strip()), strict=True)
            if r.prompt != i["instruction"].strip()
        )
        == 1943 - 51
    )
