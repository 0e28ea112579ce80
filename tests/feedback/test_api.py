"""The JSON API end to end on SQLite and PostgreSQL: accounts, projects, items, leasing, judging, export, chat."""

from __future__ import annotations

import json

from alinea.data.records import parse_record

from .conftest import PASSWORD, Api, annotator, comparison_items, new_project


def test_token_from_password_and_me(client, admin):
    response = client.post("/api/v1/auth/token", json={"username": "admin", "password": PASSWORD})
    assert response.status_code == 201 and response.json()["token"].startswith("aln_")
    me = Api(client, response.json()["token"]).get("/me").json()
    assert me["username"] == "admin" and me["role"] == "admin"
    wrong = client.post("/api/v1/auth/token", json={"username": "admin", "password": "not the password"})
    assert wrong.status_code == 401


def test_users_crud_and_disable(client, admin):
    created = admin.post("/users", {"username": "ana", "password": PASSWORD, "role": "annotator"})
    assert created.status_code == 201
    assert admin.post("/users", {"username": "ana", "password": PASSWORD}).status_code == 409
    assert admin.post("/users", {"username": "bo", "password": "short"}).status_code == 422
    token = admin.post("/users/ana/tokens").json()["token"]
    assert Api(client, token).get("/me").status_code == 200
    assert admin.patch("/users/ana", {"active": False}).json()["active"] is False
    assert Api(client, token).get("/me").status_code == 401  # disabled: the token stops working at once
    names = [u["username"] for u in admin.get("/users").json()]
    assert names == ["admin", "ana"]


def test_project_import_lease_judge_export(app, client, admin):
    ana = annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], overlap=1, items=comparison_items(2))
    listed = ana.get("/projects").json()
    assert [p["id"] for p in listed] == [project] and listed[0]["progress"]["items"] == 2

    lease = ana.post(f"/projects/{project}/lease")
    assert lease.status_code == 200
    item = lease.json()
    assert set(item) == {"item_id", "project_id", "task_type", "messages", "responses", "language", "expires_at",
                         "guideline_version"}  # nothing about gold, meta or which model wrote what
    body = {"answer": {"choice": "left", "strength": 3}, "idempotency_key": "k-1", "time_spent_ms": 4200,
            "lease_next": True}
    first = ana.post(f"/projects/{project}/items/{item['item_id']}/judgments", body)
    assert first.status_code == 201
    judged = first.json()
    assert judged["replayed"] is False and judged["time_spent_ms"] == 4200 and judged["guideline_version"] == 1
    left_was = judged["shown_order"][0]
    assert judged["answer"]["preference"] == "ab"[left_was] and judged["answer"]["winner_position"] == 0
    assert judged["next"]["item_id"] != item["item_id"]

    retry = ana.post(f"/projects/{project}/items/{item['item_id']}/judgments", body)
    assert retry.status_code == 200 and retry.json()["id"] == judged["id"] and retry.json()["replayed"]

    records = admin.get(f"/projects/{project}/export", params={"format": "records"})
    assert records.status_code == 200 and records.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in records.text.splitlines()]
    assert len(rows) == 1
    record = parse_record(rows[0])  # a valid comparison record for the reward trainer
    assert record.annotator == "ana" and record.strength == 3
    assert record.chosen == item["responses"][0]  # the response shown on the left, which was chosen
    canonical = [json.loads(line) for line in admin.get(f"/projects/{project}/export").text.splitlines()]
    assert canonical[0]["shown_order"] == judged["shown_order"] and canonical[0]["time_spent_ms"] == 4200
    assert canonical[0]["guideline_version"] == 1 and canonical[0]["annotator"] == "ana"

    nothing = ana.post(f"/projects/{project}/items/{judged['next']['item_id']}/judgments",
                       {"answer": {"choice": "tie"}, "idempotency_key": "k-2", "lease_next": True})
    assert nothing.status_code == 201 and nothing.json()["next"] is None
    assert ana.post(f"/projects/{project}/lease").status_code == 204
    assert admin.get(f"/projects/{project}").json()["progress"]["complete_items"] == 2


def test_import_rejects_the_whole_batch_with_located_errors(client, admin):
    project = new_project(admin)
    items = comparison_items(3)
    items[1]["record"]["preference"] = "c"
    del items[2]["record"]["response_b"]
    response = admin.post(f"/projects/{project}/items", {"items": items})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        "items[1].record: preference: one of 'a', 'b', 'tie', found the string 'c'",
        "items[2].record: response_b: a non-empty string (the field is missing)",
    ]
    assert admin.get(f"/projects/{project}").json()["progress"]["items"] == 0  # nothing imported


