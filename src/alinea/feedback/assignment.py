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
locked with `FOR NO KEY UPDATE SKIP LOCKED` (concurrent annotators take different items instead of queueing on one),
assignments are only ever inserted under their item's lock, and the unique constraints are the guard: inserts are
`ON CONFLICT DO NOTHING`, so an insert that loses a race returns no row (instead of aborting the transaction), the
slots are read again, and the next free slot or the next candidate is tried. Leasing never waits for a lock; a
submission waits at most for the item's row (to count the judgment), held by a lease that waits for nothing, so no
two transactions can deadlock.
Judgment submission is idempotent: `(user_id, idempotency_key)` is unique, and a retry returns the first judgment.

Speed: the statements are built once, at import, with bound parameters (`_Q`), and run as `Prepared` statements
straight on the DBAPI cursor (prepared.py): SQLAlchemy's own work per execution cost 5 to 10 times SQLite's. A
judgment with `lease_next` is six statements on SQLite (rules and hold, finish, add, count, candidate, assignment)
and four on PostgreSQL, where each is a round trip: rules and hold; finish + add + count + the next candidate in
one statement of CTEs (`_recording`); a free slot taken in one INSERT ... SELECT; COMMIT.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Integer,
    String,
    all_,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alinea.feedback import tasks
from alinea.feedback.errors import Conflict, Forbidden, Invalid, NotFound
from alinea.feedback.models import Assignment, Guideline, Item, Judgment, Project, ProjectMember, Skip, utcnow
from alinea.feedback.prepared import Prepared

MAX_KEY = 128
MAX_REASON = 1000
MAX_TIME_MS = 24 * 3600 * 1000
_CANDIDATE_TRIES = 8
_BUSY_PAUSES_S = (0.002, 0.005, 0.01, 0.02, 0.05)
"""PostgreSQL: pauses before looking again when every open item is locked by other annotators' leases."""


@dataclass(frozen=True)
class Rules:
    """The project settings assignment needs, read once per request (`load_rules`)."""

    project_id: int
    task_type: str
    overlap: int
    gold_rate: float
    lease_seconds: int
    aspects: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    scale: tuple[int, int] = (1, 7)
    guideline_version: int | None = None
    """The current version of the project's guidelines (None: none written yet)."""

    @classmethod
    def of(cls, project: Project, guideline_version: int | None = None) -> Rules:
        return cls(project_id=project.id, task_type=project.task_type, overlap=project.overlap,
                   gold_rate=project.gold_rate, lease_seconds=project.lease_seconds,
                   aspects=tuple(project.aspects or ()), flags=tuple(project.flags or ()),
                   scale=(project.scale_min, project.scale_max), guideline_version=guideline_version)


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
    next_candidate: Any = field(default=None, repr=False)
    """PostgreSQL, `submit(..., pick_next=True)`: the next item's candidate row, found by the statement that recorded
    the judgment, for `lease_next(..., picked=...)`; its `id` is None when there was none. None: not looked for."""


# ---------------------------------------------------------------------------------------------------------------------
# the statements, built once


def _p(name: str, **kw):
    return bindparam(name, **kw)


_ITEM_VIEW = (Item.id, Item.project_id, Item.messages, Item.responses, Item.language, Item.is_gold)


def _not_seen_by_user():
    """Items the annotator (:user_id) holds no assignment on and has not skipped."""
    return and_(
        ~exists().where(Assignment.item_id == Item.id, Assignment.user_id == _p("user_id")),
        ~exists().where(Skip.item_id == Item.id, Skip.user_id == _p("user_id")),
    )


