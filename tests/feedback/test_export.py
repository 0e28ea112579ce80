"""Exports: TRL rows with margins, rankings expanded to pairs, aggregated labels (majority and weighted)."""

from __future__ import annotations

import json

import pytest

from alinea.data.exporters import export_trl
from alinea.data.records import parse_record
from alinea.feedback import aggregate

from .conftest import annotator, new_project


def test_aggregate_majority_and_reliability_weighted():
    votes = [("ana", {"preference": "a", "strength": 3}), ("ben", {"preference": "b", "strength": 1}),
             ("cy", {"preference": "b", "strength": 2})]
    majority = aggregate.aggregate_item("pairwise", votes)
    assert majority["label"] == {"preference": "b", "strength": 2}  # round((1 + 2) / 2) = 2 (half to even)
    assert majority["agreement"] == pytest.approx(2 / 3)
    # ana answered 8 of 8 gold items right: (8+1)/(8+2) = 0.9; ben 0 of 4: 1/6; cy has no gold answers: 0.5.
    weights = {"ana": 0.9, "ben": 1 / 6}
    weighted = aggregate.aggregate_item("pairwise", votes, weights=weights, method="weighted")
    assert weighted["label"] == {"preference": "a", "strength": 3}
    assert weighted["votes"] == pytest.approx({"a": 0.9, "b": 1 / 6 + 0.5})
    assert weighted["agreement"] == pytest.approx(0.9 / (0.9 + 1 / 6 + 0.5))
    split = aggregate.aggregate_item("pairwise", votes[:2])
    assert split["label"]["preference"] == "tie"  # one vote each: no winner


def test_aggregate_other_task_types():
    ranks = aggregate.aggregate_item("ranking", [("a", {"ranks": [1, 2, 3]}), ("b", {"ranks": [2, 1, 3]})])
    assert ranks["label"] == {"ranks": [1, 1, 2]} and ranks["mean_ranks"] == [1.5, 1.5, 3.0]
    ratings = aggregate.aggregate_item("rating", [("a", {"ratings": {"h": 4}, "flags": ["unsafe"]}),
                                                  ("b", {"ratings": {"h": 6}, "flags": []})])
    assert ratings["label"] == {"ratings": {"h": 5.0}} and ratings["flag_shares"] == {"unsafe": 0.5}
    thumbs = aggregate.aggregate_item("thumbs", [("a", {"thumb": "up"}), ("b", {"thumb": "down"})])
    assert thumbs["label"] == {"thumb": None}


def judge_all(api, project: int, answer_for) -> None:
    while True:
        lease = api.post(f"/projects/{project}/lease")
        if lease.status_code == 204:
            return
        item = lease.json()
        response = api.post(f"/projects/{project}/items/{item['item_id']}/judgments",
                            {"answer": answer_for(item), "idempotency_key": f"{item['item_id']}"})
        assert response.status_code == 201, response.text


def test_trl_export_margins_and_ranking_pairs(app, client, admin):
    ana = annotator(app, client, "ana")
    pairs = [{"record": {"type": "comparison", "prompt": f"Q{s}", "response_a": f"good{s}", "response_b": f"bad{s}",
                         "preference": "a"}} for s in range(4)]
    project = new_project(admin, members=["ana"], items=pairs, overlap=1)

    def pick_good(item):  # strength 0..3 by question number; question 3 is a tie
        number = int(item["messages"][0]["content"][1:])
        if number == 3:
            return {"choice": "tie"}
        return {"choice": "left" if item["responses"][0].startswith("good") else "right", "strength": number + 1}

    judge_all(ana, project, pick_good)
    rows = [json.loads(r) for r in admin.get(f"/projects/{project}/export", params={"format": "trl"}).text.split("\n")
            if r]
    assert sorted((r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in rows) == [
        ("good0", "bad0", pytest.approx(1 / 3)), ("good1", "bad1", pytest.approx(2 / 3)), ("good2", "bad2", 1.0)]
    assert rows[0]["prompt"][0]["role"] == "user"
    # The records export agrees with our own TRL exporter (which drops the margin).
    records = [parse_record(json.loads(r)) for r in admin.get(f"/projects/{project}/export",
                                                             params={"format": "records"}).text.split("\n") if r]
    theirs = export_trl(records, "preference").rows
    assert [{k: v for k, v in r.items() if k != "margin"} for r in rows] == theirs

    ranking = new_project(admin, task_type="ranking", name="rank", members=["ana"], overlap=1, items=[
        {"record": {"type": "ranking", "prompt": "R", "responses": ["x", "y", "z"], "ranks": [1, 2, 3]}}])
    judge_all(ana, ranking, lambda item: {"ranks": [{"x": 1, "y": 1, "z": 3}[t] for t in item["responses"]]})
    rows = [json.loads(r) for r in admin.get(f"/projects/{ranking}/export", params={"format": "trl"}).text.split("\n")
            if r]
    assert sorted((r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in rows) == [
        ("x", "z", 0.0), ("y", "z", 0.0)]  # the tie between x and y makes no pair


def test_weighted_aggregate_uses_gold_accuracy(app, client, admin):
    apis = {name: annotator(app, client, name) for name in ("ana", "ben", "cy")}
    items = [{"record": {"type": "comparison", "prompt": "Q", "response_a": "A", "response_b": "B",
                         "preference": "a"}}]
    project = new_project(admin, members=list(apis), items=items, overlap=3, gold_rate=1.0)
    gold = [{"record": {"type": "comparison", "prompt": f"gold {g}", "response_a": "right", "response_b": "wrong",
                        "preference": "a"}} for g in range(2)]
    assert admin.post(f"/projects/{project}/items", {"items": gold, "gold": True}).status_code == 201

    def answer(name):
        def choose(item):
            if item["messages"][0]["content"].startswith("gold"):  # ana knows gold answers; ben and cy do not
                wanted = "right" if name == "ana" else "wrong"
            else:  # on the real item ana prefers A, ben and cy prefer B
                wanted = "A" if name == "ana" else "B"
            return {"choice": "left" if item["responses"][0] == wanted else "right", "strength": 2}
        return choose

    for name, api in apis.items():
        judge_all(api, project, answer(name))
    figures = admin.get(f"/projects/{project}/quality").json()
    accuracy = {a["annotator"]: a["gold_accuracy"] for a in figures["annotators"]}
    assert accuracy == {"ana": 1.0, "ben": 0.0, "cy": 0.0}

    def label(method):
        rows = [json.loads(r) for r in admin.get(f"/projects/{project}/export",
                                                 params={"format": "aggregate", "method": method}).text.split("\n")
                if r]
        return next(r["label"]["preference"] for r in rows if not r["is_gold"])

    # Weights: ana (2+1)/(2+2) = 0.75, ben and cy (0+1)/(2+2) = 0.25 each: 0.75 for a against 0.5 for b.
    assert label("majority") == "b" and label("weighted") == "a"