def test_upload_jsonl_file_with_bad_lines(client, admin):
    project = new_project(admin)
    good = json.dumps(comparison_items(1)[0]["record"])
    bad = "\n".join([good, "{not json", json.dumps({"type": "prompt", "prompt": "only a prompt"}), ""])
    response = admin.post(f"/projects/{project}/items/upload", files={"file": ("batch.jsonl", bad.encode())})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors[0].startswith("batch.jsonl:2: json: valid JSON")
    assert errors[1].startswith("batch.jsonl:3: type: a record with 2 responses for a pairwise project")
    ok = admin.post(f"/projects/{project}/items/upload", files={"file": ("ok.jsonl", (good + "\n").encode())},
                    data={"gold": "true"})
    assert ok.status_code == 201 and len(ok.json()["ids"]) == 1
    item = admin.get(f"/projects/{project}/items").json()[0]
    assert item["is_gold"] and item["gold_answer"] == {"preference": "a", "strength": 1}


def test_spanish_and_malagasy_text_round_trip(app, client, admin):
    ana = annotator(app, client, "ana")
    texts = {"es": "¿Cuál es la capital de España? Señor, ñandú.", "mg": "Inona no renivohitr'i Madagasikara?"}
    items = [{"record": {"type": "thumb", "prompt": text, "response": f"{text} — valiny", "thumb": "up",
                         "language": lang}} for lang, text in texts.items()]
    project = new_project(admin, task_type="thumbs", members=["ana"], items=items, overlap=1)
    seen = {}
    for _ in texts:
        lease = ana.post(f"/projects/{project}/lease").json()
        seen[lease["language"]] = lease["messages"][0]["content"]
        assert ana.post(f"/projects/{project}/items/{lease['item_id']}/judgments",
                        {"answer": {"thumb": "down", "comment": "Tsy marina ilay valiny"},
                         "idempotency_key": lease["language"]}).status_code == 201
    assert seen == texts
    exported = admin.get(f"/projects/{project}/export", params={"format": "records"}).content.decode("utf-8")
    assert "Señor, ñandú" in exported and "Tsy marina ilay valiny" in exported


def test_priorities_skip_and_guideline_versions(app, client, admin):
    ana = annotator(app, client, "ana")
    project = new_project(admin, members=["ana"], overlap=1, items=comparison_items(3))
    changed = admin.post(f"/projects/{project}/priorities",
                         {"priorities": [{"external_id": "c2", "priority": 5.0}, {"item_id": 2, "priority": 1.0}]})
    assert changed.json() == {"changed": 2}
    assert admin.post(f"/projects/{project}/priorities",
                      {"priorities": [{"item_id": 999, "priority": 1.0}]}).status_code == 404
    first = ana.post(f"/projects/{project}/lease").json()
    assert first["messages"][0]["content"] == "Question 2?"  # the highest priority first
    assert ana.post(f"/projects/{project}/items/{first['item_id']}/skip", {"reason": "no idea"}).status_code == 204
    second = ana.post(f"/projects/{project}/lease").json()
    assert second["messages"][0]["content"] == "Question 1?"

    assert admin.post(f"/projects/{project}/guidelines", {"text": "Version 2: prefer short answers."}).json()[
        "version"] == 2
    judged = ana.post(f"/projects/{project}/items/{second['item_id']}/judgments",
                      {"answer": {"choice": "right", "strength": 1}, "idempotency_key": "g",
                       "guideline_version": 1}).json()
    assert judged["guideline_version"] == 1  # the version the annotator was shown
    versions = ana.get(f"/projects/{project}/guidelines").json()
    assert [v["version"] for v in versions] == [1, 2]
    canonical = admin.get(f"/projects/{project}/export").text.splitlines()
    skip_row = [json.loads(r) for r in canonical if '"kind": "skip"' in r][0]
    assert skip_row["reason"] == "no idea" and skip_row["annotator"] == "ana"


