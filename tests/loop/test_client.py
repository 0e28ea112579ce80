"""FeedbackClient against a real feedback app over HTTP: retries, lost answers, idempotent submission, errors.

Most tests run the app (`create_app`) under uvicorn in a thread on a free port; `test_embedded_server_*` runs the
real `alinea serve` subprocess (alinea.loop.server).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from alinea.errors import UserError
from alinea.loop.client import ApiError, FeedbackClient

PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedApp:
    """The feedback app on an SQLite file under uvicorn in a thread; `stop()` and `start()` again on the same port
    (the database file stays), like a server restart. An admin account and its token exist from the start."""

    def __init__(self, folder: Path) -> None:
        from argon2 import PasswordHasher, profiles

        from alinea.feedback import crud, security
        from alinea.feedback.settings import FeedbackSettings

        security.set_password_hasher(PasswordHasher.from_parameters(profiles.CHEAPEST))
        self.settings = FeedbackSettings(db_url=f"sqlite:///{folder / 'feedback.db'}", secret_key="test",
                                         sqlite_synchronous="NORMAL")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._thread: threading.Thread | None = None
        self.start()
        with self.app.state.database.write() as session:
            admin = crud.create_user(session, username="admin", password=PASSWORD, role="admin")
            self.token = crud.create_api_token(session, user_id=admin.id, name="test")

    def start(self) -> None:
        import uvicorn

        from alinea.feedback.app import create_app

        self.app = create_app(self.settings)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
            self._server = None

    def client(self, **kwargs) -> FeedbackClient:
        return FeedbackClient(self.url, self.token, **kwargs)


@pytest.fixture
def app_server(tmp_path):
    server = ThreadedApp(tmp_path)
    yield server
    server.stop()


def comparison(i: int, a: str = "", b: str = "") -> dict:
    return {"type": "comparison", "id": f"r{i}", "prompt": f"Say something about {i}.",
            "response_a": a or f"first answer {i}", "response_b": b or f"second answer {i}", "preference": "tie"}


class Recorder:
    """A sleep that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class LoseAnswers(httpx.BaseTransport):
    """Forwards requests to the server, but for requests matching `when(request)` the first `times` answers are lost
    after the server has processed the request (as when a connection drops)."""

    def __init__(self, when, times: int = 1) -> None:
        self.inner = httpx.HTTPTransport()
        self.when = when
        self.times = times
        self.lost: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.times > 0 and self.when(request):
            self.times -= 1
            response.read()
            response.close()
            self.lost.append(f"{request.method} {request.url.path}")
            raise httpx.ReadError("connection dropped after the request was sent", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


class FailFirst(httpx.BaseTransport):
    """Answers the first `times` requests with `status` itself, then forwards to the server."""

    def __init__(self, status: int, times: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.status = status
        self.times = times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.times > 0:
            self.times -= 1
            return httpx.Response(self.status, json={"detail": "the database is busy", "errors": []},
                                  request=request)
        return self.inner.handle_request(request)


# ---------------------------------------------------------------------------------------------------------------------
# the API calls the loop needs


def test_project_items_lease_submit_progress_quality_export(app_server):
    with app_server.client() as admin:
        assert admin.health() == {"ok": True, "backend": "sqlite"}
        assert admin.me()["role"] == "admin"
        user = admin.create_user("ann1", PASSWORD, "annotator")
        assert user["username"] == "ann1" and user["role"] == "annotator"
        project = admin.create_project("round-1", overlap=1, guidelines="Pick the kinder answer.",
                                       members=["ann1"])
        assert project["overlap"] == 1 and project["task_type"] == "pairwise"
        ids = admin.add_items(project["id"], [comparison(i) for i in range(7)], priorities=[0, 0, 0, 0, 0, 0, 5],
                              chunk_size=3)
        assert len(ids) == 7 and ids == sorted(ids)
        assert admin.progress(project["id"])["items"] == 7
        token = admin.create_token("ann1", PASSWORD)
        with admin.as_user(token) as annotator:
            assert annotator.me()["username"] == "ann1"
            lease = annotator.lease(project["id"])
            assert lease["item_id"] == ids[6]  # the highest priority first
            assert annotator.lease(project["id"])["item_id"] == ids[6]  # asking again: the same item
            judged = annotator.submit(project["id"], lease["item_id"], {"choice": "left", "strength": 2},
                                      idempotency_key="k1", time_spent_ms=1500, lease_next=True)
            assert judged["replayed"] is False and judged["next"]["item_id"] == ids[0]
            left = lease["responses"][0]
            with pytest.raises(ApiError) as caught:
                annotator.export(project["id"])  # annotators may not read judgments
            assert caught.value.status == 403
        assert admin.set_priorities(project["id"], {ids[3]: 9.0}) == 1
        assert admin.set_priorities(project["id"], by_external_id={"r4": 8.0}) == 1
        progress = admin.progress(project["id"])
        assert progress["judgments"] == 1 and progress["complete_items"] == 1
        records = admin.export(project["id"], "records")
        assert len(records) == 1 and records[0]["type"] == "comparison"
        chosen = records[0]["response_a"] if records[0]["preference"] == "a" else records[0]["response_b"]
        assert chosen == left and records[0]["strength"] == 2 and records[0]["annotator"] == "ann1"
        canonical = admin.export(project["id"], "canonical")
        assert canonical[0]["time_spent_ms"] == 1500 and canonical[0]["answer"]["winner_position"] == 0
        quality = admin.quality(project["id"])
        assert quality["progress"]["judgments"] == 1
        assert [m["username"] for m in admin.add_members(project["id"], ["ann1"])] == ["ann1"]  # idempotent


def test_4xx_is_raised_at_once_with_the_endpoint_and_detail(app_server):
    sleep = Recorder()
    with FeedbackClient(app_server.url, "not-a-token", sleep=sleep) as stranger:
        with pytest.raises(ApiError) as caught:
            stranger.list_projects()
    assert caught.value.status == 401
    message = str(caught.value)
    assert "GET /api/v1/projects answered 401" in message and "sign in first" in message
    assert sleep.waits == []  # never retried
    with app_server.client(sleep=sleep) as admin:
        project = admin.create_project("p", overlap=1)
        with pytest.raises(ApiError) as caught:
            admin.add_items(project["id"], [{"type": "comparison", "prompt": "x", "response_a": "y"}])
        assert caught.value.status == 422
        assert "POST /api/v1/projects/1/items answered 422" in str(caught.value)
        assert any("items[0]" in d for d in caught.value.details)  # the server's errors, each as a detail line
        with pytest.raises(ApiError, match="404"):
            admin.get_project(999)
    assert sleep.waits == []


# ---------------------------------------------------------------------------------------------------------------------
# unreachable, restarts, 5xx


def test_unreachable_app_is_a_clear_error_after_the_retries():
    sleep = Recorder()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with FeedbackClient(url, "t", retries=3, backoff=0.5, sleep=sleep) as client:
        with pytest.raises(UserError) as caught:
            client.health()
    message = str(caught.value)
    assert f"feedback app at {url} unreachable after 4 tries" in message
    assert "ConnectError" in message and "Nothing was lost" in message
    assert sleep.waits == [0.5, 1.0, 2.0]  # exponential backoff between the 4 tries


def test_backoff_is_capped():
    sleep = Recorder()
    with FeedbackClient(f"http://127.0.0.1:{free_port()}", retries=5, backoff=1.0, max_backoff=3.0,
                        sleep=sleep) as client, pytest.raises(UserError):
        client.health()
    assert sleep.waits == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_retries_survive_a_server_restart(app_server):
    with app_server.client(backoff=0.2, retries=8) as admin:
        project = admin.create_project("restart", overlap=1)
        admin.add_items(project["id"], [comparison(i) for i in range(3)])
        app_server.stop()
        restarter = threading.Timer(1.0, app_server.start)
        restarter.start()
        started = time.monotonic()
        try:
            progress = admin.progress(project["id"])  # sent while the server is down; retried until it is back
        finally:
            restarter.join()
        assert time.monotonic() - started >= 0.9
        assert progress["items"] == 3  # nothing lost: the same database after the restart


def test_5xx_answers_are_retried(app_server):
    sleep = Recorder()
    transport = FailFirst(503, times=2)
    with app_server.client(transport=transport, sleep=sleep, backoff=0.1) as admin:
        assert admin.health()["ok"] is True
    assert sleep.waits == [0.1, 0.2]
    sleep = Recorder()
    with app_server.client(transport=FailFirst(503, times=10), retries=2, sleep=sleep) as admin:
        with pytest.raises(UserError, match=r"unreachable after 3 tries: GET /api/v1/health answered 503: "
                                            r"the database is busy"):
            admin.health()


# ---------------------------------------------------------------------------------------------------------------------
# lost answers: nothing recorded twice


def test_submit_under_retry_records_one_judgment(app_server):
    with app_server.client() as admin:
        admin.create_user("ann1", PASSWORD)
        project = admin.create_project("idem", overlap=1, members=["ann1"])
        admin.add_items(project["id"], [comparison(i) for i in range(2)])
        token = admin.user_token("ann1")
    transport = LoseAnswers(lambda r: r.url.path.endswith("/judgments"))
    sleep = Recorder()
    with FeedbackClient(app_server.url, token, transport=transport, sleep=sleep) as annotator:
        lease = annotator.lease(project["id"])
        judged = annotator.submit(project["id"], lease["item_id"], {"choice": "right", "strength": 3})
    assert transport.lost == [f"POST /api/v1/projects/{project['id']}/items/{lease['item_id']}/judgments"]
    assert len(sleep.waits) == 1
    assert judged["replayed"] is True  # the second try got the first try's judgment back
    with app_server.client() as admin:
        rows = admin.export(project["id"], "canonical")
        assert len(rows) == 1 and rows[0]["judgment_id"] == judged["id"]
        assert admin.progress(project["id"])["judgments"] == 1


def test_add_items_and_create_project_with_lost_answers_create_nothing_twice(app_server):
    transport = LoseAnswers(lambda r: r.method == "POST" and r.url.path.endswith(("/items", "/projects")),
                            times=3)
    sleep = Recorder()
    with FeedbackClient(app_server.url, app_server.token, transport=transport, sleep=sleep) as admin:
        project = admin.create_project("lost-answers", overlap=2)
        ids = admin.add_items(project["id"], [comparison(i) for i in range(5)], chunk_size=2)
        assert len(transport.lost) == 3  # the project and the first two chunks: each answer lost once
        assert [p["name"] for p in admin.list_projects()] == ["lost-answers"]
        items = admin.list_items(project["id"])
        assert [item["id"] for item in items] == ids
        assert [item["external_id"] for item in items] == [f"r{i}" for i in range(5)]


def test_create_user_with_a_lost_answer_returns_the_user(app_server):
    transport = LoseAnswers(lambda r: r.method == "POST" and r.url.path.endswith("/users"))
    with FeedbackClient(app_server.url, app_server.token, transport=transport, sleep=Recorder()) as admin:
        user = admin.create_user("ann9", PASSWORD)
        assert user["username"] == "ann9" and transport.lost
        assert [u["username"] for u in admin.list_users()].count("ann9") == 1


# ---------------------------------------------------------------------------------------------------------------------
# the real `alinea serve` subprocess


@pytest.mark.slow
def test_embedded_server_subprocess_serves_and_stops(tmp_path):
    import json
    import stat

    from alinea.loop.annotators import AnnotatorPool, AnnotatorSpec, run_pool
    from alinea.loop.server import start_server

    folder = tmp_path / "app"
    with start_server(folder) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with server.client() as admin:
            assert admin.health()["backend"] == "sqlite"
            assert admin.me() | {"id": 0} == {"id": 0, "username": "loop-admin", "role": "admin", "locale": None}
            project = admin.create_project("embedded", overlap=2)
            admin.add_items(project["id"], [comparison(i, a=f"answer {i} is good", b=f"answer {i}")
                                            for i in range(10)])
            # Simulated annotators through the real server: accounts, tokens, leases, judgments.
            pool = AnnotatorPool([AnnotatorSpec("a1"), AnnotatorSpec("a2")], lambda p, r: [len(x) for x in r])
            assert run_pool(admin, project["id"], pool, workers=2).judgments == 20
            records = admin.export(project["id"], "records")
            assert len(records) == 20 and all(r["preference"] == "a" for r in records)  # the longer one
        process = server.process
    assert process.poll() is not None  # stopped on leaving the block
    with contextlib.closing(socket.socket()) as sock:
        assert sock.connect_ex(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) != 0
    saved = folder / "admin.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    credentials = json.loads(saved.read_text())
    assert credentials["username"] == "loop-admin" and credentials["token"] == server.token
    # Started again on the same folder, with a token that no longer works: the same database, a fresh token.
    saved.write_text(json.dumps({**credentials, "token": "revoked-" + "x" * 40}))
    with start_server(folder) as again, again.client() as admin:
        assert [p["name"] for p in admin.list_projects()] == ["embedded"]
        assert admin.progress(project["id"])["judgments"] == 20
        assert again.token not in (server.token, "revoked-" + "x" * 40)
        assert json.loads(saved.read_text())["token"] == again.token


def test_connect_checks_the_server_and_the_admin_token(app_server):
    from alinea.loop.server import connect

    with connect(app_server.url, app_server.token) as admin:
        admin.create_user("ann1", PASSWORD)
        annotator_token = admin.user_token("ann1")
    with pytest.raises(UserError, match="belongs to 'ann1' \\(role annotator\\); the loop needs an admin's token"):
        connect(app_server.url, annotator_token)
    with pytest.raises(ApiError, match="401"):
        connect(app_server.url, "wrong")
    with pytest.raises(UserError, match="unreachable after 2 tries"):
        connect(f"http://127.0.0.1:{free_port()}", "t", retries=1, backoff=0.01)
