"""Handing items to annotators and taking their judgments back, correct under concurrency on both databases.

Rules (issue 5, "Assignment"):
- each regular item goes to `overlap` distinct annotators: it has slots 0..overlap-1 and an annotator's lease or
  finished judgment occupies one (`assignments`, unique on (item_id, slot) and on (item_id, user_id));
- an item is leased to an annotator until `expires_at`; an expired lease's slot is taken over by the next annotator
  who asks (the abandoned item returns to the pool) with a conditional UPDATE, so exactly one of two racing
  annotators wins it, and a late submission from the first one is refused (409) once the slot has moved on;
- higher `priority` first (the loop sets it from reward-model uncertainty), then older items;
- gold items are mixed in at `gold_rate`, decided per (annotator, n-th lease) with a seeded generator, silently: an
  annotator sees no difference; each annotator sees each gold item at most once and gold items take no slot;
- an annotator may skip with a reason: the slot is freed and the item never comes back to them;
- an annotator holds at most one lease per project: asking again returns the same item until it is judged,
  skipped or expired.

Concurrency: on SQLite every write transaction holds the database's write lock from its first statement
(`BEGIN IMMEDIATE`, see db.py), so these functions run one at a time. On PostgreSQL the candidate item row is
locked with `FOR UPDATE SKIP LOCKED` (concurrent annotators take different items instead of queueing on one), the
slots are re-read after the lock in a fresh statement (READ COMMITTED sees what committed meanwhile), and the unique
constraints are the last guard: a losing insert is rolled back to a savepoint and the next candidate tried.
Judgment submission is idempotent: `(user_id, idempotency_key)` is unique, and a retry returns the first judgment.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alinea.feedback import tasks
from alinea.feedback.errors import Conflict, Invalid, NotFound
from alinea.feedback.models import Assignment, Guideline, Item, Judgment, Project, Skip, utcnow

MAX_KEY = 128
MAX_REASON = 1000
MAX_TIME_MS = 24 * 3600 * 1000
_CANDIDATE_TRIES = 8


@dataclass(frozen=True)
class Rules:
    """The project settings assignment needs (read once per request)."""

    project_id: int
    task_type: str
    overlap: int
    gold_rate: float
    lease_seconds: int
    aspects: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    scale: tuple[int, int] = (1, 7)

    @classmethod
    def of(cls, project: Project) -> Rules:
        return cls(project_id=project.id, task_type=project.task_type, overlap=project.overlap,
                   gold_rate=project.gold_rate, lease_seconds=project.lease_seconds,
                   aspects=tuple(project.aspects or ()), flags=tuple(project.flags or ()),
                   scale=(project.scale_min, project.scale_max))


@dataclass
class Lease:
    """An item held by an annotator, as they may see it: responses in their shown order, nothing that tells gold
    from regular items or which model wrote what."""

    item_id: int
    project_id: int
    expires_at: datetime
    shown_order: list[int]
    messages: list[dict[str, str]]
    responses: list[str]
    """item.responses in shown order: responses[k] is shown in position k."""
    language: str
    guideline_version: int | None
    is_gold: bool = field(default=False, repr=False)
    """For the server only (statistics); never sent to the annotator."""


@dataclass
class Submitted:
    """The outcome of a submission: the judgment, and whether this was a retry of an earlier submission."""

    judgment_id: int
    item_id: int
    replayed: bool
    answer: dict[str, Any]
    shown_order: list[int]
    guideline_version: int | None
    time_spent_ms: int | None
    created_at: datetime


def current_guideline_version(session: Session, project_id: int) -> int | None:
    return session.scalar(select(func.max(Guideline.version)).where(Guideline.project_id == project_id))


# ---------------------------------------------------------------------------------------------------------------------
# leasing


def lease_next(session: Session, *, rules: Rules, user_id: int, seed: int = 0,
               now: datetime | None = None) -> Lease | None:
    """The annotator's current lease in the project, or a new one; None when nothing is left for them."""
    now = now or utcnow()
    held = session.execute(
        select(Assignment.item_id, Assignment.expires_at, Assignment.shown_order)
        .where(Assignment.user_id == user_id, Assignment.project_id == rules.project_id,
               Assignment.state == "active", Assignment.expires_at > now)
        .limit(1)
    ).first()
    if held is not None:
        return _lease_view(session, held.item_id, held.expires_at, list(held.shown_order))
    expires = now + timedelta(seconds=rules.lease_seconds)
    if rules.gold_rate > 0 and _gold_turn(session, rules=rules, user_id=user_id, seed=seed):
        lease = _lease_gold(session, rules=rules, user_id=user_id, now=now, expires=expires, seed=seed)
        if lease is not None:
            return lease
    return _lease_regular(session, rules=rules, user_id=user_id, now=now, expires=expires, seed=seed)