def _candidate(*, gold: bool, passed: str | None):
    """The next item for :user_id in :project_id, highest priority first, skipping the ids in :passed (the
    candidates already tried in this transaction; the first try has none): `passed` "list" binds them as an
    expanding IN list (SQLAlchemy writes one placeholder per id), "array" as one PostgreSQL array (`<> ALL`, so the
    statement can be prepared once), None leaves the condition out.

    Regular items come with `used_slots`, the slot numbers held on them ("0,2"), so that on SQLite (one writer at
    a time, so the view is current) a free slot is taken without reading the slots again.
    """
    conditions = [Item.project_id == _p("project_id"), Item.is_gold == (true() if gold else false()),
                  _not_seen_by_user()]
    if passed == "list":
        conditions.append(Item.id.not_in(_p("passed", expanding=True)))
    elif passed == "array":
        conditions.append(Item.id != all_(_p("passed", type_=ARRAY(Integer))))
    columns = list(_ITEM_VIEW)
    if not gold:
        live = (select(func.count(Assignment.id))
                .where(Assignment.item_id == Item.id, or_(Assignment.state == "done", Assignment.expires_at > _p("now")))
                .scalar_subquery())
        conditions += [Item.complete == false(), live < _p("overlap")]
        columns.append(select(func.aggregate_strings(cast(Assignment.slot, String), ","))
                       .where(Assignment.item_id == Item.id).scalar_subquery().label("used_slots"))
    # Locked FOR NO KEY UPDATE SKIP LOCKED on PostgreSQL (SQLite ignores the clause): not FOR UPDATE, because the
    # foreign-key checks of inserts that point at the item (its assignments, its judgments) take KEY SHARE locks on
    # it, which FOR UPDATE would block.
    return (select(*columns).where(*conditions).order_by(Item.priority.desc(), Item.id).limit(1)
            .with_for_update(of=Item, skip_locked=True, key_share=True))


def _recording(*, pick: bool):
    """PostgreSQL: finish the assignment, add the judgment, count it on its item, in one statement of data-modifying
    CTEs, each step only when the one before it wrote its row; the row says `won` (the assignment was still the
    caller's active lease), `judgment_id` (None: its keys were taken), `counted`. With `pick`, the row also carries
    the next regular candidate for the caller (`_candidate`, locked; its columns None when there is none)."""
    finished = (update(Assignment)
                .where(Assignment.id == _p("assignment_id"), Assignment.user_id == _p("holder_id"),
                       Assignment.state == "active")
                .values(state="done").returning(Assignment.id).cte("finished"))
    values = select(*(bindparam(key, type_=Judgment.__table__.c[key].type) for key in _JUDGMENT_KEYS)) \
        .where(exists(finished.select()))
    added = (postgresql_insert(Judgment).from_select(list(_JUDGMENT_KEYS), values).on_conflict_do_nothing()
             .returning(Judgment.id).cte("added"))
    counted = (update(Item).where(Item.id == _p("item_id"), exists(added.select()))
               .values(n_done=Item.n_done + 1, complete=Item.n_done + 1 >= _p("overlap"))
               .returning(Item.id).cte("counted"))
    outcome = [select(func.count()).select_from(finished).scalar_subquery().label("won"),
               select(added.c.id).scalar_subquery().label("judgment_id"),
               select(func.count()).select_from(counted).scalar_subquery().label("counted")]
    if not pick:
        return select(*outcome)
    # The search may lock candidates only once the three writes are done: they may wait for row locks (the judged
    # item's, held by a lease), and waiting while holding a candidate's lock could deadlock with that lease. An
    # uncorrelated subquery on `counted` in its WHERE clause is evaluated (once, as an InitPlan) before the scan
    # returns its first row, hence before the row-locking step above it locks anything.
    candidate = _candidate(gold=False, passed=None) \
        .where(select(func.count()).select_from(counted).scalar_subquery() >= 0).cte("candidate")
    one_row = select(literal(1).label("one")).subquery("one_row")
    return select(*outcome, *candidate.c).select_from(one_row.outerjoin(candidate, true()))


_ASSIGNMENT_KEYS = ("item_id", "project_id", "user_id", "slot", "state", "leased_at", "expires_at", "shown_order")
_JUDGMENT_KEYS = ("item_id", "project_id", "user_id", "idempotency_key", "task_type", "answer", "shown_order",
                  "guideline_version", "time_spent_ms", "is_gold", "gold_correct", "created_at")


