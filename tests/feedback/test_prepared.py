"""Prepared statements (run on the DBAPI cursor) return what SQLAlchemy's `Connection.execute` returns, on SQLite
and PostgreSQL: same column names, same values after type conversion (JSON, UTC datetimes, booleans)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from alinea.feedback import assignment
from alinea.feedback.assignment import _Q
from alinea.feedback.models import Assignment, User, utcnow
from alinea.feedback.prepared import Prepared

from .conftest import make_user
from .test_assignment import lease, make_project, submit


def _same(connection, prepared: Prepared, params: dict) -> list:
    """Rows from the prepared statement, checked against SQLAlchemy's for the same statement and parameters."""
    expected = connection.execute(prepared.statement, params).all()
    rows = prepared.all(connection, params)
    assert [row._fields for row in rows] == [tuple(row._fields) for row in expected]
    assert [tuple(row) for row in rows] == [tuple(row) for row in expected]
    return rows


def test_rows_match_sqlalchemy(database):
    rules = make_project(database, overlap=2, n_items=3)
    alice, bob = make_user(database, "alice"), make_user(database, "bob")
    held = lease(database, rules, alice)
    submit(database, rules, bob, lease(database, rules, bob).item_id, "k1",
           answer={"choice": "right", "strength": 3})
    now = utcnow()
    with database.write_connection() as connection:
        hold_rows = _same(connection, _Q.rules_and_hold, {"project_id": rules.project_id, "user_id": alice,
                                                          "item_id": held.item_id})
        # the types came through: JSON lists, an aware UTC datetime, a boolean
        assert hold_rows[0].shown_order == held.shown_order and hold_rows[0].leased_at.tzinfo is not None
        assert hold_rows[0].member is False and hold_rows[0].is_gold is False  # booleans (SQLite stores 0), no member
        _same(connection, _Q.held, {"project_id": rules.project_id, "user_id": alice, "now": now})
        candidates = _same(connection, _Q.regular, {"project_id": rules.project_id, "user_id": bob, "now": now,
                                                    "overlap": 2})
        assert len(candidates) == 1
        _same(connection, _Q.slots, {"item_id": held.item_id})
        replay = _same(connection, _Q.replay, {"user_id": bob, "key": "k1"})
        assert replay[0].answer["preference"] in ("a", "b") and replay[0].created_at.tzinfo is not None


def test_inserts_and_updates_round_trip(database):
    rules = make_project(database, overlap=2, n_items=1)
    alice = make_user(database, "alice")
    with database.read() as session:
        item_id = session.scalar(select(assignment.Item.id))
    leased_at = utcnow().replace(microsecond=123456)
    with database.write_connection() as connection:
        params = {"item_id": item_id, "project_id": rules.project_id, "user_id": alice, "slot": 1,
                  "state": "active", "leased_at": leased_at, "expires_at": leased_at + timedelta(seconds=60),
                  "shown_order": [1, 0]}
        new_id = _Q.add_assignment[connection.dialect.name].scalar(connection, params)
        assert new_id is not None
        assert _Q.add_assignment[connection.dialect.name].scalar(connection, params) is None  # ON CONFLICT: no row
        assert _Q.finish.rowcount(connection, {"assignment_id": new_id, "holder_id": alice}) == 1
        assert _Q.finish.rowcount(connection, {"assignment_id": new_id, "holder_id": alice}) == 0
    with database.read() as session:
        stored = session.get(Assignment, new_id)
        assert (stored.state, stored.slot, stored.shown_order, stored.leased_at) == ("done", 1, [1, 0], leased_at)


def test_database_errors_are_sqlalchemy_errors(database):
    make_user(database, "alice")
    duplicate = Prepared(select(User.id).where(User.username == "alice"))  # a plain statement works too
    clash = Prepared(User.__table__.insert(), keys=("username", "display_name", "role", "active", "password_hash",
                                                    "locale", "created_at"))
    with pytest.raises(IntegrityError), database.write_connection() as connection:
        assert duplicate.scalar(connection, {}) is not None
        clash.rowcount(connection, {"username": "alice", "display_name": "", "role": "annotator", "active": True,
                                    "password_hash": None, "locale": None, "created_at": utcnow()})


def test_statements_that_cannot_be_prepared_are_refused_at_first_use(database):
    from alinea.feedback.models import Item

    expanding = Prepared(select(Item.id).where(Item.id.in_(assignment.bindparam("ids", expanding=True))))
    incomplete = Prepared(User.__table__.insert(), keys=("username",))  # leaves out columns with defaults
    with database.read() as session:
        connection = session.connection()
        with pytest.raises(ValueError, match="expanding"):
            expanding.all(connection, {"ids": [1]})
        with pytest.raises(ValueError, match="needs values"):
            incomplete.rowcount(connection, {"username": "x"})


def test_a_dropped_connection_is_an_operational_error_and_is_not_reused(database):
    if database.backend != "postgresql":
        pytest.skip("PostgreSQL: a server can end a session")
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    rules = make_project(database, n_items=1)
    params = {"project_id": rules.project_id, "user_id": 1}
    with database.write_connection() as connection:
        victim = connection.connection.driver_connection.info.backend_pid
    other = create_engine(database.engine.url)  # outside the pool, whose next connection is the victim
    with other.begin() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim}).scalar()
    other.dispose()
    with pytest.raises(OperationalError):
        with database.write_connection() as connection:
            assert connection.connection.driver_connection.info.backend_pid == victim
            _Q.rules.first(connection, params)
    with database.write_connection() as connection:  # a fresh connection: the dropped one was invalidated
        assert connection.connection.driver_connection.info.backend_pid != victim
        assert _Q.rules.first(connection, params).id == rules.project_id
