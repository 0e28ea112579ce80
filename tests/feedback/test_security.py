"""Bad input and attack: authentication, roles, other projects, CSRF, escaping, oversize bodies, odd values."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from alinea.feedback.app import create_app

from .conftest import PASSWORD, Api, annotator, comparison_items, make_user, new_project

XSS_PROMPT = "<script>alert('prompt')</script> & more"
XSS_RESPONSE = '<img src=x onerror="alert(1)">'


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def login(client, username: str, password: str = PASSWORD, next_path: str = "/"):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf_of(page.text),
                                       "next": next_path}, follow_redirects=False)


def test_unauthenticated_api_gets_401_and_pages_redirect_to_login(client, admin):
    project = new_project(admin, items=comparison_items(1))
    assert client.get("/api/v1/projects").status_code == 401
    assert client.post(f"/api/v1/projects/{project}/lease").status_code == 401
    assert client.get("/api/v1/projects", headers={"authorization": "Bearer aln_not-a-token"}).status_code == 401
    page = client.get(f"/projects/{project}", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == f"/login?next=%2Fprojects%2F{project}"


def test_annotators_cannot_use_admin_routes_or_other_projects(app, client, admin):
    ana = annotator(app, client, "ana")
    mine = new_project(admin, name="mine", members=["ana"], items=comparison_items(1))
    theirs = new_project(admin, name="theirs", items=comparison_items(1))
    assert ana.post("/projects", {"name": "x", "task_type": "pairwise"}).status_code == 403
    assert ana.get("/users").status_code == 403
    assert ana.get(f"/projects/{mine}/export").status_code == 403
    assert ana.post(f"/projects/{mine}/items", {"items": comparison_items(1)}).status_code == 403
    assert ana.get(f"/projects/{theirs}").status_code == 403
    assert ana.post(f"/projects/{theirs}/lease").status_code == 403
    other_item = admin.get(f"/projects/{theirs}/items").json()[0]["id"]
    assert ana.post(f"/projects/{theirs}/items/{other_item}/judgments",
                    {"answer": {"choice": "tie"}, "idempotency_key": "x"}).status_code == 403
    # An item of another project through a project the annotator does belong to: not found there.
    assert ana.post(f"/projects/{mine}/items/{other_item}/judgments",
                    {"answer": {"choice": "tie"}, "idempotency_key": "y"}).status_code == 404
    assert [p["name"] for p in ana.get("/projects").json()] == ["mine"]
    login(client, "ana")
    assert client.get("/admin").status_code == 403
    assert client.get(f"/projects/{theirs}").status_code == 403


def test_viewers_read_but_do_not_annotate(app, client, admin):
    database = app.state.database
    make_user(database, "vic", "viewer")
    from .conftest import make_token

    vic = Api(client, make_token(database, "vic"))
    project = new_project(admin, members=["vic"], items=comparison_items(1))
    assert vic.post(f"/projects/{project}/lease").status_code == 403
    assert vic.get(f"/projects/{project}/quality").status_code == 200
    assert vic.get(f"/projects/{project}/export").status_code == 200


def test_forms_need_a_valid_csrf_token(app, client, admin):
    annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], items=comparison_items(1))
    page = client.get("/login")
    without = client.post("/login", data={"username": "ana", "password": PASSWORD}, follow_redirects=False)
    assert without.status_code == 403
    wrong = client.post("/login", data={"username": "ana", "password": PASSWORD, "csrf_token": "0" * 64},
                        follow_redirects=False)
    assert wrong.status_code == 403
    ok = client.post("/login", data={"username": "ana", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
                     follow_redirects=False)
    assert ok.status_code == 303
    task = client.get(f"/projects/{project}")
    item = re.search(r'/items/(\d+)/judge', task.text).group(1)
    fields = {"choice": "left", "strength": "2", "idempotency_key": "k"}
    refused = client.post(f"/projects/{project}/items/{item}/judge", data=fields, follow_redirects=False)
    assert refused.status_code == 403
    accepted = client.post(f"/projects/{project}/items/{item}/judge",
                           data={**fields, "csrf_token": csrf_of(task.text)}, follow_redirects=False)
    assert accepted.status_code == 303
    # The JSON API used with the session cookie (the pages' scripts) needs the token in a header.
    assert client.post(f"/api/v1/projects/{project}/lease").status_code == 403
    assert client.post(f"/api/v1/projects/{project}/lease",
                       headers={"x-csrf-token": csrf_of(task.text)}).status_code in (200, 204)


def test_session_cookie_flags_and_password_hashing(app, client, admin):
    annotator(app, client, "ana")
    response = login(client, "ana")
    cookie = response.headers["set-cookie"]
    assert "alinea_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    from alinea.feedback.models import User

    with app.state.database.read() as session:
        stored = session.query(User).filter_by(username="ana").one().password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert login(client, "ana", next_path="//evil.example/steal").headers["location"] == "/"
    assert login(client, "ana", password="wrong password").status_code == 401


def test_logout_ends_the_session(app, client, admin):
    annotator(app, client, "ana")
    login(client, "ana")
    home = client.get("/")
    assert home.status_code == 200
    client.post("/logout", data={"csrf_token": csrf_of(home.text)})
    assert client.get("/", follow_redirects=False).status_code == 303


def test_html_in_prompts_responses_and_guidelines_is_escaped(app, client, admin):
    annotator(app, client, "ana")
    items = [{"record": {"type": "comparison", "prompt": XSS_PROMPT, "response_a": XSS_RESPONSE,
                         "response_b": "plain", "preference": "a"}}]
    guidelines = "# Rules\n<script>alert('guidelines')</script>\n[click](javascript:alert(1))"
    project = new_project(admin, members=["ana"], items=items, guidelines=guidelines)
    login(client, "ana")
    page = client.get(f"/projects/{project}").text
    body = page.split("</head>", 1)[1]
    assert "<script" not in body and "<img" not in body and 'href="javascript:' not in body
    assert "&lt;script&gt;alert(&#39;prompt&#39;)&lt;/script&gt; &amp; more" in body
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in body
    assert "<h1>Rules</h1>" in body  # markdown still renders
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]


def test_oversize_bodies_are_refused(settings):
    small = create_app(replace(settings, max_body_bytes=2_000))
    with TestClient(small) as client:
        big = {"items": comparison_items(1) * 0 + [{"record": {"type": "prompt", "prompt": "x" * 5_000}}]}
        response = client.post("/api/v1/projects/1/items", json=big)
        assert response.status_code == 413
        assert "larger than 2000 bytes" in response.json()["detail"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b"x" * 500

        streamed = client.post("/api/v1/auth/token", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert client.post("/api/v1/auth/token", content=b"{}", headers={"content-length": "abc"}).status_code == 400


@pytest.mark.parametrize("path", ["/projects/99999999999999", "/projects/0", "/projects/-1",
                                  "/projects/abc"])
def test_out_of_range_ids_are_422(client, admin, path):
    assert admin.get(path).status_code == 422


def test_nul_characters_and_non_finite_numbers_are_422(client, admin):
    project = new_project(admin)
    nul = {"items": [{"record": {"type": "comparison", "prompt": "a\u0000b", "response_a": "x", "response_b": "y",
                                 "preference": "a"}}]}
    assert admin.post(f"/projects/{project}/items", nul).status_code == 422
    assert admin.post("/projects", {"name": "bad\u0000name", "task_type": "pairwise"}).status_code == 422
    raw = b'{"priorities": [{"item_id": 1, "priority": NaN}]}'
    response = admin.client.post(f"/api/v1/projects/{project}/priorities", content=raw,
                                 headers={**admin.headers, "content-type": "application/json"})
    assert response.status_code == 422


def test_error_bodies_never_leak_a_traceback(client, admin):
    response = admin.post("/projects/1/items/1/judgments", {"answer": {}, "idempotency_key": "k"})
    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"} and "Traceback" not in response.text


def test_accounts_without_password_use_tokens_only(app, client):
    from alinea.feedback import crud

    with app.state.database.write() as session:
        bot = crud.create_user(session, username="loop-bot", password=None, role="annotator")
        token = crud.create_api_token(session, user_id=bot.id)
    assert Api(client, token).get("/me").json()["username"] == "loop-bot"
    for attempt in ("", "!", "anything at all"):
        assert login(client, "loop-bot", password=attempt).status_code == 401
        assert client.post("/api/v1/auth/token", json={"username": "loop-bot", "password": attempt}).status_code == 401


def test_model_identities_and_gold_status_never_reach_annotators(app, client, admin):
    ana = annotator(app, client, "ana")
    items = [{"record": {"type": "comparison", "prompt": "Q", "response_a": "A", "response_b": "B",
                         "preference": "a", "id": "secret-record-id"},
              "meta": {"models": ["policy-ppo-round-3", "sft-baseline"]}}]
    project = new_project(admin, members=["ana"], items=items, gold_rate=1.0)
    admin.post(f"/projects/{project}/items", {"items": comparison_items(1), "gold": True})
    lease = ana.post(f"/projects/{project}/lease")
    shown = ana.get(f"/projects/{project}").json()
    assert shown["gold_rate"] is None and "gold_items" not in shown["progress"]
    for text in (lease.text, ana.get(f"/projects/{project}").text):
        assert "policy-ppo-round-3" not in text and "secret-record-id" not in text and "gold_answer" not in text
    login(client, "ana")
    page = client.get(f"/projects/{project}").text
    assert "policy-ppo-round-3" not in page and "sft-baseline" not in page
    assert admin.get(f"/projects/{project}/items").json()[0]["meta"]["models"][0] == "policy-ppo-round-3"


def test_token_cache_trusts_a_token_for_at_most_its_ttl_with_spread_expiries(monkeypatch):
    from alinea.feedback.routes import deps
    from alinea.feedback.security import Principal

    clock = [1000.0]
    monkeypatch.setattr(deps.time, "monotonic", lambda: clock[0])
    cache = deps.TokenCache(ttl_s=4.0)
    who = Principal(user_id=1, username="ana", role="annotator", locale="en", via="token")
    tokens = [f"aln_{i}" for i in range(200)]
    import random
    before = random.getstate()
    for token in tokens:
        cache.put(token, who)
    assert random.getstate() == before  # the spread draws from the cache's own generator, not the process-wide one
    clock[0] += 2.99  # under 3/4 of the ttl: every entry still trusted
    assert all(cache.get(token) == who for token in tokens)
    clock[0] += 0.5  # 3.49 s: some have fallen due, not all (the expiries are spread over [3, 4] s)
    alive = sum(cache.get(token) is not None for token in tokens)
    assert 20 < alive < 180, alive
    clock[0] += 0.52  # past the ttl: none is trusted any longer
    assert all(cache.get(token) is None for token in tokens)
    assert cache.get("aln_never-put") is None