class _Q:
    """Prebuilt statements; parameters are named after what they hold. `Prepared` ones run on the DBAPI cursor
    (see prepared.py); the candidate queries with a list of items to pass over (`*_passing`, needed when the first
    candidate was lost to another annotator) run through SQLAlchemy, which expands the list, except on PostgreSQL
    for regular items (`regular_passing_pg`, about one lease in five under load), where the list is an array."""

    rules = Prepared(
        select(Project.id, Project.task_type, Project.overlap, Project.gold_rate, Project.lease_seconds,
               Project.aspects, Project.flags, Project.scale_min, Project.scale_max,
               select(func.max(Guideline.version)).where(Guideline.project_id == Project.id)
               .scalar_subquery().label("version"),
               exists().where(ProjectMember.project_id == Project.id, ProjectMember.user_id == _p("user_id"))
               .label("member"))
        .where(Project.id == _p("project_id"))
    )
    held = Prepared(
        select(*_ITEM_VIEW, Assignment.expires_at, Assignment.shown_order)
        .join(Item, Item.id == Assignment.item_id)
        .where(Assignment.user_id == _p("user_id"), Assignment.project_id == _p("project_id"),
               Assignment.state == "active", Assignment.expires_at > _p("now"))
        .limit(1)
    )
    n_leases = Prepared(select(func.count(Assignment.id)).where(Assignment.user_id == _p("user_id"),
                                                                Assignment.project_id == _p("project_id")))
    gold = Prepared(_candidate(gold=True, passed=None))
    gold_passing = _candidate(gold=True, passed="list")
    regular = Prepared(_candidate(gold=False, passed=None))
    regular_passing = _candidate(gold=False, passed="list")
    regular_passing_pg = Prepared(_candidate(gold=False, passed="array"))
    any_open = Prepared(select(Item.id).where(Item.project_id == _p("project_id"), Item.is_gold == false(),
                                              Item.complete == false(), _not_seen_by_user()).limit(1))
    slots = Prepared(select(Assignment.id, Assignment.slot, Assignment.state, Assignment.expires_at).where(
        Assignment.item_id == _p("item_id")))
    # Taking over an expired lease skips it when its owner is submitting right now (its row is locked).
    take_over = Prepared(
        update(Assignment)
        .where(Assignment.id == select(Assignment.id)
               .where(Assignment.id == _p("assignment_id"), Assignment.state == "active",
                      Assignment.expires_at <= _p("now"))
               .with_for_update(skip_locked=True).scalar_subquery())
        .values(user_id=_p("new_user_id"), leased_at=_p("leased_at"), expires_at=_p("expires_at"),
                shown_order=_p("shown_order"))
    )
    # INSERT ... ON CONFLICT DO NOTHING: a broken unique constraint (a slot or an item taken meanwhile, a key used
    # before) returns no row instead of raising, which on PostgreSQL would abort the whole transaction.
    add_assignment = {name: Prepared(dialect_insert(Assignment).on_conflict_do_nothing().returning(Assignment.id),
                                     keys=_ASSIGNMENT_KEYS)
                      for name, dialect_insert in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))}
    submission = Prepared(
        select(Assignment.id, Assignment.state, Assignment.shown_order, Assignment.leased_at, Item.responses,
               Item.is_gold, Item.gold_answer)
        .join(Item, Item.id == Assignment.item_id)
        .where(Assignment.item_id == _p("item_id"), Assignment.user_id == _p("user_id"),
               Assignment.project_id == _p("project_id"))
    )
    rules_and_hold = Prepared(
        rules.statement.add_columns(Assignment.id.label("assignment_id"), Assignment.state, Assignment.shown_order,
                                    Assignment.leased_at, Item.responses, Item.is_gold, Item.gold_answer)
        .outerjoin(Assignment, and_(Assignment.project_id == Project.id, Assignment.item_id == _p("item_id"),
                                    Assignment.user_id == _p("user_id")))
        .outerjoin(Item, Item.id == Assignment.item_id)
    )
    item_in_project = Prepared(select(Item.id).where(Item.id == _p("item_id"), Item.project_id == _p("project_id")))
    replay = Prepared(
        select(Judgment.id, Judgment.item_id, Judgment.answer, Judgment.shown_order, Judgment.guideline_version,
               Judgment.time_spent_ms, Judgment.created_at)
        .where(Judgment.user_id == _p("user_id"), Judgment.idempotency_key == _p("key"))
    )
    finish = Prepared(
        update(Assignment)
        .where(Assignment.id == _p("assignment_id"), Assignment.user_id == _p("holder_id"),
               Assignment.state == "active")
        .values(state="done")
    )
    add_judgment = {name: Prepared(dialect_insert(Judgment).on_conflict_do_nothing().returning(Judgment.id),
                                   keys=_JUDGMENT_KEYS)
                    for name, dialect_insert in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))}
    count_judgment = Prepared(
        update(Item).where(Item.id == _p("item_id"))
        .values(n_done=Item.n_done + 1, complete=Item.n_done + 1 >= _p("overlap"))
    )
    # PostgreSQL: each statement is a round trip to the database server, which costs both sides more CPU than these
    # statements' own work. So there finish + add_judgment + count_judgment run as one statement (`_recording`),
    # together with the search for the next item when the caller leases one next (`regular`, as a CTE), and a free
    # slot is found and taken in one INSERT ... SELECT (after the candidate's lock was won, in a fresh snapshot).
    # That statement also says whether the item holds an expired lease (`expired`): when it took no slot and there
    # is none, the item filled up after the candidate's snapshot (about one lease in five under load: the
    # snapshot of `record_and_pick_pg` dates from before its row-lock waits) and the next candidate is looked for
    # at once, without reading the item's slots.
    record_judgment_pg = Prepared(_recording(pick=False))
    record_and_pick_pg = Prepared(_recording(pick=True))
    take_free_slot_pg = Prepared(
        text("""
            WITH taken AS (
                INSERT INTO assignments (item_id, project_id, user_id, slot, state, leased_at, expires_at,
                                         shown_order)
                SELECT :item_id, :project_id, :user_id, free.slot, 'active', :leased_at, :expires_at, :shown_order
                FROM generate_series(0, :overlap - 1) AS free(slot)
                WHERE NOT EXISTS (SELECT FROM assignments WHERE item_id = :item_id AND slot = free.slot)
                  AND (SELECT count(*) FROM assignments
                       WHERE item_id = :item_id AND (state = 'done' OR expires_at > :now)) < :overlap
                ORDER BY free.slot LIMIT 1
                ON CONFLICT DO NOTHING RETURNING id
            )
            SELECT (SELECT id FROM taken) AS id,
                   EXISTS (SELECT FROM assignments
                           WHERE item_id = :item_id AND state = 'active' AND expires_at <= :now) AS expired
        """).bindparams(*(bindparam(key, type_=Assignment.__table__.c[key].type)
                          for key in ("item_id", "project_id", "user_id", "leased_at", "expires_at", "shown_order")),
                        bindparam("now", type_=Assignment.__table__.c.expires_at.type),
                        bindparam("overlap", type_=Integer))
        .columns(id=Integer, expired=Boolean)
    )


