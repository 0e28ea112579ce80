"""Settings of the feedback app: one dataclass, every field documented, handed to `create_app(settings)`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path


def default_db_url(path: str | Path = "feedback.db") -> str:
    """The embedded default: an SQLite file (created on first start)."""
    return f"sqlite:///{Path(path)}"


@dataclass
class FeedbackSettings:
    """How `alinea serve` runs: the database, sessions, limits and defaults of new projects."""

    db_url: str = field(default_factory=default_db_url, metadata={"help": "SQLAlchemy URL: sqlite:///feedback.db or postgresql+psycopg://user@host:5432/db."})
    db_schema: str = field(default="", metadata={"help": "PostgreSQL schema to put every table in (search_path); empty = the server's default."})
    migrate: bool = field(default=True, metadata={"help": "Apply Alembic migrations when the app starts."})
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32), metadata={"help": "Key that signs CSRF tokens; random per start unless given (sessions live in the database and survive restarts)."})
    session_hours: float = field(default=12.0, metadata={"help": "A browser session expires this many hours after login."})
    cookie_secure: bool = field(default=False, metadata={"help": "Mark cookies Secure (set it when serving over HTTPS)."})
    token_cache_seconds: float = field(default=5.0, metadata={"help": "How long a server process trusts an API token it has checked (a user disabled elsewhere loses access within this time)."})
    max_body_bytes: int = field(default=2_000_000, metadata={"help": "Requests with a larger body are refused with 413 (imports included)."})
    default_lease_seconds: int = field(default=900, metadata={"help": "How long an annotator holds a leased item before it returns to the pool (new projects)."})
    default_overlap: int = field(default=3, metadata={"help": "Distinct annotators per item (new projects)."})
    default_locale: str = field(default="en", metadata={"help": "UI language when neither the user nor the browser asks for one we have."})
    sqlite_synchronous: str = field(default="NORMAL", metadata={"help": "SQLite PRAGMA synchronous in WAL mode. NORMAL: a committed judgment survives a crash or SIGKILL of the server; FULL: also a crash of the machine or a power cut, at ~3 ms more per judgment (an fsync per commit)."})
    pool_size: int = field(default=8, metadata={"help": "Database connections per server process (PostgreSQL)."})
    seed: int = field(default=0, metadata={"help": "Seed of the per-annotator shown order and of the gold mixing."})

    def __post_init__(self) -> None:
        if self.sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA, not {self.sqlite_synchronous!r}")
        self.sqlite_synchronous = self.sqlite_synchronous.upper()

