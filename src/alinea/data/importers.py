"""Outside data sets into alinea records: Anthropic HH-RLHF, Stanford Alpaca and TRL's dataset formats.

Each importer reads the whole file and returns an `ImportResult(records, skipped)`. A row that cannot become
a valid record is never dropped silently: by default the importer raises a `UserError` listing every such row
as `FILE:ROW: FIELD: EXPECTED`; with `skip_invalid=True` it returns the good records and the skipped rows with
their reasons, for the caller to report. docs/data.md lists each format's quirks and what happens to them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from alinea.data.jsonl import iter_json_lines, read_bytes, read_records
from alinea.data.records import (
    ROLES,
    Comparison,
    Demonstration,
    Message,
    Prompt,
    Record,
    RecordError,
    Thumb,
    describe_value,
)
from alinea.errors import UserError

FORMATS = ("hh-rlhf", "alpaca", "trl", "alinea")


class SkippedRow(NamedTuple):
    """A source row that did not become a record."""

    row: int
    """1-based line number in a JSONL file, or 1-based item number in a JSON array (Alpaca)."""
    reason: str
    """`FIELD: EXPECTED`, naming the field of the source row."""


class ImportResult(NamedTuple):
    """What an importer made of a file; unpacks as `records, skipped = import_...(path)`."""

    records: list[Record]
    skipped: list[SkippedRow]


class _RowProblem(Exception):
    """A source row that cannot become a record: which field of the row, and what was expected."""

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: {expected}")
        self.field = field
        self.expected = expected


def _finish(
    path: Path,
    format_name: str,
    records: list[Record],
    skipped: list[SkippedRow],
    n_rows: int,
    *,
    skip_invalid: bool,
    where: Callable[[int], str],
) -> ImportResult:
    """Raise for bad rows unless they may be skipped; raise when nothing at all could be imported."""
    details = [f"{where(s.row)}: {s.reason}" for s in skipped]
    if n_rows == 0:
        raise UserError(f"{path} holds no rows to import as {format_name}.")
    if skipped and not skip_invalid:
        raise UserError(
            f"{len(skipped)} of {n_rows} rows in {path} cannot be imported as {format_name}; "
            "each is listed below. "
            "Fix them, or ask for invalid rows to be skipped (skip_invalid, the CLI's --skip-invalid).",
            details=details,
        )
    if not records:
        raise UserError(
            f"none of the {n_rows} rows in {path} could be imported as {format_name}.", details=details
        )
    return ImportResult(records, skipped)


def _import_jsonl_rows(
    path: str | Path, format_name: str, make_record: Callable[[Any], Record], *, skip_invalid: bool
) -> ImportResult:
    """Run `make_record` on every line of a JSONL file, collecting a reason for each line it refuses."""
    path = Path(path)
    records: list[Record] = []
    skipped: list[SkippedRow] = []
    n_rows = 0
    for item in iter_json_lines(path):
        n_rows += 1
        if item.problem is not None:
            problem_field, expected = item.problem
            if problem_field == "encoding":
                raise UserError(
                    f"{path} is not UTF-8 text; save it as UTF-8 and run again.",
                    details=[f"{path}:{item.line}: {problem_field}: {expected}"],
                )
            skipped.append(SkippedRow(item.line, f"{problem_field}: {expected}"))
            continue
        if not isinstance(item.value, dict):
            skipped.append(
                SkippedRow(item.line, f"record: a JSON object, found {describe_value(item.value)}")
            )
            continue
        try:
            records.append(make_record(item.value))
        except _RowProblem as problem:
            skipped.append(SkippedRow(item.line, f"{problem.field}: {problem.expected}"))
    return _finish(
        path,
        format_name,
        records,
        skipped,
        n_rows,
        skip_invalid=skip_invalid,
        where=lambda row: f"{path}:{row}",
    )


def _build(make: Callable[..., Record], rename: dict[str, str], **kwargs: Any) -> Record:
    """Build a record, reporting a broken rule under the source format's field name (`rename`)."""
    try:
        return make(**kwargs)
    except RecordError as err:
        head, dot, rest = err.field.partition(".")
        base, bracket, index = head.partition("[")
        field_name = rename.get(base, base) + bracket + index + dot + rest
        raise _RowProblem(field_name, err.expected) from None