def test_every_task_type_accepts_its_answer(app, client, admin):
    ana = annotator(app, client, "ana")
    ranking = [{"record": {"type": "ranking", "prompt": "Rank", "responses": ["r0", "r1", "r2"], "ranks": [1, 2, 3]}}]
    single = [{"record": {"type": "demonstration", "prompt": "Say hi", "response": "Hi!"}}]
    prompt = [{"record": {"type": "prompt", "prompt": "Write a haiku"}}]
    answers = {
        "ranking": (ranking, {"ranks": [2, 1, 2], "none_acceptable": True}),
        "rating": (single, {"ratings": {"helpful": 6, "harmless": 7, "honest": 5, "follows_language": 7},
                            "flags": ["incomplete"], "comment": "ok"}),
        "thumbs": (single, {"thumb": "up"}),
        "demonstration": (prompt, {"turns": [{"role": "assistant", "content": "Old pond"},
                                             {"role": "user", "content": "Another?"},
                                             {"role": "assistant", "content": "Frog jumps in"}]}),
    }
    for task_type, (items, answer) in answers.items():
        project = new_project(admin, task_type=task_type, name=task_type, members=["ana"], items=items, overlap=1)
        lease = ana.post(f"/projects/{project}/lease").json()
        response = ana.post(f"/projects/{project}/items/{lease['item_id']}/judgments",
                            {"answer": answer, "idempotency_key": task_type})
        assert response.status_code == 201, (task_type, response.text)
        rows = admin.get(f"/projects/{project}/export", params={"format": "records"}).text.splitlines()
        record = parse_record(json.loads(rows[0]))
        assert record.record_type == {"ranking": "ranking", "rating": "rating", "thumbs": "thumb",
                                      "demonstration": "demonstration"}[task_type]
    demonstration = record
    assert demonstration.response == "Frog jumps in"
    assert [m.content for m in demonstration.messages] == ["Write a haiku", "Old pond", "Another?"]


def test_ranking_ranks_are_mapped_back_through_the_shown_order(app, client, admin):
    ana = annotator(app, client, "ana")
    items = [{"record": {"type": "ranking", "prompt": "Rank", "responses": ["r0", "r1", "r2", "r3"],
                         "ranks": [1, 2, 3, 4]}}]
    project = new_project(admin, task_type="ranking", members=["ana"], items=items, overlap=1)
    lease = ana.post(f"/projects/{project}/lease").json()
    shown = lease["responses"]
    ranks_by_text = {"r0": 4, "r1": 3, "r2": 1, "r3": 2}
    judged = ana.post(f"/projects/{project}/items/{lease['item_id']}/judgments",
                      {"answer": {"ranks": [ranks_by_text[text] for text in shown]}, "idempotency_key": "r"}).json()
    assert judged["answer"]["ranks"] == [4, 3, 1, 2]


def test_quality_and_aggregate(app, client, admin):
    names = ["ana", "ben", "cy"]
    apis = [annotator(app, client, name) for name in names]
    project = new_project(admin, members=names, overlap=3, items=comparison_items(2))
    for name, api in zip(names, apis, strict=True):
        for _ in range(2):
            lease = api.post(f"/projects/{project}/lease").json()
            # ana and ben prefer response a (its text starts with "A"), cy says tie
            left_is_a = lease["responses"][0].startswith("A")
            choice = "tie" if name == "cy" else ("left" if left_is_a else "right")
            api.post(f"/projects/{project}/items/{lease['item_id']}/judgments",
                     {"answer": {"choice": choice, "strength": 0 if choice == "tie" else 2},
                      "idempotency_key": f"{name}-{lease['item_id']}"})
    figures = admin.get(f"/projects/{project}/quality").json()
    assert figures["progress"]["judgments"] == 6 and figures["progress"]["complete_items"] == 2
    by_name = {a["annotator"]: a for a in figures["annotators"]}
    assert by_name["ana"]["judgments"] == 2 and by_name["cy"]["position_n"] == 0
    kappas = {tuple(k["annotators"]): k["kappa"] for k in figures["agreement"]["kappa"]}
    assert kappas[("ana", "ben")] is None  # both always 'a': expected agreement 1, kappa undefined
    labels = [json.loads(r) for r in admin.get(f"/projects/{project}/export",
                                               params={"format": "aggregate"}).text.splitlines()]
    assert [row["label"]["preference"] for row in labels] == ["a", "a"]
    assert all(abs(row["agreement"] - 2 / 3) < 1e-9 for row in labels)
    assert ana_cannot_read_quality(apis[0], project)


