"""Writing alinea records out in TRL's dataset formats (https://huggingface.co/docs/trl/dataset_formats).

`export_trl(records, kind)` returns the rows (dicts, ready for `write_jsonl`) and a count of what it left out,
by reason, for the caller to report. Metadata (id, annotator, tags, strength) has no place in these formats
and is not written.

Each kind takes some record types and writes one layout when conversational=True (the default), another
when conversational=False:
- preference (comparison, ranking): {prompt: msgs, chosen: [msg], rejected: [msg]}, or plain strings
- sft (demonstration): {messages: prompt msgs + assistant msg}, or {prompt, completion} strings
- unpaired-preference (thumb): {prompt: msgs, completion: [msg], label: bool}, or strings and label
- prompt-only (every record type): {prompt: msgs}, or {prompt} as a string
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

from alinea.data.records import BaseRecord, Comparison, Demonstration, Ranking, Record, Thumb

EXPORT_KINDS = ("preference", "sft", "unpaired-preference", "prompt-only")

_SOURCES: dict[str, tuple[type[BaseRecord], ...]] = {
    "preference": (Comparison, Ranking),
    "sft": (Demonstration,),
    "unpaired-preference": (Thumb,),
    "prompt-only": (BaseRecord,),
}


class TrlExport(NamedTuple):
    """Rows in a TRL format, and how many records or pairs were left out, by reason."""

    rows: list[dict[str, Any]]
    skipped: dict[str, int]
    """Reason -> count: 'tie' (a comparison with no winner), 'tied ranking pair', 'multi-turn prompt' (only
    conversational rows can hold one), '<type> record' (a type this kind does not take)."""


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _prompt_value(record: BaseRecord, conversational: bool) -> Any:
    """The prompt as TRL wants it: messages, or text when the chat is a single user turn."""
    if conversational:
        return record.prompt_messages()
    messages = record.prompt_messages()
    if len(messages) != 1:
        raise _Skip("multi-turn prompt")
    return messages[0]["content"]


def _preference_row(prompt: Any, chosen: str, rejected: str, conversational: bool) -> dict[str, Any]:
    if conversational:
        return {"prompt": prompt, "chosen": _assistant(chosen), "rejected": _assistant(rejected)}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _rows_for(record: Record, kind: str, conversational: bool, skipped: Counter[str]) -> list[dict[str, Any]]:
    prompt = _prompt_value(record, conversational)
    if kind == "prompt-only":
        return [{"prompt": prompt}]
    if isinstance(record, Comparison):
        if record.chosen is None or record.rejected is None:
            raise _Skip("tie")
        return [_preference_row(prompt, record.chosen, record.rejected, conversational)]
    if isinstance(record, Ranking):
        pairs = record.winning_pairs()
        n_pairs = len(record.responses) * (len(record.responses) - 1) // 2
        skipped["tied ranking pair"] += n_pairs - len(pairs)
        return [
            _preference_row(prompt, record.responses[better], record.responses[worse], conversational)
            for better, worse in pairs
        ]
    if isinstance(record, Demonstration):
        if conversational:
            return [{"messages": [*prompt, *_assistant(record.response)]}]
        return [{"prompt": prompt, "completion": record.response}]
    if isinstance(record, Thumb):
        completion = _assistant(record.response) if conversational else record.response
        return [{"prompt": prompt, "completion": completion, "label": record.thumb == "up"}]
    raise AssertionError(f"no TRL row for {type(record).__name__} as {kind}")  # _SOURCES filters these out


def export_trl(records: Iterable[Record], kind: str, *, conversational: bool = True) -> TrlExport:
    """Rows in one of TRL's dataset formats (see the module table); records it cannot express are counted.

    Rankings become every (better, worse) pair of responses; ties (comparisons and equal ranks) make no row.
    """
    if kind not in EXPORT_KINDS:
        raise ValueError(f"kind must be one of {EXPORT_KINDS}, not {kind!r}")
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for record in records:
        if not isinstance(record, _SOURCES[kind]):
            skipped[f"{record.record_type} record"] += 1
            continue
        try:
            rows.extend(_rows_for(record, kind, conversational, skipped))
        except _Skip as skip:
            skipped[skip.reason] += 1
    return TrlExport(rows, {reason: n for reason, n in sorted(skipped.items()) if n})
