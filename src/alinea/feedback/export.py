"""Exporting a project's judgments: canonical JSONL, alinea records, TRL preference rows, aggregated labels.

Formats (`export_rows(format=...)`):
- `canonical`: one row per judgment (and per skip), with everything recorded: annotator, guideline version, shown
  order, time spent, the canonical answer, gold flags, the item with its admin-only `meta`. Chat turns are rows too.
- `records`: alinea records (comparison, ranking, rating, thumb, demonstration) that `alinea.data.records`
  accepts, so the reward and SFT trainers read them directly: `annotator` is the username, `time` the submission
  time, `strength` the annotator's strength. Chat turns become comparisons (and thumbs, when given).
- `trl`: TRL's conversational preference format, `{prompt, chosen, rejected, margin}`: comparisons whose preference
  is not a tie, and every (better, worse) pair of a ranking. `margin` = strength / 3, following Llama 2's discrete
  margins per rating level (Touvron et al. 2023, sec. 3.2.2: 1, 2/3, 1/3, 0 for significantly better, better,
  slightly better, negligibly better); ranking pairs carry no strength and get margin 0.
- `aggregate`: one row per item with a consensus label (`aggregate.py` explains majority and reliability-weighted).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from alinea.feedback import aggregate, tasks
from alinea.feedback.models import ChatConversation, Item, Judgment, Project, Skip, User

ExportFormat = Literal["canonical", "records", "trl", "aggregate"]
AggregateMethod = Literal["majority", "weighted"]
FORMATS = ("canonical", "records", "trl", "aggregate")
FORMATS_HELP = ("canonical (every judgment with annotator, guideline version, shown order, time), records (alinea "
                "records for the trainers), trl (prompt/chosen/rejected/margin) or aggregate (one label per item)")


def iso(moment) -> str:
    """UTC time as '2024-05-01T12:30:00.123Z' (what records' `time` field expects)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:80] or "project"


def _judgments(session: Session, project_id: int) -> list[tuple[Judgment, Item, str]]:
    return list(session.execute(
        select(Judgment, Item, User.username)
        .join(Item, Item.id == Judgment.item_id).join(User, User.id == Judgment.user_id)
        .where(Judgment.project_id == project_id).order_by(Judgment.id)
    ).tuples())


def _chats(session: Session, project_id: int) -> list[tuple[ChatConversation, str]]:
    return list(session.execute(
        select(ChatConversation, User.username).join(User, User.id == ChatConversation.user_id)
        .where(ChatConversation.project_id == project_id).order_by(ChatConversation.id)
    ).tuples())


def canonical_rows(session: Session, *, project: Project) -> list[dict[str, Any]]:
    rows = []
    for judgment, item, username in _judgments(session, project.id):
        rows.append({
            "kind": "judgment", "project": project.name, "task_type": judgment.task_type,
            "judgment_id": judgment.id, "item_id": item.id, "item_external_id": item.external_id,
            "annotator": username, "time": iso(judgment.created_at), "time_spent_ms": judgment.time_spent_ms,
            "guideline_version": judgment.guideline_version, "shown_order": judgment.shown_order,
            "answer": judgment.answer, "is_gold": judgment.is_gold, "gold_correct": judgment.gold_correct,
            "messages": item.messages, "responses": item.responses, "language": item.language, "tags": item.tags,
            "meta": item.meta,
        })
    skips = session.execute(
        select(Skip, User.username).join(User, User.id == Skip.user_id)
        .where(Skip.project_id == project.id).order_by(Skip.id)
    ).tuples()
    for skip, username in skips:
        rows.append({"kind": "skip", "project": project.name, "item_id": skip.item_id, "annotator": username,
                     "time": iso(skip.created_at), "reason": skip.reason})
    for conversation, username in _chats(session, project.id):
        for number, turn in enumerate(conversation.turns):
            rows.append({"kind": "chat_turn", "project": project.name, "task_type": "chat",
                         "chat_id": conversation.id, "turn": number, "annotator": username,
                         "guideline_version": conversation.guideline_version, **turn})
    return rows


def record_rows(session: Session, *, project: Project) -> list[dict[str, Any]]:
    """alinea records, one per judgment (chat: a comparison per turn, plus a thumb when the turn has one)."""
    rows = []
    for judgment, item, username in _judgments(session, project.id):
        record = tasks.judgment_record(
            judgment.task_type, messages=item.messages, responses=item.responses, answer=judgment.answer,
            language=item.language, annotator=username, time=iso(judgment.created_at),
            record_id=f"{item.external_id or f'item-{item.id}'}/j{judgment.id}", tags=item.tags,
            scale=(project.scale_min, project.scale_max))
        if record is not None:
            rows.append(record.to_json())
    for conversation, username in _chats(session, project.id):
        for number, turn in enumerate(conversation.turns):
            rows.extend(_chat_turn_records(conversation, number, turn, username))
    return rows


def _chat_turn_records(conversation: ChatConversation, number: int, turn: dict[str, Any],
                       username: str) -> list[dict[str, Any]]:
    from alinea.data.records import Comparison, Thumb

    common = {"messages": turn["context"], "annotator": username, "time": turn["time"],
              "id": f"chat-{conversation.id}/turn-{number}", "tags": ("chat",)}
    a, b = turn["samples"]
    rows = [Comparison(response_a=a, response_b=b, preference=turn["preference"], strength=turn["strength"],
                       **common).to_json()]
    if turn.get("thumb"):
        continued = turn["continued_with"]
        rows.append(Thumb(response=turn["samples"][continued], thumb=turn["thumb"], comment=turn.get("comment", ""),
                          **{**common, "id": f"chat-{conversation.id}/turn-{number}/thumb"}).to_json())
    return rows


def trl_rows(session: Session, *, project: Project) -> list[dict[str, Any]]:
    """TRL preference rows with a margin (see the module docstring)."""
    rows = []
    for record in record_rows(session, project=project):
        prompt = record["messages"] if "messages" in record else [{"role": "user", "content": record["prompt"]}]
        if record["type"] == "comparison" and record["preference"] != "tie":
            chosen, rejected = ((record["response_a"], record["response_b"]) if record["preference"] == "a"
                                else (record["response_b"], record["response_a"]))
            rows.append(_trl_row(prompt, chosen, rejected, record["strength"] / 3))
        elif record["type"] == "ranking":
            ranks, responses = record["ranks"], record["responses"]
            for i in range(len(ranks)):
                for j in range(len(ranks)):
                    if ranks[i] < ranks[j]:
                        rows.append(_trl_row(prompt, responses[i], responses[j], 0.0))
    return rows


def _trl_row(prompt: list[dict[str, str]], chosen: str, rejected: str, margin: float) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "margin": round(margin, 6)}


