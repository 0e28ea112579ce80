"""The first tables: users, API tokens, sessions, projects, guidelines, items, assignments, skips, judgments, chats.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _time(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime(), nullable=False)


def _fk(name: str, table: str, ondelete: str = "CASCADE", nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), sa.ForeignKey(f"{table}.id", ondelete=ondelete), nullable=nullable)


def _text(name: str, length: int | None = None, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length) if length else sa.Text(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        _text("username", 64),
        _text("display_name", 128),
        _text("password_hash", 256),
        _text("role", 16),
        _text("locale", 16, nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        _time(),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "projects",
        _id(),
        _text("name", 128),
        _text("task_type", 16),
        _text("description"),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("gold_rate", sa.Float(), nullable=False),
        sa.Column("lease_seconds", sa.Integer(), nullable=False),
        sa.Column("aspects", _json(), nullable=False),
        sa.Column("flags", _json(), nullable=False),
        sa.Column("scale_min", sa.Integer(), nullable=False),
        sa.Column("scale_max", sa.Integer(), nullable=False),
        _time(),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.create_table(
        "api_tokens",
        _id(),
        _fk("user_id", "users"),
        _text("name", 128),
        _text("token_hash", 64),
        _time(),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "web_sessions",
        _id(),
        _text("token_hash", 64),
        _fk("user_id", "users"),
        _time(),
        _time("expires_at"),
        sa.UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_project_members_user_id", "project_members", ["user_id"])
    op.create_table(
        "guidelines",
        _id(),
        _fk("project_id", "projects"),
        sa.Column("version", sa.Integer(), nullable=False),
        _text("text"),
        _fk("author_id", "users", ondelete="SET NULL", nullable=True),
        _time(),
        sa.UniqueConstraint("project_id", "version", name="uq_guidelines_project_version"),
    )
    op.create_table(
        "items",
        _id(),
        _fk("project_id", "projects"),
        _text("external_id", 256, nullable=True),
        sa.Column("messages", _json(), nullable=False),
        sa.Column("responses", _json(), nullable=False),
        _text("language", 32),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("meta", _json(), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("is_gold", sa.Boolean(), nullable=False),
        sa.Column("gold_answer", _json(), nullable=True),
        sa.Column("n_done", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        _time(),
    )
    op.create_index("ix_items_queue", "items", ["project_id", "is_gold", "complete", sa.text("priority DESC"), "id"])
    op.create_table(
        "assignments",
        _id(),
        _fk("item_id", "items"),
        _fk("project_id", "projects"),
        _fk("user_id", "users"),
        sa.Column("slot", sa.Integer(), nullable=True),
        _text("state", 8),
        _time("leased_at"),
        _time("expires_at"),
        sa.Column("shown_order", _json(), nullable=False),
        sa.UniqueConstraint("item_id", "slot", name="uq_assignments_item_slot"),
        sa.UniqueConstraint("item_id", "user_id", name="uq_assignments_item_user"),
    )
    op.create_index("ix_assignments_user_project_state", "assignments", ["user_id", "project_id", "state"])
    op.create_table(
        "skips",
        _id(),
        _fk("item_id", "items"),
        _fk("project_id", "projects"),
        _fk("user_id", "users"),
        _text("reason"),
        _time(),
        sa.UniqueConstraint("item_id", "user_id", name="uq_skips_item_user"),
    )
    op.create_index("ix_skips_project_id", "skips", ["project_id"])
    op.create_table(
        "judgments",
        _id(),
        _fk("item_id", "items"),
        _fk("project_id", "projects"),
        _fk("user_id", "users"),
        _text("idempotency_key", 128),
        _text("task_type", 16),
        sa.Column("answer", _json(), nullable=False),
        sa.Column("shown_order", _json(), nullable=False),
        sa.Column("guideline_version", sa.Integer(), nullable=True),
        sa.Column("time_spent_ms", sa.Integer(), nullable=True),
        sa.Column("is_gold", sa.Boolean(), nullable=False),
        sa.Column("gold_correct", sa.Boolean(), nullable=True),
        _time(),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_judgments_user_key"),
        sa.UniqueConstraint("item_id", "user_id", name="uq_judgments_item_user"),
    )
    op.create_index("ix_judgments_project", "judgments", ["project_id", "id"])
    op.create_table(
        "chat_conversations",
        _id(),
        _fk("project_id", "projects"),
        _fk("user_id", "users"),
        sa.Column("messages", _json(), nullable=False),
        sa.Column("pending", _json(), nullable=True),
        sa.Column("turns", _json(), nullable=False),
        sa.Column("guideline_version", sa.Integer(), nullable=True),
        _time(),
        _time("updated_at"),
    )
    op.create_index("ix_chat_conversations_project_id", "chat_conversations", ["project_id"])


def downgrade() -> None:
    # Children before parents, so foreign keys never point at a dropped table.
    for table in ("chat_conversations", "judgments", "skips", "assignments", "items", "guidelines",
                  "project_members", "web_sessions", "api_tokens", "projects", "users"):
        op.drop_table(table)