def load_rules(connection: Connection, *, project_id: int, user_id: int, role: str) -> Rules:
    """The rules of a project the user may annotate in: 404 when missing, 403 for non-members and viewers."""
    row = _Q.rules.first(connection, {"project_id": project_id, "user_id": user_id})
    return _rules_of_row(row, project_id=project_id, role=role)


@dataclass(frozen=True)
class Hold:
    """An annotator's assignment on an item, with what judging it needs (see `load_rules_and_hold`)."""

    id: int
    state: str
    shown_order: list[int]
    leased_at: datetime
    responses: list[str]
    is_gold: bool
    gold_answer: dict[str, Any] | None


def load_rules_and_hold(connection: Connection, *, project_id: int, user_id: int, role: str,
                        item_id: int) -> tuple[Rules, Hold | None]:
    """`load_rules` and the annotator's assignment on the item (None if they hold none) in one statement: the
    judgment route's first read."""
    row = _Q.rules_and_hold.first(connection, {"project_id": project_id, "user_id": user_id, "item_id": item_id})
    rules = _rules_of_row(row, project_id=project_id, role=role)
    if row.assignment_id is None:
        return rules, None
    return rules, Hold(id=row.assignment_id, state=row.state, shown_order=list(row.shown_order),
                       leased_at=row.leased_at, responses=list(row.responses), is_gold=row.is_gold,
                       gold_answer=row.gold_answer)


