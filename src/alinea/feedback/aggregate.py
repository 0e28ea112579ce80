"""One label per item from several annotators' answers: majority vote, or votes weighted by reliability.

Reliability of an annotator = their accuracy on the project's gold items, smoothed with one correct and one wrong
answer (Laplace's rule of succession: (correct + 1) / (answered + 2)); an annotator with no gold answers counts
0.5, like everyone under a plain majority. The weighted vote is Nitzan & Paroush's (1982) weighted majority rule
with accuracies as weights (their optimal weights are the log-odds log(p / (1 - p)); accuracy keeps every
annotator's weight positive, so that a new annotator is not silenced).

Per task type:
- pairwise: the preference ('a', 'b', 'tie') with the largest weight; a shared top weight between 'a' and 'b' is a
  'tie'. `strength` is the weighted mean strength of the winning votes, rounded. `both_bad` is the weighted share of
  votes that said both answers are bad.
- thumbs: 'up' or 'down' by weight; equal weights give null.
- ranking: responses ordered by their weighted mean rank; equal means share a rank.
- rating: the weighted mean score per aspect.
- demonstration: no label (texts are not averaged); the count of demonstrations.
`agreement` is the weighted share of the votes that agree with the label (null where it has no meaning).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from alinea.feedback.models import Judgment, User

NO_GOLD_WEIGHT = 0.5


def reliability_weights(session: Session, *, project_id: int) -> dict[str, float]:
    """username -> (gold correct + 1) / (gold answered + 2), for annotators with gold answers in the project."""
    rows = session.execute(
        select(User.username, func.count(Judgment.id),
               func.sum(case((Judgment.gold_correct.is_(True), 1), else_=0)))
        .join(User, User.id == Judgment.user_id)
        .where(Judgment.project_id == project_id, Judgment.is_gold.is_(True), Judgment.gold_correct.is_not(None))
        .group_by(User.username)
    ).all()
    return {name: (int(correct or 0) + 1) / (int(answered) + 2) for name, answered, correct in rows}


def _weighted_choice(labels: Sequence[tuple[Any, float]]) -> tuple[dict[Any, float], list[Any]]:
    totals: dict[Any, float] = defaultdict(float)
    for label, weight in labels:
        totals[label] += weight
    top = max(totals.values())
    return dict(totals), [label for label, total in totals.items() if abs(total - top) < 1e-12]


def aggregate_item(task_type: str, votes: Sequence[tuple[str, Mapping[str, Any]]], *,
                   weights: Mapping[str, float] | None = None, method: str = "majority") -> dict[str, Any]:
    """{label, votes, agreement} for one item from (annotator, canonical answer) pairs."""
    if method not in ("majority", "weighted"):
        raise ValueError(f"method must be 'majority' or 'weighted', not {method!r}")

    def weight(annotator: str) -> float:
        return (weights or {}).get(annotator, NO_GOLD_WEIGHT) if method == "weighted" else 1.0

    total = sum(weight(a) for a, _ in votes) or 1.0
    if task_type == "pairwise":
        totals, best = _weighted_choice([(answer["preference"], weight(a)) for a, answer in votes])
        preference = best[0] if len(best) == 1 else "tie"
        winners = [(answer["strength"], weight(a)) for a, answer in votes if answer["preference"] == preference]
        strength = 0 if preference == "tie" or not winners else round(
            sum(s * w for s, w in winners) / sum(w for _, w in winners))
        both_bad = sum(weight(a) for a, answer in votes if answer.get("both_bad")) / total
        return {"label": {"preference": preference, "strength": strength}, "votes": totals,
                "agreement": totals.get(preference, 0.0) / total, "both_bad_share": both_bad}
    if task_type == "thumbs":
        totals, best = _weighted_choice([(answer["thumb"], weight(a)) for a, answer in votes])
        thumb = best[0] if len(best) == 1 else None
        return {"label": {"thumb": thumb}, "votes": totals,
                "agreement": totals[thumb] / total if thumb else None}
    if task_type == "ranking":
        n = len(votes[0][1]["ranks"])
        means = [sum(answer["ranks"][i] * weight(a) for a, answer in votes) / total for i in range(n)]
        distinct = sorted(set(round(m, 9) for m in means))
        ranks = [distinct.index(round(m, 9)) + 1 for m in means]
        best = {i for i, r in enumerate(ranks) if r == 1}
        agree = sum(weight(a) for a, answer in votes
                    if min(range(n), key=lambda i: answer["ranks"][i]) in best) / total
        none_ok = sum(weight(a) for a, answer in votes if answer.get("none_acceptable")) / total
        return {"label": {"ranks": ranks}, "mean_ranks": means, "agreement": agree,
                "none_acceptable_share": none_ok}
    if task_type == "rating":
        aspects = votes[0][1]["ratings"].keys()
        means = {k: sum(answer["ratings"][k] * weight(a) for a, answer in votes) / total for k in aspects}
        flags: dict[str, float] = defaultdict(float)
        for a, answer in votes:
            for flag in answer.get("flags", []):
                flags[flag] += weight(a) / total
        return {"label": {"ratings": means}, "flag_shares": dict(flags), "agreement": None}
    return {"label": None, "n_demonstrations": len(votes), "agreement": None}
