"""50 simulated annotators at once, on SQLite and PostgreSQL: no item over its overlap, nothing lost or duplicated.

Each annotator is a thread with its own transactions (as the server's request threads are). They start together
behind a barrier and loop: lease, then (mostly) submit a judgment, sometimes submit it twice with the same
idempotency key (a retry), sometimes skip. At the end every item must hold exactly `overlap` judgments from
distinct annotators, every acknowledged judgment must be in the database, and nothing else.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import replace

import pytest
from sqlalchemy import select

from alinea.feedback import assignment, crud
from alinea.feedback.assignment import Rules
from alinea.feedback.db import Database
from alinea.feedback.errors import Conflict
from alinea.feedback.models import Item, Judgment

from .test_assignment import comparison

ANNOTATORS = 50
ITEMS = 40
OVERLAP = 3


@pytest.mark.parametrize("combined", [False, True], ids=["separate", "lease-next"])
def test_fifty_annotators_at_once(settings, combined):
    """`combined`: each submission leases the next item in the same transaction, as `lease_next` does (the
    transaction then holds the judged item's row while it leases the next one; on PostgreSQL the statement that
    records the judgment also picks the next candidate)."""
    database = Database.from_settings(replace(settings, pool_size=12))
    with database.write() as session:
        project = crud.create_project(session, spec=crud.ProjectSpec(name="race", task_type="pairwise",
                                                                     overlap=OVERLAP, guidelines="g"))
        parsed = crud.parse_item_objects(((i, comparison(i)) for i in range(ITEMS)), source="t",
                                         task_type="pairwise", gold=False)
        crud.add_items(session, project=project, parsed=parsed)
        users = [crud.create_user(session, username=f"a{k:02d}", password="password1", role="annotator").id
                 for k in range(ANNOTATORS)]
        rules = Rules.of(project, 1)
    acknowledged: dict[int, tuple[int, int]] = {}
    problems: list[str] = []
    skips = Counter()
    lock = threading.Lock()
    start = threading.Barrier(ANNOTATORS)

    def annotate(user_id: int) -> None:
        rng = random.Random(user_id)
        start.wait()
        upcoming = None
        try:
            while True:
                if upcoming is None:
                    with database.write_connection() as connection:
                        upcoming = assignment.lease_next(connection, rules=rules, user_id=user_id)
                lease, upcoming = upcoming, None
                if lease is None:
                    return
                if rng.random() < 0.1:
                    with database.write_connection() as connection:
                        assignment.skip(connection, rules=rules, user_id=user_id, item_id=lease.item_id,
                                        reason="testing skips")
                    with lock:
                        skips[user_id] += 1
                    continue
                key = uuid.uuid4().hex
                answer = {"choice": rng.choice(["left", "right", "tie"]), "strength": 0}
                for attempt in range(2 if rng.random() < 0.2 else 1):
                    try:
                        with database.write_connection() as connection:
                            done = assignment.submit(connection, rules=rules, user_id=user_id,
                                                     item_id=lease.item_id, answer=answer, idempotency_key=key,
                                                     pick_next=combined)
                            if combined and attempt == 0:
                                upcoming = assignment.lease_next(connection, rules=rules, user_id=user_id,
                                                                 after_submit=True, picked=done.next_candidate)
                    except Conflict as err:
                        with lock:
                            problems.append(f"{user_id}: {err}")
                        break
                    with lock:
                        if attempt == 0:
                            assert not done.replayed
                            acknowledged[done.judgment_id] = (user_id, lease.item_id)
                        elif not done.replayed or acknowledged.get(done.judgment_id) != (user_id, lease.item_id):
                            problems.append(f"{user_id}: a retry was not answered with the first judgment")
        except Exception as err:  # reported below, with the thread that met it
            with lock:
                problems.append(f"{user_id}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=annotate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []

    with database.read() as session:
        stored = session.execute(select(Judgment.id, Judgment.user_id, Judgment.item_id)).all()
        done_counts = dict(session.execute(select(Item.id, Item.n_done)).tuples().all())
        complete = set(session.scalars(select(Item.id).where(Item.complete.is_(True))))
    database.dispose()
    assert {row.id: (row.user_id, row.item_id) for row in stored} == acknowledged  # nothing lost, nothing extra
    per_item = Counter(item for _, item in acknowledged.values())
    assert set(per_item.values()) == {OVERLAP} and len(per_item) == ITEMS  # every item exactly at its overlap
    assert done_counts == dict(per_item) and complete == set(per_item)
    assert len(set(acknowledged.values())) == len(acknowledged)  # distinct annotators per item
    assert sum(skips.values()) > 0
