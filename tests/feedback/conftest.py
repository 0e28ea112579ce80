"""Fixtures of the feedback app's tests: a migrated database on SQLite and on PostgreSQL, users, an app client.

`settings` is parametrised over both backends. SQLite: a migrated template file made once, copied for each test.
PostgreSQL (127.0.0.1:5432, database `test`, or $ALINEA_TEST_PG): one schema `t_<random>` per test session,
migrated once and dropped at the end; each test starts from empty tables (TRUNCATE). The postgres parameter is
skipped, with the reason, when the server cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles

from alinea.feedback import crud, db, security
from alinea.feedback.settings import FeedbackSettings

PG_URL = os.environ.get("ALINEA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing():
    """argon2 with its cheapest parameters: a login takes microseconds instead of 0.15 s."""
    security.set_password_hasher(PasswordHasher.from_parameters(profiles.CHEAPEST))
    yield
    security.set_password_hasher(PasswordHasher())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("feedback-db") / "template.db"
    engine = db.make_engine(FeedbackSettings(db_url=f"sqlite:///{path}"))
    db.upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file: one file to copy
    return path


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        url = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as err:  # any failure to connect means: skip these tests
        return f"PostgreSQL at {PG_URL} is unreachable ({type(err).__name__}: {str(err).strip()[:120]})"


@pytest.fixture(scope="session")
def pg_schema():
    """A fresh, migrated schema for this test session; dropped at the end."""
    why = _pg_reachable()
    if why:
        pytest.skip(why)
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    engine = db.make_engine(FeedbackSettings(db_url=PG_URL, db_schema=schema, pool_size=1))
    db.upgrade(engine)
    yield schema, engine
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


TABLES = ("chat_conversations", "judgments", "skips", "assignments", "items", "guidelines", "project_members",
          "web_sessions", "api_tokens", "projects", "users")


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path) -> FeedbackSettings:
    """Settings pointing at an empty, migrated database of each backend."""
    base = FeedbackSettings(migrate=False, secret_key="test-secret", pool_size=4)
    if request.param == "sqlite":
        path = tmp_path / "feedback.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return replace(base, db_url=f"sqlite:///{path}")
    schema, engine = request.getfixturevalue("pg_schema")
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    return replace(base, db_url=PG_URL, db_schema=schema)


@pytest.fixture
def database(settings):
    database = db.Database.from_settings(settings)
    yield database
    database.dispose()


def make_user(database, username: str, role: str = "annotator") -> int:
    with database.write() as session:
        return crud.create_user(session, username=username, password=PASSWORD, role=role).id


def make_token(database, username: str) -> str:
    with database.write() as session:
        user = crud.get_user(session, username=username)
        return crud.create_api_token(session, user_id=user.id, name="test")


# ---------------------------------------------------------------------------------------------------------------------
# the app


def fake_sampler(messages, n, seed):
    """A stand-in for a live model: deterministic, different answers per sample, echoes the last user turn."""
    last = messages[-1]["content"]
    return [f"sample {k} (seed {seed}) to: {last}" for k in range(n)]


@pytest.fixture
def app(settings):
    from alinea.feedback.app import create_app

    return create_app(settings, chat_sampler=fake_sampler)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Api:
    """Small helpers over the TestClient for the JSON API, as a given user."""

    def __init__(self, client, token: str) -> None:
        self.client = client
        self.headers = bearer(token)

    def get(self, path: str, **kw):
        return self.client.get(f"/api/v1{path}", headers=self.headers, **kw)

    def post(self, path: str, json=None, **kw):
        return self.client.post(f"/api/v1{path}", json=json, headers=self.headers, **kw)

    def patch(self, path: str, json=None, **kw):
        return self.client.patch(f"/api/v1{path}", json=json, headers=self.headers, **kw)


@pytest.fixture
def admin(app, client) -> Api:
    database = app.state.database
    make_user(database, "admin", "admin")
    return Api(client, make_token(database, "admin"))


def annotator(app, client, name: str) -> Api:
    database = app.state.database
    make_user(database, name, "annotator")
    return Api(client, make_token(database, name))


def comparison_items(n: int, **extra) -> list[dict]:
    return [{"record": {"type": "comparison", "id": f"c{i}", "prompt": f"Question {i}?", "response_a": f"A{i}",
                        "response_b": f"B{i}", "preference": "a", **extra}} for i in range(n)]


def new_project(admin: Api, *, task_type="pairwise", members=(), items=None, **fields) -> int:
    body = {"name": fields.pop("name", f"{task_type} project"), "task_type": task_type,
            "guidelines": fields.pop("guidelines", "Be kind."), "members": list(members), **fields}
    response = admin.post("/projects", body)
    assert response.status_code == 201, response.text
    project_id = response.json()["id"]
    if items:
        added = admin.post(f"/projects/{project_id}/items", {"items": items})
        assert added.status_code == 201, added.text
    return project_id