def aggregate_rows(session: Session, *, project: Project, method: str = "majority") -> list[dict[str, Any]]:
    """One row per judged item: the consensus label, the votes behind it and how strongly they agree."""
    by_item: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    items: dict[int, Item] = {}
    for judgment, item, username in _judgments(session, project.id):
        by_item[item.id].append((username, judgment.answer))
        items[item.id] = item
    weights = aggregate.reliability_weights(session, project_id=project.id) if method == "weighted" else {}
    rows = []
    for item_id, votes in by_item.items():
        item = items[item_id]
        label = aggregate.aggregate_item(project.task_type, votes, weights=weights, method=method)
        rows.append({"item_id": item_id, "item_external_id": item.external_id, "messages": item.messages,
                     "responses": item.responses, "is_gold": item.is_gold, "n_judgments": len(votes),
                     "method": method, **label})
    return rows


def export_rows(session: Session, *, project: Project, format: str = "canonical",
                method: str = "majority") -> list[dict[str, Any]]:
    if format == "canonical":
        return canonical_rows(session, project=project)
    if format == "records":
        return record_rows(session, project=project)
    if format == "trl":
        return trl_rows(session, project=project)
    if format == "aggregate":
        return aggregate_rows(session, project=project, method=method)
    raise ValueError(f"format must be one of {FORMATS}, not {format!r}")


def to_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
