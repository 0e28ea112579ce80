"""Migrations: upgrade from empty, match the models exactly, run twice harmlessly, downgrade to nothing."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from alinea.feedback import db
from alinea.feedback.models import Base
from alinea.feedback.settings import FeedbackSettings

from .conftest import PG_URL, _pg_reachable


@pytest.fixture(params=["sqlite", "postgres"])
def empty_engine(request, tmp_path):
    if request.param == "sqlite":
        engine = db.make_engine(FeedbackSettings(db_url=f"sqlite:///{tmp_path / 'm.db'}"))
        yield engine
        engine.dispose()
        return
    why = _pg_reachable()
    if why:
        pytest.skip(why)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    engine = db.make_engine(FeedbackSettings(db_url=PG_URL, db_schema=schema, pool_size=1))
    yield engine
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_upgrade_matches_models_and_downgrade_removes_everything(empty_engine):
    assert db.current_revision(empty_engine) is None
    db.upgrade(empty_engine)
    db.upgrade(empty_engine)  # applying again changes nothing
    assert db.current_revision(empty_engine) == db.head_revision() == "0001"
    with empty_engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                       Base.metadata)
        if connection.dialect.name == "sqlite":
            # Alembic cannot compare SQLite's reflection of a DESC index column with the model's; check it directly.
            differences = [d for d in differences if d[1].name != "ix_items_queue"]
            columns = connection.exec_driver_sql("PRAGMA index_xinfo(ix_items_queue)").all()
            assert [(c[2], c[3]) for c in columns if c[5]] == [  # (name, descending) of the key columns
                ("project_id", 0), ("is_gold", 0), ("complete", 0), ("priority", 1), ("id", 0)]
        assert differences == []
        tables = set(inspect(connection).get_table_names())
    assert set(Base.metadata.tables) <= tables
    db.downgrade(empty_engine)
    assert db.current_revision(empty_engine) is None
    with empty_engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
    db.upgrade(empty_engine)  # and back up again
    assert db.current_revision(empty_engine) == "0001"


def test_sqlite_runs_in_wal_mode_with_the_chosen_synchronous_level(tmp_path):
    engine = db.make_engine(FeedbackSettings(db_url=f"sqlite:///{tmp_path / 'w.db'}", sqlite_synchronous="FULL"))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_in_memory_sqlite_and_unknown_urls_are_refused():
    from alinea.errors import UserError

    with pytest.raises(UserError, match="in-memory"):
        db.make_engine(FeedbackSettings(db_url="sqlite://"))
    with pytest.raises(UserError, match="expected an sqlite"):
        db.make_engine(FeedbackSettings(db_url="mysql://x@y/z"))
