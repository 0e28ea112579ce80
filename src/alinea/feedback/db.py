"""The database: engine settings per backend, sessions for reading and writing, Alembic migrations.

SQLite (the embedded default) runs in WAL mode so that readers never wait for the writer; every write transaction
starts with `BEGIN IMMEDIATE`, which takes the database's single write lock at once (a deferred transaction that
reads first and writes later can fail with "database is locked" when two of them upgrade at the same time), and
waits up to `busy_timeout` for it. `synchronous` is FULL by default: a commit returns only after the WAL is on disk,
so an acknowledged judgment survives a SIGKILL of the server and a power cut (NORMAL would survive the SIGKILL
only). Read-only sessions start a plain deferred transaction and see a consistent snapshot without the lock.

PostgreSQL runs at READ COMMITTED; the assignment code locks the rows it hands out (`FOR UPDATE SKIP LOCKED`) and
leans on unique constraints as the last guard (see `assignment.py`).

Migrations live in `migrations/` inside the package and are configured here in code (no alembic.ini), so they run
from an installed package too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from alinea.errors import UserError
from alinea.feedback.settings import FeedbackSettings

MIGRATIONS = Path(__file__).parent / "migrations"
_READ_ONLY = "alinea_read_only"
"""Execution option: on SQLite, begin a deferred (snapshot) transaction instead of an immediate (write) one."""


def _sqlite_engine(settings: FeedbackSettings, *, autocheckpoint: bool = True) -> Engine:
    url = make_url(settings.db_url)
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise UserError(
            f"--db {settings.db_url}: an in-memory SQLite database cannot be shared by the server's connections; "
            "give a file, e.g. sqlite:///feedback.db."
        )
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": 30.0, "check_same_thread": False},
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
    )
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # The driver must not open transactions on its own: we issue BEGIN ourselves in `_on_begin`.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:  # a `WalCheckpointer` thread does it (see there)
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _postgres_engine(settings: FeedbackSettings) -> Engine:
    connect_args: dict = {}
    if settings.db_schema:
        connect_args["options"] = f"-c search_path={settings.db_schema}"
    return create_engine(
        settings.db_url,
        connect_args=connect_args,
        pool_size=settings.pool_size,
        max_overflow=2,  # the hot routes use at most pool_size at once (see routes.deps.run_db); pages a few more
        pool_recycle=3600,  # no pre-ping: it would cost a round trip per request; a dropped connection errors once
    )


def make_engine(settings: FeedbackSettings, *, sqlite_autocheckpoint: bool = True) -> Engine:
    """An engine for `settings.db_url` with the per-backend settings described in the module docstring.
    `sqlite_autocheckpoint=False`: the engine's connections leave WAL checkpoints to a `WalCheckpointer`."""
    try:
        backend = make_url(settings.db_url).get_backend_name()
    except Exception:
        raise UserError(
            f"--db {settings.db_url!r} is not a database URL; expected sqlite:///feedback.db or "
            "postgresql+psycopg://user@host:5432/dbname."
        ) from None
    if backend == "sqlite":
        return _sqlite_engine(settings, autocheckpoint=sqlite_autocheckpoint)
    if backend == "postgresql":
        return _postgres_engine(settings)
    raise UserError(f"--db {settings.db_url}: expected an sqlite:// or postgresql+psycopg:// URL, got {backend}.")


class WalCheckpointer:
    """SQLite: copies the write-ahead log into the database file from a thread of its own, every `interval_s`.

    By default SQLite does it in the commit that takes the log past 1000 pages: that commit then copies the pages
    and flushes the file to disk while it holds the write lock, and in a server whose SQLite transactions run on the
    event loop every request in flight waits for it (the largest part of the p99 latency of `alinea bench serve`
    on SQLite). Here the server's connections are opened with `wal_autocheckpoint=0` and this thread checkpoints in
    PASSIVE mode, which never waits for readers or writers nor blocks them; the sqlite3 module releases the GIL
    meanwhile. Durability is unchanged: a committed transaction is in the log before the commit returns.
    """

    def __init__(self, path: str, *, interval_s: float = 0.1) -> None:
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alinea-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import sqlite3

        connection = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval_s):
                with contextlib.suppress(sqlite3.Error):  # busy or locked: the next round will do it
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Database:
    """An engine and its session factories: `write()` for transactions that change data, `read()` for the rest.

    `checkpointer`: SQLite's WAL checkpoints are made by this `WalCheckpointer` (the server's database, see
    `from_settings(..., background_checkpoints=True)`), stopped by `dispose()`.
    """

    def __init__(self, engine: Engine, checkpointer: WalCheckpointer | None = None) -> None:
        self.engine = engine
        self.checkpointer = checkpointer
        self.backend = engine.dialect.name
        # SQLite has one write lock per database; threads of this process queue for it here, in order, instead of
        # polling it through SQLite's busy handler (which sleeps up to 100 ms between tries).
        self._write_turn = threading.Lock() if self.backend == "sqlite" else contextlib.nullcontext()
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False)

    def writer_busy(self) -> bool:
        """SQLite: whether a thread of this process holds the write lock right now (False on PostgreSQL)."""
        return self.backend == "sqlite" and self._write_turn.locked()

    @classmethod
    def from_settings(cls, settings: FeedbackSettings, *, background_checkpoints: bool = False) -> Database:
        """`background_checkpoints` (the server): on SQLite, checkpoint the WAL in a thread (`WalCheckpointer`)."""
        engine = make_engine(settings, sqlite_autocheckpoint=not background_checkpoints)
        checkpointer = None
        if background_checkpoints and engine.dialect.name == "sqlite":
            checkpointer = WalCheckpointer(engine.url.database)
        return cls(engine, checkpointer)

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction: committed when the block ends, rolled back if it raises."""
        with self._write_turn, self._writer() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A Core connection in one write transaction (the hot paths: leasing and judging skip the ORM session)."""
        with self._write_turn, self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (on SQLite it does not take the write lock); never commits. Closing it ends the
        transaction without expiring what was loaded, so objects stay readable after the block."""
        with self._reader() as session:
            yield session

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()


# ---------------------------------------------------------------------------------------------------------------------
# migrations


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _with_migration_lock(engine: Engine, action) -> None:
    """Run `action(connection)` in one transaction; on PostgreSQL, one process at a time (advisory lock)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(724137)"))  # any constant shared by our processes
        action(connection)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent: an up-to-date database is left as it is)."""
    from alembic import command

    _with_migration_lock(engine, lambda c: command.upgrade(_alembic_config(c), revision))


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Undo migrations down to `revision` ("base" drops every table of the app)."""
    from alembic import command

    _with_migration_lock(engine, lambda c: command.downgrade(_alembic_config(c), revision))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of alinea."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head() or ""
