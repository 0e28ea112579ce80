"""The judgments route's fast lane (routes/fast.py) answers exactly as FastAPI's route, and leaves every request it
cannot take as it is to FastAPI (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from alinea.feedback.routes import fast

from .conftest import annotator, comparison_items, new_project


@pytest.fixture
def lanes(monkeypatch):
    """Which lane answered each request: 'fast' when the fast lane's work gave the answer (or raised the error it
    answers with), else 'fastapi' (never reached, or handed over after looking an unknown token up)."""
    taken = []
    real = fast.run_db_with

    async def counting(state, work):
        try:
            done = await real(state, work)
        except Exception:
            taken.append(True)
            raise
        if done is not None:
            taken.append(True)
        return done

    monkeypatch.setattr(fast, "run_db_with", counting)

    def lane_of(call):
        before = len(taken)
        response = call()
        return ("fast" if len(taken) > before else "fastapi"), response

    return lane_of


@pytest.fixture
def fastapi_only(monkeypatch):
    """Run a call with the fast lane taking nothing (every request to FastAPI's route)."""
    def run(call):
        with monkeypatch.context() as patch:
            patch.setattr(fast.FastJudgments, "_token", lambda self, scope: None)
            return call()

    return run


def _judge(api, project, item_id, body, **kw):
    return api.post(f"/projects/{project}/items/{item_id}/judgments", body, **kw)


def _strip_times(answer: dict) -> dict:
    answer = {k: v for k, v in answer.items() if k != "created_at"}
    if answer.get("next"):
        answer["next"] = {k: v for k, v in answer["next"].items() if k != "expires_at"}
    return answer


def test_fast_lane_answers_as_fastapi(app, client, admin, lanes, fastapi_only):
    ana, bo = annotator(app, client, "ana"), annotator(app, client, "bo")
    project = new_project(admin, members=["ana", "bo"], overlap=2, items=comparison_items(4))
    ana_item = ana.post(f"/projects/{project}/lease").json()["item_id"]  # a FastAPI request: the token is checked
    bo_item = bo.post(f"/projects/{project}/lease").json()["item_id"]
    body = {"answer": {"choice": "right", "strength": 2}, "idempotency_key": "k-ana", "lease_next": True,
            "time_spent_ms": 1500}
    lane, first = lanes(lambda: _judge(ana, project, ana_item, body))
    assert (lane, first.status_code) == ("fast", 201)
    assert first.headers["content-security-policy"]  # BodyLimit's headers are on fast answers too
    lane, other = lanes(lambda: fastapi_only(lambda: _judge(bo, project, bo_item, {**body, "idempotency_key": "k-bo"})))
    assert (lane, other.status_code) == ("fastapi", 201)
    mine, theirs = _strip_times(first.json()), _strip_times(other.json())
    assert set(mine) == set(theirs) and set(mine["next"]) == set(theirs["next"])
    assert (mine["answer"], mine["time_spent_ms"], mine["replayed"]) == (theirs["answer"], 1500, False)

    # the same request in each lane, the same answer: a retry, then refusals
    cases = [
        (ana_item, body, 200),  # a retry: the first judgment again
        (ana_item, {**body, "idempotency_key": "k-new"}, 409),  # judged already
        (999_999, {**body, "idempotency_key": "k-404"}, 404),  # no such item
        (mine["next"]["item_id"], {**body, "idempotency_key": "k-bad", "answer": {"choice": "up"}}, 422),
        (mine["next"]["item_id"], {**body, "idempotency_key": "k-ver", "guideline_version": 7}, 422),
    ]
    for item_id, case, status in cases:
        lane_fast, via_fast = lanes(lambda: _judge(ana, project, item_id, case))  # noqa: B023
        lane_slow, via_fastapi = lanes(lambda: fastapi_only(lambda: _judge(ana, project, item_id, case)))  # noqa: B023
        assert (lane_fast, lane_slow) == ("fast", "fastapi")
        assert via_fast.status_code == via_fastapi.status_code == status, via_fast.text
        assert _strip_times(via_fast.json()) == _strip_times(via_fastapi.json())
    outsider = annotator(app, client, "cy")
    lane, refused = lanes(lambda: _judge(outsider, project, ana_item, {**body, "idempotency_key": "k-cy"}))
    assert (lane, refused.status_code) == ("fast", 403)
    assert refused.json()["detail"] == f"you are not assigned to project {project}"


@pytest.mark.parametrize(("body", "status"), [
    # pydantic converts these (lax mode): FastAPI accepts them, the fast lane leaves them to it
    ({"answer": {"choice": "left", "strength": 1}, "idempotency_key": "k", "time_spent_ms": "5"}, 201),
    ({"answer": {"choice": "left", "strength": 1}, "idempotency_key": "k", "lease_next": 1}, 201),
    # refused by FastAPI, each problem located
    ({"answer": {"choice": "left", "strength": 1}, "idempotency_key": "k", "extra": True}, 422),
    ({"answer": {"choice": "left", "strength": 1}, "idempotency_key": ""}, 422),
    ({"answer": {"choice": "left\x00"}, "idempotency_key": "k"}, 422),
    ({"answer": {"choice": "left"}, "idempotency_key": "k", "time_spent_ms": -1}, 422),
    ({"idempotency_key": "k"}, 422),
    ([1, 2], 422),
])
def test_bodies_fastapi_would_convert_or_refuse_go_to_fastapi(app, client, admin, lanes, body, status):
    ana = annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], items=comparison_items(1))
    item_id = ana.post(f"/projects/{project}/lease").json()["item_id"]
    lane, response = lanes(lambda: _judge(ana, project, item_id, body))
    assert (lane, response.status_code) == ("fastapi", status), response.text
    if status == 201:
        assert response.json()["replayed"] is False
        if "time_spent_ms" in body:
            assert response.json()["time_spent_ms"] == 5
    else:
        assert response.json()["errors"]


