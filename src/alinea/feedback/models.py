"""The tables of the feedback app (SQLAlchemy 2 declarative models).

The rules that must hold under concurrency are unique constraints, so the database enforces them whatever the
code path:
- `assignments (item_id, slot)`: a regular item has `overlap` slots numbered 0..overlap-1; an annotator's lease or
  finished judgment occupies one, so no item is ever handed out beyond its overlap;
- `assignments (item_id, user_id)` and `judgments (item_id, user_id)`: each annotator judges an item at most once;
- `judgments (user_id, idempotency_key)`: a client that retries a submission never records it twice.
Gold items (known answers, mixed in silently) take no slot: every annotator may see each gold item once.

Times are stored as naive UTC in the database and come back as aware UTC datetimes (`UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("admin", "annotator", "viewer")
TASK_TYPES = ("pairwise", "ranking", "rating", "thumbs", "demonstration", "chat")
ASSIGNMENT_STATES = ("active", "done")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A datetime stored as naive UTC (both backends alike) and read back as an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(timezone.utc)")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


JSONType = JSON().with_variant(JSONB(), "postgresql")


NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names follow one rule, so migrations can name what they drop."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, list[Any]: JSONType}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    """admin, annotator or viewer."""
    locale: Mapped[str | None] = mapped_column(String(16), default=None)
    """UI language chosen by the user; None follows the browser's Accept-Language."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token for programs. Only its SHA-256 is stored; the token itself is shown once, at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    """A browser login. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    task_type: Mapped[str] = mapped_column(String(16))
    """pairwise, ranking, rating, thumbs, demonstration or chat (see tasks.py)."""
    description: Mapped[str] = mapped_column(Text, default="")
    overlap: Mapped[int] = mapped_column(Integer, default=3)
    """Distinct annotators per regular item."""
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)
    """Share of leases that are gold items (while the annotator has gold items left)."""
    lease_seconds: Mapped[int] = mapped_column(Integer, default=900)
    aspects: Mapped[list[Any]] = mapped_column(default=list)
    """Rating tasks: the aspects scored, e.g. ["helpful", "harmless", "honest"]."""
    flags: Mapped[list[Any]] = mapped_column(default=list)
    """Rating tasks: the flags an annotator may raise, e.g. ["wrong_language", "unsafe"]."""
    scale_min: Mapped[int] = mapped_column(Integer, default=1)
    scale_max: Mapped[int] = mapped_column(Integer, default=7)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)


class ProjectMember(Base):
    """An annotator (or viewer) assigned to a project; admins see every project without membership."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class Guideline(Base):
    """One version of a project's guidelines (markdown). Judgments record the version they were made under."""

    __tablename__ = "guidelines"
    __table_args__ = (UniqueConstraint("project_id", "version", name="uq_guidelines_project_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Item(Base):
    """A prompt and 0..9 candidate responses to be judged. `meta` (e.g. which model wrote what) is admin-only."""

    __tablename__ = "items"
    __table_args__ = (
        # The lease query walks this index: open items of a project, highest priority first, then oldest.
        Index("ix_items_queue", "project_id", "is_gold", "complete", text("priority DESC"), "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(256), default=None)
    """The `id` of the imported record, if it had one."""
    messages: Mapped[list[Any]] = mapped_column()
    """The prompt as chat messages [{role, content}], the last one the user's."""
    responses: Mapped[list[Any]] = mapped_column(default=list)
    language: Mapped[str] = mapped_column(String(32), default="en")
    tags: Mapped[list[Any]] = mapped_column(default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    """Higher first; the loop sets it from reward-model uncertainty."""
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_answer: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """The known answer of a gold item, in the task's canonical answer form (see tasks.py)."""
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    """Judgments recorded for this item."""
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    """n_done >= the project's overlap (kept in step on every judgment and overlap change; indexed for leasing)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Assignment(Base):
    """An annotator's hold on an item: a lease while `active` (until `expires_at`), then `done`."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "slot", name="uq_assignments_item_slot"),
        UniqueConstraint("item_id", "user_id", name="uq_assignments_item_user"),
        Index("ix_assignments_user_project_state", "user_id", "project_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    slot: Mapped[int | None] = mapped_column(Integer, default=None)
    """0..overlap-1 for a regular item; None for a gold item."""
    state: Mapped[str] = mapped_column(String(8), default="active")
    leased_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    shown_order: Mapped[list[Any]] = mapped_column(default=list)
    """shown_order[k] = index in item.responses of the response shown in position k (0 = left / first)."""


class Skip(Base):
    """An annotator passed on an item, with a reason; the item goes back to the pool, not to them."""

    __tablename__ = "skips"
    __table_args__ = (UniqueConstraint("item_id", "user_id", name="uq_skips_item_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Judgment(Base):
    """One annotator's answer on one item, with everything needed to weigh it later."""

    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_judgments_user_key"),
        UniqueConstraint("item_id", "user_id", name="uq_judgments_item_user"),
        Index("ix_judgments_project", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    task_type: Mapped[str] = mapped_column(String(16))
    answer: Mapped[dict[str, Any]] = mapped_column()
    """The canonical answer (in terms of item.responses, not of screen positions); see tasks.py."""
    shown_order: Mapped[list[Any]] = mapped_column(default=list)
    guideline_version: Mapped[int | None] = mapped_column(Integer, default=None)
    time_spent_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    """Milliseconds from the lease (or from the page showing the item, as the client reports) to the submission."""
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_correct: Mapped[bool | None] = mapped_column(Boolean, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChatConversation(Base):
    """A conversation with the live model: each assistant turn offers two samples and records the pick."""

    __tablename__ = "chat_conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    messages: Mapped[list[Any]] = mapped_column(default=list)
    """The conversation so far, [{role, content}], continued from each picked sample."""
    pending: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """The two samples awaiting a pick: {samples: [a, b], shown_order: [..]}."""
    turns: Mapped[list[Any]] = mapped_column(default=list)
    """One entry per judged turn: {context, samples, shown_order, preference, strength, both_bad, thumbs, comment}."""
    guideline_version: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
