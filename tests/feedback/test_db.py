"""The server's SQLite database checkpoints its write-ahead log from a thread of its own (db.WalCheckpointer)."""

from __future__ import annotations

import time

from sqlalchemy import text

from alinea.feedback import crud, db
from alinea.feedback.settings import FeedbackSettings


def _write_users(database, prefix: str, n: int) -> None:
    for k in range(n):
        with database.write() as session:
            crud.create_user(session, username=f"{prefix}{k}", password=None, role="annotator")


def test_the_wal_is_checkpointed_by_the_thread_not_by_commits(tmp_path):
    path = tmp_path / "f.db"
    settings = FeedbackSettings(db_url=f"sqlite:///{path}", migrate=False)
    setup = db.Database.from_settings(settings)
    db.upgrade(setup.engine)
    setup.dispose()  # the last connection's close checkpoints: the file holds the empty schema
    empty_size = path.stat().st_size

    database = db.Database.from_settings(settings, background_checkpoints=True)
    try:
        with database.engine.connect() as connection:
            assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        database.checkpointer.stop()  # no thread: commits alone never move the log into the file
        _write_users(database, "a", 600)  # past the 1000 WAL pages where a commit would checkpoint
        assert path.stat().st_size == empty_size
        database.checkpointer = db.WalCheckpointer(str(path), interval_s=0.05)  # with the thread, they do
        deadline = time.monotonic() + 20
        while path.stat().st_size == empty_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > empty_size
    finally:
        database.dispose()
    assert not database.checkpointer._thread.is_alive()


def test_other_users_of_the_database_keep_sqlites_own_checkpoints(tmp_path):
    database = db.Database.from_settings(FeedbackSettings(db_url=f"sqlite:///{tmp_path / 'g.db'}"))
    try:
        assert database.checkpointer is None
        with database.engine.connect() as connection:
            assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 1000
    finally:
        database.dispose()