def ana_cannot_read_quality(ana: Api, project: int) -> bool:
    return ana.get(f"/projects/{project}/quality").status_code == 403


def test_chat_two_samples_pick_and_continue(app, client, admin):
    ana = annotator(app, client, "ana")
    items = [{"record": {"type": "prompt", "prompt": "Tell me a joke"}}]
    project = new_project(admin, task_type="chat", members=["ana"], items=items)
    started = ana.post(f"/projects/{project}/chats", {})
    assert started.status_code == 201 and started.json()["messages"] == []
    chat_id = started.json()["id"]
    answered = ana.post(f"/chats/{chat_id}/messages", {"content": "Bonjour !"}).json()
    assert len(answered["pending"]) == 2 and all("Bonjour !" in s for s in answered["pending"])
    assert ana.post(f"/chats/{chat_id}/messages", {"content": "again"}).status_code == 409  # pick first
    picked = ana.post(f"/chats/{chat_id}/pick", {"choice": "right", "strength": 3, "thumb": "up"}).json()
    assert picked["pending"] is None and picked["turns"] == 1
    assert picked["messages"][-1] == {"role": "assistant", "content": answered["pending"][1]}
    seeded = ana.post(f"/projects/{project}/chats", {"item_id": 1}).json()
    assert seeded["messages"][0]["content"] == "Tell me a joke" and len(seeded["pending"]) == 2
    rows = [json.loads(r) for r in admin.get(f"/projects/{project}/export",
                                             params={"format": "records"}).text.splitlines()]
    comparison, thumb = (parse_record(r) for r in rows)
    assert comparison.chosen == answered["pending"][1] and comparison.strength == 3
    assert thumb.thumb == "up" and thumb.response == answered["pending"][1]
    other = annotator(app, client, "ben")
    assert other.get(f"/chats/{chat_id}").status_code == 404  # someone else's conversation


def test_openapi_spec_lists_the_api(client):
    spec = client.get("/api/v1/openapi.json").json()
    assert spec["info"]["title"] == "alinea feedback"
    assert "/api/v1/projects/{project_id}/items/{item_id}/judgments" in spec["paths"]
    assert not any(path.startswith("/login") for path in spec["paths"])  # pages are not API


def test_upload_that_is_not_gzip_is_a_clear_422(client, admin):
    project = new_project(admin)
    response = admin.post(f"/projects/{project}/items/upload", files={"file": ("batch.jsonl.gz", b"not gzip at all")})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("batch.jsonl.gz is not a valid gzip file")


def test_overlap_changes_reopen_or_close_items(app, client, admin):
    ana, ben = annotator(app, client, "ana"), annotator(app, client, "ben")
    project = new_project(admin, members=["ana", "ben"], overlap=1, items=comparison_items(1))
    lease = ana.post(f"/projects/{project}/lease").json()
    ana.post(f"/projects/{project}/items/{lease['item_id']}/judgments", {"answer": {"choice": "tie"},
                                                                        "idempotency_key": "a"})
    assert ben.post(f"/projects/{project}/lease").status_code == 204  # complete at overlap 1
    assert admin.patch(f"/projects/{project}", {"overlap": 2}).json()["overlap"] == 2
    assert ben.post(f"/projects/{project}/lease").status_code == 200  # reopened for a second annotator
    assert admin.get(f"/projects/{project}").json()["progress"]["complete_items"] == 0
    admin.patch(f"/projects/{project}", {"overlap": 1})
    assert admin.get(f"/projects/{project}").json()["progress"]["complete_items"] == 1


def test_members_and_language_setting(app, client, admin):
    annotator(app, client, "ana")
    ben = annotator(app, client, "ben")
    project = new_project(admin, members=["ana"])
    assert [u["username"] for u in admin.post(f"/projects/{project}/members", {"usernames": ["ben"]}).json()] == [
        "ana", "ben"]
    assert ben.get(f"/projects/{project}").status_code == 200
    assert admin.client.delete(f"/api/v1/projects/{project}/members/ben", headers=admin.headers).status_code == 204
    assert ben.get(f"/projects/{project}").status_code == 403
    assert admin.post(f"/projects/{project}/members", {"usernames": ["ghost"]}).status_code == 404
    assert ben.patch("/me", {"locale": "fr"}).json()["locale"] == "fr"
    assert ben.patch("/me", {"locale": "xx"}).status_code == 422
