"""Every example line in docs/data.md is a valid record, so the reference cannot drift from the code."""

from __future__ import annotations

import json
from pathlib import Path

from alinea.data.records import RECORD_TYPES, parse_record

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def example_lines() -> list[str]:
    lines, inside = [], False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line == "```jsonl"
        elif inside and line.strip():
            lines.append(line)
    return lines


def test_doc_examples_parse_and_round_trip():
    lines = example_lines()
    records = [parse_record(json.loads(line)) for line in lines]
    assert {record.record_type for record in records} == set(RECORD_TYPES)
    for line, record in zip(lines, records, strict=True):
        assert parse_record(record.to_json()) == record, line