def _gold_turn(session: Session, *, rules: Rules, user_id: int, seed: int) -> bool:
    """Whether this annotator's next lease is a gold one: a seeded draw per (annotator, lease number)."""
    n_leases = session.scalar(select(func.count(Assignment.id)).where(
        Assignment.user_id == user_id, Assignment.project_id == rules.project_id)) or 0
    return random.Random(f"{seed}:gold:{rules.project_id}:{user_id}:{n_leases}").random() < rules.gold_rate


def _not_seen_by(user_id: int):
    """Items this annotator holds no assignment on and has not skipped."""
    return and_(
        ~exists().where(Assignment.item_id == Item.id, Assignment.user_id == user_id),
        ~exists().where(Skip.item_id == Item.id, Skip.user_id == user_id),
    )


def _lease_gold(session: Session, *, rules: Rules, user_id: int, now: datetime, expires: datetime,
                seed: int) -> Lease | None:
    for _ in range(_CANDIDATE_TRIES):
        item_id = session.scalar(
            select(Item.id).where(Item.project_id == rules.project_id, Item.is_gold.is_(True), _not_seen_by(user_id))
            .order_by(Item.priority.desc(), Item.id).limit(1)
        )
        if item_id is None:
            return None
        lease = _insert_assignment(session, rules=rules, item_id=item_id, user_id=user_id, slot=None, now=now,
                                   expires=expires, seed=seed)
        if lease is not None:
            return lease
    return None