# ------------------------------------------------------------------------------------------------------------
# Anthropic HH-RLHF


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def split_hh_transcript(transcript: str, field: str = "transcript") -> list[Message]:
    """Split "\\n\\nHuman: ...\\n\\nAssistant: ..." into chat messages: Human -> user, Assistant -> assistant.

    Each turn's text is stripped. Consecutive turns of one speaker (HH has a few "Assistant: ...
    Assistant: ...") are joined into one message with a blank line between, so roles alternate. Raises
    `_RowProblem` naming `field` when the transcript does not start with a Human turn or a turn is empty (an
    empty final Assistant reply is left to the caller, since which answer is empty matters there).
    """
    if not isinstance(transcript, str):
        raise _RowProblem(field, f"a transcript string, found {describe_value(transcript)}")
    pieces = _HH_TURN.split(transcript)
    if pieces[0].strip():
        raise _RowProblem(field, "a transcript starting with 'Human:', found text before the first turn")
    if len(pieces) < 3:
        raise _RowProblem(field, "a transcript of 'Human:' and 'Assistant:' turns, found no turns")
    if pieces[1] != "Human":
        raise _RowProblem(field, f"a transcript starting with 'Human:', found '{pieces[1]}:' first")
    turns: list[tuple[str, list[str]]] = []
    for speaker, text in zip(pieces[1::2], pieces[2::2], strict=True):
        role = _HH_ROLE[speaker]
        if turns and turns[-1][0] == role:
            turns[-1][1].append(text.strip())
        else:
            turns.append((role, [text.strip()]))
    messages = [Message(role, "\n\n".join(t for t in texts if t)) for role, texts in turns]
    for number, message in enumerate(messages[:-1], start=1):
        if not message.content:
            raise _RowProblem(field, f"a non-empty text in every turn, found an empty turn {number}")
    return messages


def _split_shared_prompt(
    chosen: Sequence[Message], rejected: Sequence[Message], names: tuple[str, str]
) -> tuple[list[Message], str, str]:
    """(prompt, chosen reply, rejected reply) from two chats that differ only in the last assistant turn."""
    for conversation, name in ((chosen, names[0]), (rejected, names[1])):
        if len(conversation) < 2 or conversation[-1].role != "assistant" or conversation[-2].role != "user":
            last = conversation[-1].role if conversation else "nothing"
            raise _RowProblem(
                name,
                f"a conversation ending in a user turn then an assistant reply, found it ends with {last}",
            )
        if not conversation[-1].content.strip():
            raise _RowProblem(name, "a non-empty final assistant reply, found an empty one")
    if list(chosen[:-1]) != list(rejected[:-1]):
        first = next(
            (i for i, (c, r) in enumerate(zip(chosen[:-1], rejected[:-1], strict=False), start=1) if c != r),
            min(len(chosen), len(rejected)),
        )
        raise _RowProblem(
            names[1],
            f"the same turns as {names[0]} except the final assistant reply, "
            f"found a difference at turn {first}",
        )
    if chosen[-1].content == rejected[-1].content:
        raise _RowProblem(names[1], f"a final reply different from {names[0]}'s, found the same text")
    return list(chosen[:-1]), chosen[-1].content, rejected[-1].content


def _hh_row_to_comparison(row: dict[str, Any]) -> Record:
    for name in ("chosen", "rejected"):
        if name not in row:
            raise _RowProblem(name, "a transcript string (the field is missing)")
    chosen = split_hh_transcript(row["chosen"], "chosen")
    rejected = split_hh_transcript(row["rejected"], "rejected")
    prompt, reply_chosen, reply_rejected = _split_shared_prompt(chosen, rejected, ("chosen", "rejected"))
    return _build(
        Comparison,
        {"messages": "chosen", "response_a": "chosen", "response_b": "rejected"},
        messages=prompt,
        response_a=reply_chosen,
        response_b=reply_rejected,
        preference="a",
        strength=1,
        annotator="hh-rlhf",
        tags=["hh-rlhf"],
    )


def import_hh_rlhf(path: str | Path, *, skip_invalid: bool = False) -> ImportResult:
    """Comparisons from an HH-RLHF file (`.jsonl` or `.jsonl.gz`, rows `{"chosen": str, "rejected": str}`).

    The turns both transcripts share are the prompt (`messages`); the chosen reply is `response_a`, the
    rejected one `response_b`, preference "a", strength 1 (HH records no strength), annotator and tag
    "hh-rlhf".
    """
    return _import_jsonl_rows(path, "hh-rlhf", _hh_row_to_comparison, skip_invalid=skip_invalid)


# ------------------------------------------------------------------------------------------------------------
# Stanford Alpaca


# Alpaca writes "no input" in many spellings where it means none: "No input", "<noinput>", "(No input)".
_ALPACA_NO_INPUT = re.compile(r"[<(]?\s*no\s*input\s*\.?\s*[>)]?", re.IGNORECASE)