def test_requests_without_a_valid_token_go_to_fastapi(app, client, admin, lanes):
    ana = annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], items=comparison_items(1))
    item_id = ana.post(f"/projects/{project}/lease").json()["item_id"]
    body = {"answer": {"choice": "left", "strength": 1}, "idempotency_key": "k"}
    lane, response = lanes(lambda: client.post(f"/api/v1/projects/{project}/items/{item_id}/judgments", json=body))
    assert (lane, response.status_code) == ("fastapi", 401)
    lane, response = lanes(lambda: client.post(f"/api/v1/projects/{project}/items/{item_id}/judgments",
                                               json=body, headers={"authorization": "Bearer aln_not-a-token"}))
    assert (lane, response.status_code) == ("fastapi", 401)
    assert response.json()["detail"].startswith("sign in first")
    lane, response = lanes(lambda: client.post(
        f"/api/v1/projects/{project}/items/{item_id}/judgments", content=b'{"answer": {}, "idempotency_key": "k"}',
        headers={**ana.headers, "content-type": "text/plain"}))
    assert lane == "fastapi" and response.status_code == 422
    lane, response = lanes(lambda: client.post(
        f"/api/v1/projects/{project}/items/{item_id}/judgments", content=b'{"answer": {', headers=ana.headers))
    assert lane == "fastapi" and response.status_code == 422  # not JSON: FastAPI words the error
    lane, response = lanes(lambda: _judge(ana, project, item_id, body))
    assert (lane, response.status_code) == ("fast", 201)


def test_body_limit_applies_to_the_fast_lane(app, client, admin, lanes):
    ana = annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], items=comparison_items(1))
    item_id = ana.post(f"/projects/{project}/lease").json()["item_id"]
    huge = {"answer": {"comment": "x" * (app.state.settings.max_body_bytes + 1)}, "idempotency_key": "k"}
    lane, response = lanes(lambda: _judge(ana, project, item_id, huge))
    assert lane == "fastapi" and response.status_code == 413  # refused before any lane reads it


@pytest.mark.parametrize("raw", [
    b'{"answer": {"choice": "left", "strength": 1}, "idempotency_key": "k\\ud800"}',  # a lone surrogate
    b'{"answer": {"choice\\udc00": "left"}, "idempotency_key": "k"}',
])
def test_bodies_with_lone_surrogates_go_to_fastapi(app, client, admin, lanes, raw):
    """json.loads lets a lone UTF-16 surrogate through; pydantic refuses it and no driver could store it."""
    ana = annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], items=comparison_items(1))
    item_id = ana.post(f"/projects/{project}/lease").json()["item_id"]
    lane, response = lanes(lambda: client.post(f"/api/v1/projects/{project}/items/{item_id}/judgments", content=raw,
                                               headers={**ana.headers, "content-type": "application/json"}))
    assert (lane, response.status_code) == ("fastapi", 422), response.text


def test_a_lone_surrogate_in_a_field_name_is_a_422_not_a_500(app, client, admin):
    """Error messages quote field names; one with a lone surrogate (from a JSON escape) cannot be encoded as is."""
    ana = annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], items=comparison_items(1))
    item_id = ana.post(f"/projects/{project}/lease").json()["item_id"]
    raw = b'{"answer": {"choice\\udc00": "left"}, "idempotency_key": "k"}'  # an unknown answer field
    response = client.post(f"/api/v1/projects/{project}/items/{item_id}/judgments", content=raw,
                           headers={**ana.headers, "content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "choice\ufffd" in response.json()["detail"], response.json()


def test_the_fast_lane_checks_a_token_it_has_not_seen_and_refuses_a_disabled_user(app, client, admin, lanes):
    """An unchecked token is looked up by the fast lane itself (no detour through FastAPI); once its user is
    disabled, the token is refused (401, by FastAPI) even though it was trusted a moment before."""
    ana = annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], overlap=1, items=comparison_items(3))
    item_id = ana.post(f"/projects/{project}/lease").json()["item_id"]
    app.state.token_cache.clear()
    assert app.state.token_cache.get(ana.headers["authorization"].split()[1]) is None
    body = {"answer": {"choice": "left", "strength": 1}, "idempotency_key": "k1", "lease_next": True}
    lane, response = lanes(lambda: _judge(ana, project, item_id, body))
    assert (lane, response.status_code) == ("fast", 201), response.text
    token = ana.headers["authorization"].split()[1]
    assert app.state.token_cache.get(token).username == "ana"  # cached for the next request
    next_item = response.json()["next"]["item_id"]
    assert admin.patch("/users/ana", {"active": False}).status_code == 200  # clears this process's cache
    lane, response = lanes(lambda: _judge(ana, project, next_item, {**body, "idempotency_key": "k2"}))
    assert (lane, response.status_code) == ("fastapi", 401)
    assert app.state.token_cache.get(token) is None