def _lease_regular(session: Session, *, rules: Rules, user_id: int, now: datetime, expires: datetime,
                   seed: int) -> Lease | None:
    taken = (select(func.count(Assignment.id))
             .where(Assignment.item_id == Item.id, or_(Assignment.state == "done", Assignment.expires_at > now))
             .scalar_subquery())
    query = (select(Item.id)
             .where(Item.project_id == rules.project_id, Item.is_gold.is_(False), Item.n_done < rules.overlap,
                    _not_seen_by(user_id), taken < rules.overlap)
             .order_by(Item.priority.desc(), Item.id).limit(1))
    postgres = session.get_bind().dialect.name == "postgresql"
    passed: set[int] = set()
    for attempt in range(_CANDIDATE_TRIES):
        candidate = query.where(Item.id.not_in(passed)) if passed else query
        if postgres:
            # Skip rows other annotators are leasing right now; when every candidate is locked, wait for one.
            candidate = candidate.with_for_update(of=Item, skip_locked=attempt < _CANDIDATE_TRIES // 2)
        item_id = session.scalar(candidate)
        if item_id is None:
            if postgres and attempt < _CANDIDATE_TRIES // 2:
                continue  # every candidate was locked: look again, waiting for the lock from the halfway mark
            return None
        lease = _take_slot(session, rules=rules, item_id=item_id, user_id=user_id, now=now, expires=expires,
                           seed=seed)
        if lease is not None:
            return lease
        passed.add(item_id)
    return None


def _take_slot(session: Session, *, rules: Rules, item_id: int, user_id: int, now: datetime, expires: datetime,
               seed: int) -> Lease | None:
    """A free slot of the item, or the slot of an expired lease; None when it filled up meanwhile."""
    rows = session.execute(
        select(Assignment.id, Assignment.slot, Assignment.state, Assignment.expires_at)
        .where(Assignment.item_id == item_id)
    ).all()
    live = [r for r in rows if r.state == "done" or r.expires_at > now]
    if len(live) >= rules.overlap:
        return None
    used = {r.slot for r in rows}
    free = [slot for slot in range(rules.overlap) if slot not in used]
    if free:
        return _insert_assignment(session, rules=rules, item_id=item_id, user_id=user_id, slot=free[0], now=now,
                                  expires=expires, seed=seed)
    for row in rows:
        if row.state == "active" and row.expires_at <= now and row.slot is not None and row.slot < rules.overlap:
            order = _order(session, item_id, user_id, seed)
            taken_over = session.execute(
                update(Assignment)
                .where(Assignment.id == row.id, Assignment.state == "active", Assignment.expires_at <= now)
                .values(user_id=user_id, leased_at=now, expires_at=expires, shown_order=order)
            ).rowcount
            if taken_over == 1:
                return _lease_view(session, item_id, expires, order)
    return None


def _order(session: Session, item_id: int, user_id: int, seed: int) -> list[int]:
    n = len(session.scalar(select(Item.responses).where(Item.id == item_id)) or [])
    return tasks.shown_order(n, item_id=item_id, user_id=user_id, seed=seed)


def _insert_assignment(session: Session, *, rules: Rules, item_id: int, user_id: int, slot: int | None,
                       now: datetime, expires: datetime, seed: int) -> Lease | None:
    order = _order(session, item_id, user_id, seed)
    try:
        with session.begin_nested():
            session.execute(insert(Assignment).values(
                item_id=item_id, project_id=rules.project_id, user_id=user_id, slot=slot, state="active",
                leased_at=now, expires_at=expires, shown_order=order))
    except IntegrityError:
        return None  # another annotator took this slot, or this annotator leased the item in a parallel request
    return _lease_view(session, item_id, expires, order)


def _lease_view(session: Session, item_id: int, expires: datetime, order: list[int]) -> Lease:
    item = session.execute(
        select(Item.project_id, Item.messages, Item.responses, Item.language, Item.is_gold).where(Item.id == item_id)
    ).one()
    return Lease(
        item_id=item_id, project_id=item.project_id, expires_at=expires, shown_order=order,
        messages=list(item.messages), responses=[item.responses[i] for i in order], language=item.language,
        guideline_version=current_guideline_version(session, item.project_id), is_gold=item.is_gold,
    )


# ---------------------------------------------------------------------------------------------------------------------
# skipping


def skip(session: Session, *, rules: Rules, user_id: int, item_id: int, reason: str) -> None:
    """Give a leased item back with a reason: its slot is freed, and it is never offered to this annotator again."""
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason: why you skip (a non-empty string)")
    if len(reason) > MAX_REASON:
        raise Invalid(f"reason: at most {MAX_REASON} characters, found {len(reason)}")
    held = session.scalar(select(Assignment).where(Assignment.item_id == item_id, Assignment.user_id == user_id,
                                                   Assignment.project_id == rules.project_id))
    if held is None or held.state != "active":
        raise Conflict(f"item {item_id}: you hold no lease on it to skip"
                       + (" (you already judged it)" if held is not None else ""))
    session.delete(held)
    session.add(Skip(item_id=item_id, project_id=rules.project_id, user_id=user_id, reason=reason.strip()))
    session.flush()


# ---------------------------------------------------------------------------------------------------------------------
# judgments


def _replay(session: Session, *, user_id: int, key: str) -> Submitted | None:
    row = session.execute(
        select(Judgment.id, Judgment.item_id, Judgment.answer, Judgment.shown_order, Judgment.guideline_version,
               Judgment.time_spent_ms, Judgment.created_at)
        .where(Judgment.user_id == user_id, Judgment.idempotency_key == key)
    ).first()
    if row is None:
        return None
    return Submitted(judgment_id=row.id, item_id=row.item_id, replayed=True, answer=row.answer,
                     shown_order=list(row.shown_order), guideline_version=row.guideline_version,
                     time_spent_ms=row.time_spent_ms, created_at=row.created_at)


def submit(session: Session, *, rules: Rules, user_id: int, item_id: int, answer: Mapping[str, Any],
           idempotency_key: str, time_spent_ms: int | None = None, guideline_version: int | None = None,
           now: datetime | None = None) -> Submitted:
    """Record a judgment on a leased item, or return the judgment already recorded under this idempotency key.

    `answer` is in screen positions (see tasks.py); `guideline_version` is the version the annotator was shown
    (default: the current one); `time_spent_ms` is measured by the client (default: since the lease).
    """
    now = now or utcnow()
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= MAX_KEY:
        raise Invalid(f"idempotency_key: a string of 1 to {MAX_KEY} characters (a fresh random id per judgment)")
    replay = _replay(session, user_id=user_id, key=idempotency_key)
    if replay is not None:
        if replay.item_id != item_id:
            raise Conflict(f"idempotency_key: already used for a judgment on item {replay.item_id}; "
                           "use a new key for each judgment")
        return replay
    held = session.execute(
        select(Assignment.id, Assignment.state, Assignment.shown_order, Assignment.leased_at, Assignment.slot)
        .where(Assignment.item_id == item_id, Assignment.user_id == user_id, Assignment.project_id == rules.project_id)
    ).first()
    if held is None:
        if session.scalar(select(Item.id).where(Item.id == item_id, Item.project_id == rules.project_id)) is None:
            raise NotFound(f"item {item_id}: no such item in project {rules.project_id}")
        raise Conflict(f"item {item_id}: you hold no lease on it (it expired and went to another annotator, or "
                       "was never leased to you); ask for the next item")
    if held.state == "done":
        raise Conflict(f"item {item_id}: you already judged it")
    item = session.execute(select(Item.responses, Item.is_gold, Item.gold_answer).where(Item.id == item_id)).one()
    shape = tasks.TaskShape(task_type=rules.task_type, n_responses=len(item.responses), aspects=rules.aspects,
                            flags=rules.flags, scale=rules.scale,
                            original=item.responses[0] if rules.task_type == "demonstration" and item.responses
                            else None)
    try:
        canonical = tasks.canonical_answer(shape, answer, held.shown_order)
    except tasks.AnswerError as err:
        raise Invalid(f"answer.{err.field}: {err.expected}") from None
    current = current_guideline_version(session, rules.project_id)
    if guideline_version is not None and (current is None or not 1 <= guideline_version <= current):
        raise Invalid(f"guideline_version: a version of this project's guidelines (1 to {current or 0}), "
                      f"found {guideline_version}")
    if time_spent_ms is None:
        time_spent_ms = int((now - held.leased_at).total_seconds() * 1000)
    time_spent_ms = max(0, min(int(time_spent_ms), MAX_TIME_MS))
    # The conditional update is what makes the slot ours: a take-over of an expired lease changes user_id first.
    won = session.execute(
        update(Assignment).where(Assignment.id == held.id, Assignment.user_id == user_id,
                                 Assignment.state == "active").values(state="done")
    ).rowcount
    if won != 1:
        # Either a parallel retry of this very submission got there first (PostgreSQL: we waited on its row lock),
        # or the lease expired and another annotator took the slot over.
        replay = _replay(session, user_id=user_id, key=idempotency_key)
        if replay is not None and replay.item_id == item_id:
            return replay
        if session.scalar(select(Judgment.id).where(Judgment.item_id == item_id, Judgment.user_id == user_id)):
            raise Conflict(f"item {item_id}: you already judged it")
        raise Conflict(f"item {item_id}: your lease expired and the item went to another annotator")
    version = guideline_version if guideline_version is not None else current
    correct = tasks.gold_correct(rules.task_type, canonical, item.gold_answer) if item.is_gold else None
    try:
        with session.begin_nested():
            judgment_id = session.execute(insert(Judgment).values(
                item_id=item_id, project_id=rules.project_id, user_id=user_id, idempotency_key=idempotency_key,
                task_type=rules.task_type, answer=canonical, shown_order=list(held.shown_order),
                guideline_version=version, time_spent_ms=time_spent_ms, is_gold=item.is_gold,
                gold_correct=correct, created_at=now,
            ).returning(Judgment.id)).scalar_one()
    except IntegrityError:
        # A parallel retry with the same key committed first: answer as a retry.
        replay = _replay(session, user_id=user_id, key=idempotency_key)
        if replay is None:
            raise Conflict(f"item {item_id}: you already judged it") from None
        return replay
    session.execute(update(Item).where(Item.id == item_id).values(n_done=Item.n_done + 1))
    return Submitted(judgment_id=judgment_id, item_id=item_id, replayed=False, answer=canonical,
                     shown_order=list(held.shown_order), guideline_version=version, time_spent_ms=time_spent_ms,
                     created_at=now)