def _alpaca_item_to_demonstration(item: Any) -> Record:
    if not isinstance(item, dict):
        raise _RowProblem(
            "item", f"an object with instruction, input and output, found {describe_value(item)}"
        )
    for name in ("instruction", "output"):
        if name not in item:
            raise _RowProblem(name, "a non-empty string (the field is missing)")
    values = {name: item.get(name, "") for name in ("instruction", "input", "output")}
    for name, value in values.items():
        if not isinstance(value, str):
            raise _RowProblem(name, f"a string, found {describe_value(value)}")
    instruction, extra, output = (values[name].strip() for name in ("instruction", "input", "output"))
    if _ALPACA_NO_INPUT.fullmatch(extra):
        extra = ""
    prompt = f"{instruction}\n\n{extra}" if extra and instruction else instruction
    rename = {"prompt": "instruction", "response": "output"}
    return _build(Demonstration, rename, prompt=prompt, response=output, annotator="alpaca", tags=["alpaca"])


def import_alpaca(path: str | Path, *, skip_invalid: bool = False) -> ImportResult:
    """Demonstrations from an Alpaca JSON array of `{instruction, input, output}`.

    prompt = instruction, plus a blank line and the input when there is one ("No input" placeholders count as
    none); response = output. Surrounding whitespace is stripped from each field.
    """
    path = Path(path)
    try:
        items = json.loads(read_bytes(path).decode("utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})."
        ) from None
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path} is not valid JSON; an Alpaca file is one JSON array.",
            details=[f"{path}:{err.lineno}: json: valid JSON, but {err.msg} at column {err.colno}"],
        ) from None
    if not isinstance(items, list):
        raise UserError(
            f"{path}: expected a JSON array of {{instruction, input, output}} objects, "
            f"found {describe_value(items)}."
        )
    records: list[Record] = []
    skipped: list[SkippedRow] = []
    for number, item in enumerate(items, start=1):
        try:
            records.append(_alpaca_item_to_demonstration(item))
        except _RowProblem as problem:
            skipped.append(SkippedRow(number, f"{problem.field}: {problem.expected}"))
    return _finish(
        path,
        "alpaca",
        records,
        skipped,
        len(items),
        skip_invalid=skip_invalid,
        where=lambda row: f"{path}: item {row}",
    )


# ------------------------------------------------------------------------------------------------------------
# TRL dataset formats (https://huggingface.co/docs/trl/dataset_formats)


