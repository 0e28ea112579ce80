"""Scoring the answers of a JSONL file with a judge or a mix (`alinea judge NAME --data FILE`).

A line is an alinea record with answers (demonstration, comparison, ranking, rating, thumb: every answer it holds
is scored against the last user turn of its prompt) or a row of `alinea generate --out` (`prompt` as text or chat
messages, `response`). Bad lines are reported together as `FILE:LINE: FIELD: EXPECTED`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alinea.errors import UserError
from alinea.judges import WeightedJudge
from alinea.judges.language import identify_language


@dataclass(frozen=True)
class JudgeInput:
    """One answer to score, and where it came from."""

    line: int
    """1-based line of the file."""
    index: int
    """Which answer of the line (0 for single-answer records; a comparison has 0 = a, 1 = b)."""
    prompt: str
    """The last user turn of the prompt."""
    response: str
    language: str
    """The record's `language` field; for `generate` rows, identified from the prompt."""
    id: str | None = None


@dataclass(frozen=True)
class ScoredResponse:
    """A `JudgeInput` with its total score and each term's unweighted score."""

    input: JudgeInput
    score: float
    components: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"line": self.input.line, "index": self.input.index}
        if self.input.id is not None:
            row["id"] = self.input.id
        row.update(language=self.input.language, score=self.score, components=self.components)
        return row


def _last_user_turn(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    users = [m.get("content") for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else None


def read_judge_inputs(path: str | Path) -> list[JudgeInput]:
    """Every answer of a JSONL file (see the module docstring); bad lines raise one UserError listing them all."""
    from alinea.data.jsonl import iter_json_lines
    from alinea.data.records import RecordError, parse_record

    path = Path(path)
    inputs: list[JudgeInput] = []
    errors: list[str] = []
    for item in iter_json_lines(path):
        where = f"{path}:{item.line}"
        if item.problem is not None:
            errors.append(f"{where}: {item.problem[0]}: {item.problem[1]}")
            continue
        value = item.value
        if isinstance(value, Mapping) and "type" in value:
            try:
                record = parse_record(value)
            except RecordError as err:
                errors.append(f"{where}: {err.field}: {err.expected}")
                continue
            responses = record.response_texts()
            if not responses:
                errors.append(f"{where}: type: a record with answers to judge, found a {record.record_type} record")
                continue
            prompt = record.prompt_messages()[-1]["content"]
            for index, response in enumerate(responses):
                inputs.append(JudgeInput(item.line, index, prompt, response, record.language, record.id))
            continue
        if isinstance(value, Mapping) and isinstance(value.get("response"), str):
            prompt = value.get("prompt")
            prompt = prompt if isinstance(prompt, str) else _last_user_turn(prompt)
            if prompt is None:
                errors.append(f"{where}: prompt: a string or a list of chat messages with a user turn")
                continue
            language = value.get("language") if isinstance(value.get("language"), str) else None
            language = language or identify_language(prompt).language
            record_id = value.get("id") if isinstance(value.get("id"), str) else None
            inputs.append(JudgeInput(item.line, 0, prompt, value["response"], language, record_id))
            continue
        errors.append(
            f"{where}: record: an alinea record with answers (a 'type' field) or an `alinea generate` row "
            "('prompt' and 'response')"
        )
    if errors:
        raise UserError(
            f"{len(errors)} line(s) of {path} cannot be judged; each is listed below as file:line: field: expected.",
            details=errors,
        )
    if not inputs:
        raise UserError(f"{path} holds no answers to judge: expected one JSON object a line.")
    return inputs


def score_inputs(inputs: list[JudgeInput], judge: WeightedJudge, *, batch_size: int = 256) -> list[ScoredResponse]:
    """Score every input with `judge`, `batch_size` answers at a time."""
    scored: list[ScoredResponse] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        components = judge.components([i.prompt for i in chunk], [i.response for i in chunk])
        totals = judge.combine(components)
        for row, (item, total) in enumerate(zip(chunk, totals, strict=True)):
            scored.append(ScoredResponse(item, total, {name: values[row] for name, values in components.items()}))
    return scored


def summarize_scores(scored: list[ScoredResponse]) -> dict[str, Any]:
    """`{"n", "mean", "std", "min", "max", "components": {name: mean}, "by_language": {code: {"n", "mean"}}}`."""
    if not scored:
        raise ValueError("no scores to summarise")
    values = [s.score for s in scored]
    by_language: dict[str, list[float]] = defaultdict(list)
    for s in scored:
        by_language[s.input.language].append(s.score)
    names = list(scored[0].components)
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "components": {name: statistics.fmean(s.components[name] for s in scored) for name in names},
        "by_language": {
            code: {"n": len(scores), "mean": statistics.fmean(scores)} for code, scores in sorted(by_language.items())
        },
    }
