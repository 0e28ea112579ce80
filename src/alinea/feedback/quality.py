"""Annotator quality: throughput, time per item, gold accuracy, position bias, and agreement with peers.

Per annotator (`annotator_stats`):
- `judgments`, `skips`;
- `median_time_s`, `mean_time_s`: time per item (the client's measure, or lease to submission);
- `per_hour`: judgments per hour of annotation time, 3600 * judgments / total seconds spent;
- `gold_accuracy`: share of gold items answered as their known answer (see tasks.gold_correct), with `gold_n`;
- `position_bias` (pairwise): share of non-tie judgments in which the response shown on the left won. The shown
  order is random per annotator, so a careful annotator sits near 0.5; far from it suggests clicking one side.

Agreement (`agreement`), on the labels `labels_for` extracts (pairwise: the preference; thumbs: the thumb; ranking:
the rank of every response, each (item, response) a unit; rating: the score of every aspect, each (item, aspect)
a unit):
- Cohen's kappa for every pair of annotators over the units both labelled (Cohen 1960, "A coefficient of agreement
  for nominal scales"): kappa = (p_o - p_e) / (1 - p_e), p_o the observed agreement, p_e = sum_k p1(k) p2(k) the
  agreement expected from each annotator's own label frequencies; null where p_e = 1 or fewer than 2 shared units;
- Krippendorff's alpha over the whole project (Krippendorff 2004, "Content Analysis", ch. 11), computed with the
  `krippendorff` package, which handles missing labels: nominal for pairwise and thumbs, ordinal for ranks,
  interval for ratings. Published human agreement on preferences is modest (about 63% HH, Bai et al. 2022; 73%
  InstructGPT labelers), so alpha around 0.2-0.5 is common for preference data; near 0 means noise.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alinea.feedback import crud
from alinea.feedback.models import ChatConversation, Judgment, Project, Skip, User

LEVELS = {"pairwise": "nominal", "thumbs": "nominal", "ranking": "ordinal", "rating": "interval"}


def labels_for(task_type: str, item_id: int, answer: Mapping[str, Any]) -> dict[tuple, Any]:
    """Unit -> label for one answer (see the module docstring); empty for task types without labels."""
    if task_type == "pairwise":
        return {(item_id,): answer["preference"]}
    if task_type == "thumbs":
        return {(item_id,): answer["thumb"]}
    if task_type == "ranking":
        return {(item_id, i): rank for i, rank in enumerate(answer["ranks"])}
    if task_type == "rating":
        return {(item_id, aspect): score for aspect, score in answer["ratings"].items()}
    return {}


def cohen_kappa(first: Sequence[Any], second: Sequence[Any]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same units (equal-length sequences)."""
    n = len(first)
    if n != len(second):
        raise ValueError("both annotators must label the same units")
    if n < 2:
        return None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    counts_1, counts_2 = Counter(first), Counter(second)
    expected = sum(counts_1[k] * counts_2[k] for k in counts_1) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha(labels: Mapping[str, Mapping[tuple, Any]], level: str) -> float | None:
    """Krippendorff's alpha of annotator -> {unit: label}; None when it is undefined (one value, no pairs)."""
    import krippendorff
    import numpy as np

    units = sorted({unit for by_unit in labels.values() for unit in by_unit}, key=repr)
    annotators = sorted(labels)
    if len(annotators) < 2 or not units:
        return None
    values: dict[Any, int] = {}
    if level == "nominal":
        for by_unit in labels.values():
            for label in by_unit.values():
                values.setdefault(label, len(values))
    matrix = np.full((len(annotators), len(units)), np.nan)
    column = {unit: j for j, unit in enumerate(units)}
    for i, annotator in enumerate(annotators):
        for unit, label in labels[annotator].items():
            matrix[i, column[unit]] = values[label] if level == "nominal" else float(label)
    pairable = (np.sum(~np.isnan(matrix), axis=0) >= 2).sum()
    if pairable == 0:
        return None
    try:
        alpha = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    except (ValueError, ZeroDivisionError):
        return None  # e.g. a single value in the whole domain: agreement is undefined
    return None if alpha != alpha else float(alpha)