def _trl_messages(value: Any, field: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise _RowProblem(
            field, f"a non-empty list of {{role, content}} messages, found {describe_value(value)}"
        )
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise _RowProblem(f"{field}[{i}]", "a message {role, content} with text content")
        if message.get("role") not in ROLES:
            raise _RowProblem(
                f"{field}[{i}].role",
                f"one of {', '.join(map(repr, ROLES))}, found {describe_value(message.get('role'))}",
            )
        messages.append(Message(message["role"], message["content"]))
    return messages


def _trl_prompt(value: Any) -> dict[str, Any]:
    """The prompt part of a record from TRL's `prompt`: text (standard) or messages (conversational)."""
    if isinstance(value, str):
        return {"prompt": value}
    return {"messages": _trl_messages(value, "prompt")}


def _trl_reply(value: Any, field: str) -> str:
    """A reply from TRL's `chosen` / `rejected` / `completion`: text, or a list of one assistant message."""
    if isinstance(value, str):
        return value
    messages = _trl_messages(value, field)
    if len(messages) != 1 or messages[0].role != "assistant":
        roles = ", ".join(m.role for m in messages)
        raise _RowProblem(
            field, f"a list holding one assistant message, found {describe_value(value)} with roles {roles}"
        )
    return messages[0].content


_TRL_RENAME = {
    "messages": "prompt",
    "response": "completion",
    "response_a": "chosen",
    "response_b": "rejected",
}


def _trl_row_to_record(row: dict[str, Any]) -> Record:
    """One TRL row to a record; which format it is follows from its keys (extra columns are ignored)."""
    keys = set(row)
    if "chosen" in keys and "rejected" in keys:
        if "prompt" in keys:  # explicit prompt, standard or conversational
            return _build(
                Comparison,
                _TRL_RENAME,
                **_trl_prompt(row["prompt"]),
                response_a=_trl_reply(row["chosen"], "chosen"),
                response_b=_trl_reply(row["rejected"], "rejected"),
                preference="a",
            )
        if isinstance(row["chosen"], str):
            raise _RowProblem(
                "prompt", "a prompt: standard (text) preference rows without one cannot be split"
            )
        prompt, chosen, rejected = _split_shared_prompt(
            _trl_messages(row["chosen"], "chosen"),
            _trl_messages(row["rejected"], "rejected"),
            ("chosen", "rejected"),
        )
        return _build(
            Comparison, _TRL_RENAME, messages=prompt, response_a=chosen, response_b=rejected, preference="a"
        )
    if "prompt" in keys and "completion" in keys:
        completion = _trl_reply(row["completion"], "completion")
        if "label" in keys:  # unpaired preference
            if not isinstance(row["label"], bool):
                raise _RowProblem("label", f"true or false, found {describe_value(row['label'])}")
            return _build(
                Thumb,
                _TRL_RENAME,
                **_trl_prompt(row["prompt"]),
                response=completion,
                thumb="up" if row["label"] else "down",
            )
        return _build(Demonstration, _TRL_RENAME, **_trl_prompt(row["prompt"]), response=completion)
    if "messages" in keys:  # conversational language modeling
        messages = _trl_messages(row["messages"], "messages")
        if messages[-1].role != "assistant":
            raise _RowProblem(f"messages[{len(messages) - 1}].role", "'assistant' (the answer to learn)")
        return _build(
            Demonstration,
            {"messages": "messages", "response": "messages"},
            messages=messages[:-1],
            response=messages[-1].content,
        )
    if "prompt" in keys:  # prompt-only
        return _build(Prompt, _TRL_RENAME, **_trl_prompt(row["prompt"]))
    if "text" in keys:
        raise _RowProblem(
            "text", "a row with a prompt: standard language-modeling text has no prompt to separate"
        )
    raise _RowProblem(
        "record",
        "a TRL row: prompt+chosen+rejected, chosen+rejected, prompt+completion(+label), messages or prompt; "
        f"found keys {', '.join(sorted(keys)) or 'none'}",
    )


def import_trl(path: str | Path, *, skip_invalid: bool = False) -> ImportResult:
    """Records from a JSONL file in one of TRL's dataset formats (each row's keys say which).

    preference (prompt, chosen, rejected; text or messages) and implicit-prompt preference (chosen, rejected
    as conversations) -> Comparison with preference "a"; prompt-completion -> Demonstration; conversational
    language modeling (messages ending with the assistant) -> Demonstration; unpaired preference (prompt,
    completion, label) -> Thumb; prompt-only -> Prompt.
    """
    return _import_jsonl_rows(path, "trl", _trl_row_to_record, skip_invalid=skip_invalid)


# ------------------------------------------------------------------------------------------------------------
# Format detection and one entry point


def _first_value(path: Path) -> tuple[str, Any]:
    """('array', first item) for a JSON array file, ('lines', first object) for JSONL."""
    text = read_bytes(path).decode("utf-8", errors="replace")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise UserError(
                f"{path} starts like a JSON array but is not valid JSON; name its format explicitly."
            ) from None
        return "array", items[0] if items else None
    for line in text.split("\n"):
        if line.strip():
            try:
                return "lines", json.loads(line)
            except json.JSONDecodeError:
                break
    raise UserError(f"cannot tell the format of {path}: its first line is not a JSON object.")


def detect_format(path: str | Path) -> str:
    """'hh-rlhf', 'alpaca', 'trl' or 'alinea', judged from the file's first row; `UserError` when unclear."""
    path = Path(path)
    shape, first = _first_value(path)
    if shape == "array" and isinstance(first, dict) and {"instruction", "output"} <= set(first):
        return "alpaca"
    if shape == "lines" and isinstance(first, dict):
        keys = set(first)
        if "type" in keys:
            return "alinea"
        if keys >= {"chosen", "rejected"} and "prompt" not in keys and isinstance(first["chosen"], str):
            if _HH_TURN.search(first["chosen"]):
                return "hh-rlhf"
        if keys & {"prompt", "chosen", "messages"}:
            return "trl"
    found = f"keys {', '.join(sorted(first))}" if isinstance(first, dict) else describe_value(first)
    raise UserError(
        f"cannot tell the format of {path} from its first row ({found}); name it explicitly, one of "
        f"{', '.join(FORMATS)}."
    )


def import_file(
    path: str | Path,
    format_name: str = "auto",
    *,
    skip_invalid: bool = False,
    expected_type: str | None = None,
) -> ImportResult:
    """Import any supported file: `format_name` is one of FORMATS or 'auto' (see `detect_format`).

    'alinea' files are read strictly with `read_records` (`expected_type` applies to them only).
    """
    if format_name == "auto":
        format_name = detect_format(path)
    if format_name == "hh-rlhf":
        return import_hh_rlhf(path, skip_invalid=skip_invalid)
    if format_name == "alpaca":
        return import_alpaca(path, skip_invalid=skip_invalid)
    if format_name == "trl":
        return import_trl(path, skip_invalid=skip_invalid)
    if format_name == "alinea":
        return ImportResult(read_records(path, expected_type=expected_type), [])
    raise UserError(f"unknown import format {format_name!r}: expected auto or one of {', '.join(FORMATS)}.")
