"""The server-rendered pages: every task form works without JavaScript, admin pages, languages."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import annotator, comparison_items, new_project
from .test_security import csrf_of, login


def item_of(html: str) -> str:
    return re.search(r"/items/(\d+)/judge", html).group(1)


def judge(client, project: int, fields: dict, follow: bool = False):
    page = client.get(f"/projects/{project}")
    data = {"csrf_token": csrf_of(page.text), "idempotency_key": re.search(
        r'name="idempotency_key" value="([0-9a-f]+)"', page.text).group(1), "time_spent_ms": "1500", **fields}
    return page, client.post(f"/projects/{project}/items/{item_of(page.text)}/judge", data=data,
                             follow_redirects=follow)


def judgments(admin, project: int) -> list[dict]:
    return [json.loads(line) for line in admin.get(f"/projects/{project}/export").text.splitlines()
            if '"kind": "judgment"' in line]


@pytest.fixture
def ana_logged_in(app, client, admin):
    annotator(app, client, "ana")
    login(client, "ana")
    return client


def test_pairwise_form(ana_logged_in, admin):
    client = ana_logged_in
    project = new_project(admin, members=["ana"], items=comparison_items(2), overlap=1)
    page, done = judge(client, project, {"choice": "right", "strength": "3", "both_bad": "on"})
    assert 'data-key="1"' in page.text and 'data-key="t"' in page.text  # keyboard shortcuts are declared
    assert "Be kind." in page.text  # guidelines beside the task
    assert done.status_code == 303 and done.headers["location"] == f"/projects/{project}"
    row = judgments(admin, project)[0]
    assert row["answer"]["winner_position"] == 1 and row["answer"]["strength"] == 3 and row["answer"]["both_bad"]
    assert row["time_spent_ms"] == 1500


def test_a_wrong_form_shows_the_same_item_with_the_problem(ana_logged_in, admin):
    client = ana_logged_in
    project = new_project(admin, members=["ana"], items=comparison_items(2), overlap=1)
    page, refused = judge(client, project, {"choice": "sideways"})
    assert refused.status_code == 422
    assert "answer.choice" in refused.text and item_of(refused.text) == item_of(page.text)
    assert judgments(admin, project) == []


def test_ranking_rating_thumbs_demonstration_forms(ana_logged_in, admin):
    client = ana_logged_in
    ranking = new_project(admin, task_type="ranking", name="rank", members=["ana"], items=[
        {"record": {"type": "ranking", "prompt": "Rank", "responses": ["x", "y", "z"], "ranks": [1, 2, 3]}}])
    page, done = judge(client, ranking, {"rank_0": "1", "rank_1": "1", "rank_2": "3", "none_acceptable": "on"})
    assert done.status_code == 303 and "draggable" in page.text
    shown = re.findall(r'<div class="text">(.)</div>', page.text)  # the responses in shown order
    ranks = judgments(admin, ranking)[0]["answer"]["ranks"]
    assert [ranks["xyz".index(text)] for text in shown] == [1, 1, 3]

    single = [{"record": {"type": "demonstration", "prompt": "Say hi", "response": "Hi!"}}]
    rating = new_project(admin, task_type="rating", name="rate", members=["ana"], items=single,
                         aspects=["helpful", "honest"], flags=["wrong_language"])
    _, done = judge(client, rating, {"rating_helpful": "6", "rating_honest": "7", "flag_wrong_language": "on",
                                     "comment": "fine"})
    assert done.status_code == 303
    assert judgments(admin, rating)[0]["answer"] == {"ratings": {"helpful": 6, "honest": 7},
                                                    "flags": ["wrong_language"], "comment": "fine"}

    thumbs = new_project(admin, task_type="thumbs", name="thumbs", members=["ana"], items=single)
    _, done = judge(client, thumbs, {"thumb": "down", "comment": "too short"})
    assert judgments(admin, thumbs)[0]["answer"] == {"thumb": "down", "comment": "too short"}

    edit = new_project(admin, task_type="demonstration", name="edit", members=["ana"], items=single)
    page, done = judge(client, edit, {"turn_0": "Hello there!", "turn_1": "How are you?", "turn_2": "Fine, thanks."})
    assert "Hi!</textarea>" in page.text  # the model answer to edit
    answer = judgments(admin, edit)[0]["answer"]
    assert answer["edited"] is True and [t["content"] for t in answer["turns"]] == [
        "Hello there!", "How are you?", "Fine, thanks."]


def test_skip_form_and_nothing_left(ana_logged_in, admin):
    client = ana_logged_in
    project = new_project(admin, members=["ana"], items=comparison_items(1), overlap=1)
    page = client.get(f"/projects/{project}")
    skipped = client.post(f"/projects/{project}/items/{item_of(page.text)}/skip",
                          data={"csrf_token": csrf_of(page.text), "reason": "skip_other", "reason_text": "broken"},
                          follow_redirects=True)
    assert "Nothing left for you" in skipped.text


def test_french_ui_from_the_browser_and_from_the_user_setting(ana_logged_in, admin):
    client = ana_logged_in
    project = new_project(admin, members=["ana"], items=comparison_items(1))
    french = client.get(f"/projects/{project}", headers={"accept-language": "fr-FR,fr;q=0.9,en;q=0.5"})
    assert "Quelle réponse est la meilleure ?" in french.text and 'lang="fr"' in french.text
    english = client.get(f"/projects/{project}", headers={"accept-language": "de, en;q=0.5"})
    assert "Which answer is better?" in english.text
    client.post("/settings/language", data={"csrf_token": csrf_of(english.text), "language": "fr",
                                            "next": f"/projects/{project}"})
    assert "Consignes d&#39;annotation" in client.get(f"/projects/{project}").text  # no header needed any more


def test_admin_pages_create_import_assign_and_show_quality(app, client, admin):
    annotator(app, client, "ana")
    login(client, "admin")
    home = client.get("/admin")
    assert home.status_code == 200
    created = client.post("/admin/projects", data={
        "csrf_token": csrf_of(home.text), "name": "from the form", "task_type": "pairwise", "overlap": "2",
        "gold_rate": "0.1", "lease_seconds": "600", "guidelines": "# Pick the kinder answer"}, follow_redirects=False)
    assert created.status_code == 303
    dashboard_url = created.headers["location"]
    dashboard = client.get(dashboard_url)
    assert "Pick the kinder answer" in dashboard.text and "Krippendorff" in dashboard.text
    lines = "\n".join(json.dumps(item["record"]) for item in comparison_items(3)) + "\n"
    imported = client.post(f"{dashboard_url}/items", data={"csrf_token": csrf_of(dashboard.text)},
                           files={"file": ("items.jsonl", lines.encode())}, follow_redirects=False)
    assert imported.status_code == 303
    bad = client.post(f"{dashboard_url}/items", data={"csrf_token": csrf_of(dashboard.text)},
                      files={"file": ("bad.jsonl", b'{"type": "comparison"}\n')})
    assert bad.status_code == 422 and "bad.jsonl:1: response_a: a non-empty string (the field is missing)" in bad.text
    client.post(f"{dashboard_url}/members", data={"csrf_token": csrf_of(dashboard.text), "usernames": ["ana"]})
    dashboard = client.get(dashboard_url)
    assert "0 of 3 items complete" in dashboard.text
    assert re.search(r"<h2>Annotators assigned</h2>\s*<p>ana</p>", dashboard.text)
    assert [p["name"] for p in admin.get("/projects").json()] == ["from the form"]
    assert admin.get("/projects/1/members").json()[0]["username"] == "ana"
    made = client.post("/admin/users", data={"csrf_token": csrf_of(home.text), "username": "ben",
                                             "password": "a long password", "role": "viewer"},
                       follow_redirects=False)
    assert made.status_code == 303
    client.post("/admin/users/ben/active", data={"csrf_token": csrf_of(home.text), "active": "0"})
    users = {u["username"]: u for u in admin.get("/users").json()}
    assert users["ben"]["role"] == "viewer" and users["ben"]["active"] is False


def test_static_files_and_chat_page(ana_logged_in, admin):
    client = ana_logged_in
    project = new_project(admin, task_type="chat", members=["ana"])
    page = client.get(f"/projects/{project}")
    assert "data-chat" in page.text and 'src="/static/app.js"' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "keydown" in script.text
    assert client.get("/static/app.css").status_code == 200
