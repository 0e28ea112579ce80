"""Leases, overlap, expiry, priorities, gold mixing, skips and idempotent submissions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from alinea.feedback import assignment, crud, tasks
from alinea.feedback.assignment import Rules
from alinea.feedback.errors import Conflict, Invalid
from alinea.feedback.models import Assignment, Item, Judgment, Skip, utcnow

from .conftest import make_user


def comparison(i: int, **extra) -> dict:
    return {"type": "comparison", "id": f"c{i}", "prompt": f"question {i}", "response_a": f"answer A{i}",
            "response_b": f"answer B{i}", "preference": "a", **extra}


def make_project(database, *, overlap=2, gold_rate=0.0, n_items=3, n_gold=0, task_type="pairwise",
                 lease_seconds=60, priorities=None) -> Rules:
    with database.write() as session:
        project = crud.create_project(session, spec=crud.ProjectSpec(
            name="p", task_type=task_type, overlap=overlap, gold_rate=gold_rate, lease_seconds=lease_seconds,
            guidelines="Pick the more helpful answer."))
        if n_items:
            parsed = crud.parse_item_objects(((i + 1, comparison(i)) for i in range(n_items)), source="t",
                                             task_type=task_type, gold=False)
            crud.add_items(session, project=project, parsed=parsed, priorities=priorities)
        if n_gold:
            parsed = crud.parse_item_objects(((i + 1, comparison(100 + i, preference="b", strength=2))
                                              for i in range(n_gold)), source="g", task_type=task_type, gold=True)
            crud.add_items(session, project=project, parsed=parsed)
        return Rules.of(project, assignment.current_guideline_version(session.connection(), project.id))


def lease(database, rules, user_id, **kw):
    with database.write_connection() as connection:
        return assignment.lease_next(connection, rules=rules, user_id=user_id, **kw)


def submit(database, rules, user_id, item_id, key, answer=None, **kw):
    with database.write_connection() as connection:
        return assignment.submit(connection, rules=rules, user_id=user_id, item_id=item_id,
                                 answer=answer or {"choice": "left", "strength": 2}, idempotency_key=key, **kw)


def count(database, model, *where):
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_overlap_distinct_annotators_and_one_lease_at_a_time(database):
    rules = make_project(database, overlap=2, n_items=1)
    alice, bob, carol = (make_user(database, name) for name in ("alice", "bob", "carol"))
    first = lease(database, rules, alice)
    assert lease(database, rules, alice).item_id == first.item_id  # asking again: the same lease
    assert lease(database, rules, bob).item_id == first.item_id    # the second slot
    assert lease(database, rules, carol) is None                   # overlap 2 reached (two live leases)
    submit(database, rules, alice, first.item_id, "k-alice")
    assert lease(database, rules, alice) is None                   # never the same item twice
    assert count(database, Assignment) == 2


def test_expired_lease_returns_to_the_pool_and_late_submission_is_refused(database):
    rules = make_project(database, overlap=1, n_items=1, lease_seconds=60)
    alice, bob = make_user(database, "alice"), make_user(database, "bob")
    held = lease(database, rules, alice)
    assert lease(database, rules, bob) is None
    later = utcnow() + timedelta(seconds=61)
    taken = lease(database, rules, bob, now=later)
    assert taken is not None and taken.item_id == held.item_id
    with pytest.raises(Conflict, match="went to another annotator"):
        submit(database, rules, alice, held.item_id, "late", now=later)
    submit(database, rules, bob, held.item_id, "bob-1", now=later)
    assert count(database, Judgment) == 1
    with database.read() as session:
        assert session.scalar(select(Item.n_done)) == 1


def test_an_expired_lease_still_counts_when_nobody_took_it(database):
    rules = make_project(database, overlap=1, n_items=1, lease_seconds=60)
    alice = make_user(database, "alice")
    held = lease(database, rules, alice)
    done = submit(database, rules, alice, held.item_id, "k", now=utcnow() + timedelta(hours=1))
    assert not done.replayed and done.time_spent_ms >= 3_600_000


def test_priority_orders_the_queue(database):
    rules = make_project(database, overlap=1, n_items=3, priorities=[0.1, 0.9, 0.5])
    users = [make_user(database, f"u{i}") for i in range(3)]
    with database.read() as session:
        ids = session.scalars(select(Item.id).order_by(Item.id)).all()
    assert [lease(database, rules, u).item_id for u in users] == [ids[1], ids[2], ids[0]]
    with database.write() as session:
        assert crud.set_priorities(session, project_id=rules.project_id, by_external_id={"c0": 5.0}) == 1


def test_gold_items_are_mixed_in_once_per_annotator_and_take_no_slot(database):
    rules = make_project(database, overlap=1, n_items=2, n_gold=1, gold_rate=1.0)
    alice, bob = make_user(database, "alice"), make_user(database, "bob")
    first = lease(database, rules, alice)
    assert first.is_gold
    done = submit(database, rules, alice, first.item_id, "g1", {"choice": "left" if first.shown_order[0] == 1
                                                                 else "right", "strength": 3})
    assert done.answer["preference"] == "b"
    second = lease(database, rules, alice)
    assert not second.is_gold  # no gold left for alice: a regular item
    assert lease(database, rules, bob).is_gold  # bob still sees the gold item (gold takes no slot)
    with database.read() as session:
        assert session.scalar(select(Judgment.gold_correct)) is True


def test_gold_rate_zero_never_serves_gold(database):
    rules = make_project(database, overlap=3, n_items=0, n_gold=2, gold_rate=0.0)
    assert lease(database, rules, make_user(database, "alice")) is None


def test_gold_rate_is_respected_on_average():
    # The draw depends only on (seed, project, user, lease number): at rate 0.3, about 30% of 2000 draws.
    import random

    draws = [random.Random(f"0:gold:1:{u}:{n}").random() < 0.3 for u in range(20) for n in range(100)]
    assert 0.27 < sum(draws) / len(draws) < 0.33


def test_skip_frees_the_slot_and_never_offers_the_item_again(database):
    rules = make_project(database, overlap=1, n_items=1)
    alice, bob = make_user(database, "alice"), make_user(database, "bob")
    held = lease(database, rules, alice)
    with pytest.raises(Invalid, match="reason"):
        with database.write_connection() as connection:
            assignment.skip(connection, rules=rules, user_id=alice, item_id=held.item_id, reason="  ")
    with database.write_connection() as connection:
        assignment.skip(connection, rules=rules, user_id=alice, item_id=held.item_id, reason="I cannot read Malagasy")
    assert lease(database, rules, alice) is None
    assert lease(database, rules, bob).item_id == held.item_id
    with database.read() as session:
        assert session.scalar(select(Skip.reason)) == "I cannot read Malagasy"


def test_idempotent_submission(database):
    rules = make_project(database, overlap=2, n_items=2)
    alice = make_user(database, "alice")
    held = lease(database, rules, alice)
    first = submit(database, rules, alice, held.item_id, "key-1")
    again = submit(database, rules, alice, held.item_id, "key-1", {"choice": "right", "strength": 1})
    assert not first.replayed and again.replayed
    assert again.judgment_id == first.judgment_id and again.answer == first.answer  # the first judgment, unchanged
    with pytest.raises(Conflict, match="already judged"):
        submit(database, rules, alice, held.item_id, "key-2")
    other = lease(database, rules, alice)
    with pytest.raises(Conflict, match="already used"):
        submit(database, rules, alice, other.item_id, "key-1")
    assert count(database, Judgment) == 1
    with database.read() as session:
        assert session.scalar(select(Item.n_done).where(Item.id == held.item_id)) == 1


def test_shown_order_is_stored_and_mapped_back(database):
    rules = make_project(database, overlap=1, n_items=1)
    alice = make_user(database, "alice")
    held = lease(database, rules, alice)
    assert held.shown_order == tasks.shown_order(2, item_id=held.item_id, user_id=alice)
    with database.read() as session:
        item = session.get(Item, held.item_id)
        assert held.responses == [item.responses[i] for i in held.shown_order]
    done = submit(database, rules, alice, held.item_id, "k", {"choice": "left", "strength": 3, "both_bad": True})
    left = held.shown_order[0]
    assert done.answer == {"preference": "ab"[left], "strength": 3, "both_bad": True, "winner_position": 0}
    with database.read() as session:
        row = session.scalar(select(Judgment))
        assert row.shown_order == held.shown_order and row.guideline_version == 1


def test_bad_answers_are_refused_without_a_trace(database):
    rules = make_project(database, overlap=1, n_items=1)
    alice = make_user(database, "alice")
    held = lease(database, rules, alice)
    for answer, field in [({"choice": "up"}, "answer.choice"), ({"choice": "tie", "strength": 2}, "answer.strength"),
                          ({"choice": "left", "strength": True}, "answer.strength"),
                          ({"choice": "left", "colour": 1}, "answer.colour")]:
        with pytest.raises(Invalid, match=field):
            submit(database, rules, alice, held.item_id, "k", answer)
    with pytest.raises(Invalid, match="guideline_version"):
        submit(database, rules, alice, held.item_id, "k", guideline_version=7)
    assert count(database, Judgment) == 0
    assert submit(database, rules, alice, held.item_id, "k", {"choice": "tie"}).answer["preference"] == "tie"


def test_the_next_item_is_picked_with_the_judgment(database):
    """`submit(pick_next=True)`: on PostgreSQL the statement that records the judgment also finds the next item;
    the lease made from it is the one a separate lookup gives (highest priority, then oldest)."""
    rules = make_project(database, overlap=1, n_items=3, priorities=[0.0, 0.0, 5.0])
    alice = make_user(database, "alice")
    first = lease(database, rules, alice)
    with database.write_connection() as connection:
        done = assignment.submit(connection, rules=rules, user_id=alice, item_id=first.item_id,
                                 answer={"choice": "left", "strength": 1}, idempotency_key="k1", pick_next=True)
        upcoming = assignment.lease_next(connection, rules=rules, user_id=alice, after_submit=True,
                                         picked=done.next_candidate)
    with database.read() as session:
        ids = list(session.scalars(select(Item.id).order_by(Item.id)))
    assert first.item_id == ids[2] and upcoming.item_id == ids[0]  # priority 5 first, then the oldest
    if database.backend == "postgresql":
        assert done.next_candidate.id == upcoming.item_id
    else:
        assert done.next_candidate is None  # SQLite looks it up in lease_next (no round trips to save)
    assert count(database, Assignment, Assignment.user_id == alice, Assignment.state == "active") == 1


@pytest.mark.parametrize("expired", [False, True])
def test_a_candidate_taken_since_it_was_found_is_passed_over_or_taken_over(database, expired):
    """The first candidate can be stale (PostgreSQL: the judgment statement's snapshot predates its lock waits):
    an item that filled up meanwhile is passed over for the next one; one whose lease has expired is taken over."""
    rules = make_project(database, overlap=1, n_items=3, priorities=[5.0, 0.0, 0.0], lease_seconds=60)
    alice, bob = make_user(database, "alice"), make_user(database, "bob")
    now = utcnow()
    with database.write_connection() as connection:  # bob's candidate, found before alice leases it
        stale = assignment._Q.regular.first(connection, {"user_id": bob, "project_id": rules.project_id, "now": now,
                                                         "overlap": rules.overlap})
    first = lease(database, rules, alice, now=now)
    assert stale.id == first.item_id
    later = now + timedelta(seconds=61 if expired else 1)
    got = lease(database, rules, bob, now=later, after_submit=True, picked=stale)
    with database.read() as session:
        ids = list(session.scalars(select(Item.id).order_by(Item.id)))
    if expired:
        assert got.item_id == first.item_id  # alice's expired lease went to bob
        assert count(database, Assignment, Assignment.item_id == first.item_id) == 1
        assert count(database, Assignment, Assignment.user_id == bob, Assignment.item_id == first.item_id) == 1
    else:
        assert got.item_id == ids[1]  # the next in line (priority 0, the oldest)
        assert count(database, Assignment, Assignment.item_id == first.item_id) == 1  # still alice's alone
    assert count(database, Assignment, Assignment.user_id == bob) == 1