def _rules_of_row(row, *, project_id: int, role: str) -> Rules:
    if row is None:
        raise NotFound(f"no project {project_id}")
    if role != "admin" and not row.member:
        raise Forbidden(f"you are not assigned to project {project_id}")
    if role == "viewer":
        raise Forbidden("viewers can look at projects but not annotate")
    return Rules(project_id=row.id, task_type=row.task_type, overlap=row.overlap, gold_rate=row.gold_rate,
                 lease_seconds=row.lease_seconds, aspects=tuple(row.aspects or ()), flags=tuple(row.flags or ()),
                 scale=(row.scale_min, row.scale_max), guideline_version=row.version)


def current_guideline_version(connection: Connection, project_id: int) -> int | None:
    return connection.execute(select(func.max(Guideline.version)).where(Guideline.project_id == project_id)).scalar()


def _is_postgres(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


# ---------------------------------------------------------------------------------------------------------------------
# leasing


def _lease_of(row, *, expires: datetime, order: list[int], rules: Rules) -> Lease:
    return Lease(item_id=row.id, project_id=row.project_id, expires_at=expires, shown_order=order,
                 messages=list(row.messages), responses=[row.responses[i] for i in order], language=row.language,
                 guideline_version=rules.guideline_version, is_gold=row.is_gold)


def lease_next(connection: Connection, *, rules: Rules, user_id: int, seed: int = 0,
               now: datetime | None = None, after_submit: bool = False, picked: Any = None) -> Lease | None:
    """The annotator's current lease in the project, or a new one; None when nothing is left for them.

    `after_submit`: the caller has just recorded a judgment on the annotator's lease in this transaction, so they
    hold none and the lookup of a current lease is skipped (one statement less on the hot path). `picked`: the
    first candidate, already looked for by that submission (`Submitted.next_candidate`).
    """
    now = now or utcnow()
    who = {"user_id": user_id, "project_id": rules.project_id}
    if not after_submit:
        held = _Q.held.first(connection, {**who, "now": now})
        if held is not None:
            return _lease_of(held, expires=held.expires_at, order=list(held.shown_order), rules=rules)
    expires = now + timedelta(seconds=rules.lease_seconds)
    if rules.gold_rate > 0:
        n_leases = _Q.n_leases.scalar(connection, who) or 0
        draw = random.Random(f"{seed}:gold:{rules.project_id}:{user_id}:{n_leases}").random()
        if draw < rules.gold_rate:
            lease = _lease_gold(connection, rules=rules, user_id=user_id, now=now, expires=expires, seed=seed)
            if lease is not None:
                return lease
    return _lease_regular(connection, rules=rules, user_id=user_id, now=now, expires=expires, seed=seed,
                          picked=picked if after_submit else None)


def _lease_gold(connection: Connection, *, rules: Rules, user_id: int, now: datetime, expires: datetime,
                seed: int) -> Lease | None:
    passed: list[int] = []
    for _ in range(_CANDIDATE_TRIES):
        params = {"user_id": user_id, "project_id": rules.project_id, "passed": passed}
        row = connection.execute(_Q.gold_passing, params).first() if passed else _Q.gold.first(connection, params)
        if row is None:
            return None
        lease = _insert_assignment(connection, rules=rules, row=row, user_id=user_id, slot=None, now=now,
                                   expires=expires, seed=seed)
        if lease is not None:
            return lease
        passed.append(row.id)
    return None


def _lease_regular(connection: Connection, *, rules: Rules, user_id: int, now: datetime, expires: datetime,
                   seed: int, picked: Any = None) -> Lease | None:
    """The best open item for the annotator, and a slot on it.

    PostgreSQL: the candidate row is locked with SKIP LOCKED, so concurrent annotators spread over different items
    instead of queueing on the first one, and every insert of an assignment happens under its item's lock. No
    statement here ever waits for a lock (a lease may run in the transaction that just judged another item and
    holds that item's row): when every open item is locked by someone, it looks again a few times after a short
    pause, then answers None (nothing for now). The unique (item, slot) and (item, annotator) constraints are the
    guard for correctness; the locks only keep annotators out of each other's way.
    """
    postgres = _is_postgres(connection)
    passed: list[int] = []
    pauses = list(_BUSY_PAUSES_S) if postgres else []
    for _ in range(_CANDIDATE_TRIES + len(pauses)):
        params = {"user_id": user_id, "project_id": rules.project_id, "now": now, "overlap": rules.overlap,
                  "passed": passed}
        if picked is not None:  # the first candidate came with the judgment's statement (its id None: there was none)
            row, picked = (picked if picked.id is not None else None), None
        elif passed:
            row = _Q.regular_passing_pg.first(connection, params) if postgres else \
                connection.execute(_Q.regular_passing, params).first()
        else:
            row = _Q.regular.first(connection, params)
        if row is None:
            if pauses and _Q.any_open.first(connection, params) is not None:
                time.sleep(pauses.pop(0))  # open items exist, all locked for an instant by other annotators
                continue
            return None
        lease = None
        if not postgres:
            # SQLite runs one writer at a time, so the slots read with the candidate are current: take a free one.
            used = {int(slot) for slot in (row.used_slots or "").split(",") if slot}
            free = [slot for slot in range(rules.overlap) if slot not in used]
            if free:
                lease = _insert_assignment(connection, rules=rules, row=row, user_id=user_id, slot=free[0], now=now,
                                           expires=expires, seed=seed)
        else:
            # PostgreSQL: the candidate's snapshot was taken before its lock was won, so the slots are read again in
            # a fresh statement: with the item locked nobody adds one meanwhile, so the insert meets no uncommitted
            # row with its key (waiting for one while the writer waits for this item's lock would deadlock).
            order = tasks.shown_order(len(row.responses), item_id=row.id, user_id=user_id, seed=seed)
            taken = _Q.take_free_slot_pg.first(connection, {
                "item_id": row.id, "project_id": rules.project_id, "user_id": user_id, "leased_at": now,
                "expires_at": expires, "shown_order": order, "now": now, "overlap": rules.overlap})
            if taken.id is not None:
                lease = _lease_of(row, expires=expires, order=order, rules=rules)
            elif not taken.expired:  # it filled up after the candidate's snapshot: the next one
                passed.append(row.id)
                continue
        if lease is None:  # no free slot after all: maybe one of an expired lease (or SQLite: none was free)
            lease = _take_slot(connection, rules=rules, row=row, user_id=user_id, now=now, expires=expires, seed=seed)
        if lease is not None:
            return lease
        passed.append(row.id)
    return None


def _take_slot(connection: Connection, *, rules: Rules, row, user_id: int, now: datetime, expires: datetime,
               seed: int) -> Lease | None:
    """A free slot of the item, or the slot of an expired lease; None when it filled up meanwhile."""
    slots = _Q.slots.all(connection, {"item_id": row.id})
    live = [s for s in slots if s.state == "done" or s.expires_at > now]
    if len(live) >= rules.overlap:
        return None
    used = {s.slot for s in slots}
    free = [slot for slot in range(rules.overlap) if slot not in used]
    if free:
        return _insert_assignment(connection, rules=rules, row=row, user_id=user_id, slot=free[0], now=now,
                                  expires=expires, seed=seed)
    order = tasks.shown_order(len(row.responses), item_id=row.id, user_id=user_id, seed=seed)
    for slot in slots:
        if slot.state == "active" and slot.expires_at <= now and slot.slot is not None and slot.slot < rules.overlap:
            taken_over = _Q.take_over.rowcount(connection, {
                "assignment_id": slot.id, "now": now, "new_user_id": user_id, "leased_at": now,
                "expires_at": expires, "shown_order": order})
            if taken_over == 1:
                return _lease_of(row, expires=expires, order=order, rules=rules)
    return None


def _insert_assignment(connection: Connection, *, rules: Rules, row, user_id: int, slot: int | None, now: datetime,
                       expires: datetime, seed: int) -> Lease | None:
    order = tasks.shown_order(len(row.responses), item_id=row.id, user_id=user_id, seed=seed)
    added = _Q.add_assignment[connection.dialect.name].first(connection, {
        "item_id": row.id, "project_id": rules.project_id, "user_id": user_id, "slot": slot,
        "state": "active", "leased_at": now, "expires_at": expires, "shown_order": order})
    if added is None:
        return None  # another annotator took this slot, or this annotator leased the item in a parallel request
    return _lease_of(row, expires=expires, order=order, rules=rules)


# ---------------------------------------------------------------------------------------------------------------------
# skipping


def skip(connection: Connection, *, rules: Rules, user_id: int, item_id: int, reason: str) -> None:
    """Give a leased item back with a reason: its slot is freed, and it is never offered to this annotator again."""
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason: why you skip (a non-empty string)")
    if len(reason) > MAX_REASON:
        raise Invalid(f"reason: at most {MAX_REASON} characters, found {len(reason)}")
    held = _Q.submission.first(connection, {"item_id": item_id, "user_id": user_id, "project_id": rules.project_id})
    if held is None or held.state != "active":
        raise Conflict(f"item {item_id}: you hold no lease on it to skip"
                       + (" (you already judged it)" if held is not None else ""))
    connection.execute(delete(Assignment).where(Assignment.id == held.id))
    connection.execute(insert(Skip).values(item_id=item_id, project_id=rules.project_id, user_id=user_id,
                                           reason=reason.strip(), created_at=utcnow()))


# ---------------------------------------------------------------------------------------------------------------------
# judgments


def _replay(connection: Connection, *, user_id: int, key: str) -> Submitted | None:
    row = _Q.replay.first(connection, {"user_id": user_id, "key": key})
    if row is None:
        return None
    return Submitted(judgment_id=row.id, item_id=row.item_id, replayed=True, answer=row.answer,
                     shown_order=list(row.shown_order), guideline_version=row.guideline_version,
                     time_spent_ms=row.time_spent_ms, created_at=row.created_at)


def _replay_or_conflict(connection: Connection, *, user_id: int, item_id: int, key: str, why: str) -> Submitted:
    """The earlier judgment when this submission is a retry (same key, same item); else Conflict(why)."""
    replay = _replay(connection, user_id=user_id, key=key)
    if replay is not None:
        if replay.item_id != item_id:
            raise Conflict(f"idempotency_key: already used for a judgment on item {replay.item_id}; "
                           "use a new key for each judgment")
        return replay
    raise Conflict(why)


_UNREAD: Any = object()


def submit(connection: Connection, *, rules: Rules, user_id: int, item_id: int, answer: Mapping[str, Any],
           idempotency_key: str, time_spent_ms: int | None = None, guideline_version: int | None = None,
           now: datetime | None = None, held: Hold | None = _UNREAD, pick_next: bool = False) -> Submitted:
    """Record a judgment on a leased item, or return the judgment already recorded under this idempotency key.

    `answer` is in screen positions (see tasks.py); `guideline_version` is the version the annotator was shown
    (default: the current one); `time_spent_ms` is measured by the client (default: since the lease). `held` is
    the annotator's assignment on the item when the caller has read it already (`load_rules_and_hold`).
    `pick_next`: the caller leases the next item in this transaction; on PostgreSQL (without gold items) its
    candidate is then looked for by the statement that records the judgment (one round trip less), and handed on
    in `next_candidate`.
    """
    now = now or utcnow()
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= MAX_KEY:
        raise Invalid(f"idempotency_key: a string of 1 to {MAX_KEY} characters (a fresh random id per judgment)")
    who = {"item_id": item_id, "user_id": user_id, "project_id": rules.project_id}
    if held is _UNREAD:
        row = _Q.submission.first(connection, who)
        held = None if row is None else Hold(id=row.id, state=row.state, shown_order=list(row.shown_order),
                                             leased_at=row.leased_at, responses=list(row.responses),
                                             is_gold=row.is_gold, gold_answer=row.gold_answer)
    if held is None or held.state == "done":
        # Most often a retry of a submission that went through (the answer was lost on the way back).
        if held is None and _replay(connection, user_id=user_id, key=idempotency_key) is None and \
                _Q.item_in_project.first(connection, who) is None:
            raise NotFound(f"item {item_id}: no such item in project {rules.project_id}")
        return _replay_or_conflict(
            connection, user_id=user_id, item_id=item_id, key=idempotency_key,
            why=f"item {item_id}: you already judged it" if held is not None else
            f"item {item_id}: you hold no lease on it (it expired and went to another annotator, or was never "
            "leased to you); ask for the next item")
    shape = tasks.TaskShape(task_type=rules.task_type, n_responses=len(held.responses), aspects=rules.aspects,
                            flags=rules.flags, scale=rules.scale,
                            original=held.responses[0] if rules.task_type == "demonstration" and held.responses
                            else None)
    try:
        canonical = tasks.canonical_answer(shape, answer, held.shown_order)
    except tasks.AnswerError as err:
        raise Invalid(f"answer.{err.field}: {err.expected}") from None
    current = rules.guideline_version
    if guideline_version is not None and (current is None or not 1 <= guideline_version <= current):
        raise Invalid(f"guideline_version: a version of this project's guidelines (1 to {current or 0}), "
                      f"found {guideline_version}")
    if time_spent_ms is None:
        time_spent_ms = int((now - held.leased_at).total_seconds() * 1000)
    time_spent_ms = max(0, min(int(time_spent_ms), MAX_TIME_MS))
    version = guideline_version if guideline_version is not None else current
    correct = tasks.gold_correct(rules.task_type, canonical, held.gold_answer) if held.is_gold else None
    pick = pick_next and rules.gold_rate == 0 and _is_postgres(connection)
    won, judgment_id, candidate = _record(connection, assignment_id=held.id, user_id=user_id, rules=rules, pick=pick,
                                          now=now, values={
        "item_id": item_id, "project_id": rules.project_id, "user_id": user_id,
        "idempotency_key": idempotency_key, "task_type": rules.task_type, "answer": canonical,
        "shown_order": list(held.shown_order), "guideline_version": version, "time_spent_ms": time_spent_ms,
        "is_gold": held.is_gold, "gold_correct": correct, "created_at": now,
    })
    if won != 1:
        # Either a parallel retry of this very submission got there first (PostgreSQL: we waited on its row lock),
        # or the lease expired and another annotator took the slot over.
        return _replay_or_conflict(connection, user_id=user_id, item_id=item_id, key=idempotency_key,
                                   why=f"item {item_id}: your lease expired and the item went to another annotator")
    if judgment_id is None:
        # The key was used before (for another item), or a parallel retry committed first.
        replay = _replay(connection, user_id=user_id, key=idempotency_key)
        if replay is not None and replay.item_id == item_id:
            return replay
        raise Conflict(f"idempotency_key: already used for a judgment on item {replay.item_id}; use a new key for "
                       "each judgment" if replay else f"item {item_id}: you already judged it")
    return Submitted(judgment_id=judgment_id, item_id=item_id, replayed=False, answer=canonical,
                     shown_order=list(held.shown_order), guideline_version=version, time_spent_ms=time_spent_ms,
                     created_at=now, next_candidate=candidate)


def _record(connection: Connection, *, assignment_id: int, user_id: int, rules: Rules, pick: bool, now: datetime,
            values: dict[str, Any]) -> tuple[int, int | None, Any]:
    """Finish the assignment, add the judgment (`values`) and count it on its item: (1 if the assignment was still
    the caller's active lease else 0, the new judgment's id or None when its keys were taken, the next candidate
    row when `pick` (PostgreSQL) else None). Each step runs only when the one before it wrote its row; the caller
    raises (rolling back) when not all three did."""
    finish = {"assignment_id": assignment_id, "holder_id": user_id}
    if _is_postgres(connection):
        params = {**values, **finish, "overlap": rules.overlap}
        if not pick:
            row = _Q.record_judgment_pg.first(connection, params)
            return row.won, row.judgment_id, None
        row = _Q.record_and_pick_pg.first(connection, {**params, "now": now})
        return row.won, row.judgment_id, row
    # The conditional update is what makes the slot ours: a take-over of an expired lease changes user_id first.
    if _Q.finish.rowcount(connection, finish) != 1:
        return 0, None, None
    judgment_id = _Q.add_judgment[connection.dialect.name].scalar(connection, values)
    if judgment_id is not None:
        _Q.count_judgment.rowcount(connection, {"item_id": values["item_id"], "overlap": rules.overlap})
    return 1, judgment_id, None
