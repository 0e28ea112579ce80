"""Fixtures for the data tests: small files written to tmp_path, and the shared data sets when present."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"
"""The folder shared/data beside the repository (real HH-RLHF and Alpaca files); tests skip without it."""


@pytest.fixture
def write_lines(tmp_path: Path) -> Callable[..., Path]:
    """Write a JSONL file: dicts become JSON lines, strings are written as they are."""

    def write(name: str, lines: list[Any]) -> Path:
        path = tmp_path / name
        text = "".join(
            (json.dumps(line, ensure_ascii=False) if isinstance(line, dict) else line) + "\n"
            for line in lines
        )
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def shared_file() -> Callable[[str], Path]:
    """Find a file under shared/data, or skip the test saying what is missing and where it was looked for."""

    def find(relative: str) -> Path:
        if not SHARED_DATA.is_dir():
            pytest.skip(
                "shared data sets not found: expected the folder shared/data beside the repository "
                f"(looked in {SHARED_DATA.resolve()})"
            )
        path = SHARED_DATA / relative
        if not path.is_file():
            pytest.skip(f"shared data file {relative} is not in {SHARED_DATA.resolve()}")
        return path

    return find
