"""Reading and writing JSONL record files: every problem named by file, line and field; nothing half-written.

Reading checks the whole file and reports one error per bad line, formatted `FILE:LINE: FIELD: EXPECTED`, so a
person can fix every line in one pass. Writing goes to a temporary file in the target's folder, is flushed to
disk, then renamed over the target: a reader sees the old file or the new one, never a mix, and a failure
midway leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from alinea.data.records import Record, RecordError, parse_record
from alinea.errors import UserError


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in `.gz`; a missing or unreadable file: UserError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: expected a data file there.") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder: expected a data file.") from None
    except PermissionError:
        raise UserError(f"{path} cannot be read: permission denied.") from None
    if path.name.endswith(".gz"):
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise UserError(
                f"{path} is not a valid gzip file ({err}); a name ending in .gz must be gzipped."
            ) from None
    return raw


class JsonLine(NamedTuple):
    """One non-blank line of a JSONL file: the parsed value, or the problem that stopped it being parsed."""

    line: int
    """1-based line number in the file."""
    value: Any
    """The parsed JSON value (None when `problem` is set)."""
    problem: tuple[str, str] | None
    """(field, expected) when the line is not valid UTF-8 JSON."""


def iter_json_lines(path: str | Path) -> Iterator[JsonLine]:
    """Each non-blank line of a JSONL file (`.gz` allowed), parsed.

    A line that is not JSON comes back with the problem ('json', message). Bytes that are not UTF-8 come
    back as ('encoding', ...) on the first line that has them, and iteration stops there: the rest of the file
    is in an unknown encoding, so more errors would only be noise.
    """
    data = read_bytes(path)
    # Split on b"\n" only: str.splitlines would also split inside strings at U+2028 and other separators.
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            byte = raw[err.start]
            yield JsonLine(
                number,
                None,
                ("encoding", f"expected UTF-8 text, found byte 0x{byte:02x} at column {err.start + 1}"),
            )
            return
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            yield JsonLine(number, None, ("json", f"valid JSON, but {err.msg} at column {err.colno}"))
            continue
        yield JsonLine(number, value, None)


@dataclass
class ValidationReport:
    """The result of checking one JSONL record file."""

    path: Path
    """The file, as given by the caller."""
    n_lines: int
    """Non-blank lines read (each should be one record)."""
    records: list[Record] = field(default_factory=list)
    """The valid records, in file order."""
    errors: list[str] = field(default_factory=list)
    """One `FILE:LINE: FIELD: EXPECTED` entry per bad line (or one entry for an empty or non-UTF-8 file)."""
    not_utf8: bool = False
    """True when reading stopped at bytes that are not UTF-8."""

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def summary(self) -> str:
        """One paragraph for a person: what is wrong and what to do."""
        if self.not_utf8:
            return f"{self.path} is not UTF-8 text; save it as UTF-8 and run again."
        if self.n_lines == 0:
            return f"{self.path} holds no records: expected one JSON object a line."
        if self.errors:
            return (
                f"{len(self.errors)} of {self.n_lines} lines in {self.path} are invalid; "
                "each is listed below as file:line: field: expected. Fix them and run again."
            )
        return f"{self.path}: {len(self.records)} valid records."

    def raise_if_invalid(self) -> None:
        """Raise a `UserError` carrying the summary and one detail per bad line, unless the file is fine."""
        if self.errors:
            raise UserError(self.summary, details=self.errors)


def validate_file(path: str | Path, *, expected_type: str | None = None) -> ValidationReport:
    """Check every line of a JSONL record file: a missing file raises UserError, bad lines go in `errors`."""
    path = Path(path)
    report = ValidationReport(path=path, n_lines=0)
    for item in iter_json_lines(path):
        report.n_lines += 1
        if item.problem is not None:
            problem_field, expected = item.problem
            report.errors.append(f"{path}:{item.line}: {problem_field}: {expected}")
            if problem_field == "encoding":
                report.not_utf8 = True
            continue
        try:
            report.records.append(parse_record(item.value, expected_type=expected_type))
        except RecordError as err:
            report.errors.append(f"{path}:{item.line}: {err.field}: {err.expected}")
    if report.n_lines == 0:
        report.errors.append(f"{path}: expected at least one record, found an empty file")
    return report


def read_records(path: str | Path, *, expected_type: str | None = None) -> list[Record]:
    """All records of a JSONL file, or a `UserError` listing every bad line (see `validate_file`)."""
    report = validate_file(path, expected_type=expected_type)
    report.raise_if_invalid()
    return report.records


def write_text(path: str | Path, chunks: Iterable[str]) -> None:
    """Write text chunks (UTF-8, `\n` line ends) to `path` atomically.

    The text goes to a temporary file beside the target, which is flushed to disk and renamed over the target.
    If anything fails, including the `chunks` iterable itself, the temporary file is removed and an existing
    target is left untouched. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An existing file keeps its permissions; a new one gets rw-r--r-- (mkstemp alone would give rw-------).
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_folder(path.parent)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object a line (UTF-8, non-ASCII kept as is), atomically (see `write_text`); return the count."""
    count = 0

    def lines() -> Iterator[str]:
        nonlocal count
        for row in rows:
            yield json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
            count += 1

    write_text(path, lines())
    return count


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write records as JSONL (see `write_jsonl`); return how many were written."""
    return write_jsonl(path, (record.to_json() for record in records))


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; best effort (not every platform can open a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