def agreement(task_type: str, judgments: Sequence[tuple[str, int, Mapping[str, Any]]]) -> dict[str, Any]:
    """Pairwise Cohen's kappas and the project's Krippendorff's alpha from (annotator, item_id, answer) triples."""
    level = LEVELS.get(task_type)
    if level is None:
        return {"level": None, "alpha": None, "kappa": []}
    labels: dict[str, dict[tuple, Any]] = defaultdict(dict)
    for annotator, item_id, answer in judgments:
        labels[annotator].update(labels_for(task_type, item_id, answer))
    kappas = []
    for first, second in combinations(sorted(labels), 2):
        shared = sorted(set(labels[first]) & set(labels[second]), key=repr)
        if not shared:
            continue
        kappa = cohen_kappa([labels[first][u] for u in shared], [labels[second][u] for u in shared])
        kappas.append({"annotators": [first, second], "units": len(shared), "kappa": kappa})
    return {"level": level, "alpha": krippendorff_alpha(labels, level), "kappa": kappas}


def annotator_stats(task_type: str, rows: Sequence[Mapping[str, Any]], skips: Mapping[str, int]) -> list[dict]:
    """Per-annotator figures from judgment rows {annotator, time_spent_ms, is_gold, gold_correct, answer}."""
    by_annotator: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_annotator[row["annotator"]].append(row)
    stats = []
    for annotator in sorted(set(by_annotator) | set(skips)):
        mine = by_annotator.get(annotator, [])
        times = [r["time_spent_ms"] / 1000 for r in mine if r["time_spent_ms"] is not None]
        gold = [r["gold_correct"] for r in mine if r["is_gold"] and r["gold_correct"] is not None]
        entry: dict[str, Any] = {
            "annotator": annotator,
            "judgments": len(mine),
            "skips": skips.get(annotator, 0),
            "median_time_s": statistics.median(times) if times else None,
            "mean_time_s": statistics.fmean(times) if times else None,
            "per_hour": 3600 * len(times) / sum(times) if times and sum(times) > 0 else None,
            "gold_n": len(gold),
            "gold_accuracy": sum(gold) / len(gold) if gold else None,
        }
        if task_type == "pairwise":
            decided = [r["answer"]["winner_position"] for r in mine if r["answer"].get("winner_position") is not None]
            entry["position_bias"] = sum(1 for p in decided if p == 0) / len(decided) if decided else None
            entry["position_n"] = len(decided)
        stats.append(entry)
    return stats


def project_quality(session: Session, *, project: Project) -> dict[str, Any]:
    """Progress, per-annotator statistics and agreement for a project (the dashboard and GET .../quality)."""
    rows = [
        {"annotator": username, "item_id": j.item_id, "time_spent_ms": j.time_spent_ms, "is_gold": j.is_gold,
         "gold_correct": j.gold_correct, "answer": j.answer}
        for j, username in session.execute(
            select(Judgment, User.username).join(User, User.id == Judgment.user_id)
            .where(Judgment.project_id == project.id).order_by(Judgment.id)).tuples()
    ]
    skips = dict(session.execute(
        select(User.username, func.count(Skip.id)).join(User, User.id == Skip.user_id)
        .where(Skip.project_id == project.id).group_by(User.username)).tuples().all())
    chat_turns = sum(len(turns or []) for turns in session.scalars(
        select(ChatConversation.turns).where(ChatConversation.project_id == project.id)))
    return {
        "project": {"id": project.id, "name": project.name, "task_type": project.task_type},
        "progress": {**crud.project_progress(session, project=project), "chat_turns": chat_turns},
        "annotators": annotator_stats(project.task_type, rows, skips),
        "agreement": agreement(project.task_type,
                               [(r["annotator"], r["item_id"], r["answer"]) for r in rows]),
    }
