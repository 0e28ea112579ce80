"""Harmlessness feedback: the second project of a round, judged over HTTP (the harm judge itself: tests/judges/test_harm.py)."""

from __future__ import annotations

import json

from rich.console import Console

from alinea.config import load_config
from alinea.data.jsonl import write_jsonl
from alinea.judges import is_toxic
from alinea.loop.rounds import HARMLESSNESS_FILE, LoopContext, LoopState, phase_feedback
from tests.loop.test_client import ThreadedApp

HELPFUL = "tests.train.rl_rewards:target_share"  # share of the letter 'e': the helpfulness gold of these tests


# ---------------------------------------------------------------------------------------------------------------------
# the round's second project


def make_context(tmp_path, prompts_file, *, client=None, **loop) -> LoopContext:
    # no noise (flips, position bias, ties, Bradley-Terry temperature): every pick follows the project's gold
    sets = {"gold_judge": HELPFUL, "harmlessness": True, "overlap": 2, "gold_rate": 0.25, "flip_prob": 0.0,
            "position_bias": 0.0, "tie_rate": 0.0, "annotator_temperature": 0.0, "annotators_honest": 3,
            "annotators_careless": 0, **loop}
    cfg = load_config(None, [f"loop.{key}={json.dumps(value)}" for key, value in sets.items()])
    out = tmp_path / "loop"
    out.mkdir()
    return LoopContext(cfg=cfg, out=out, console=Console(quiet=True), state=LoopState(), train_prompts=prompts_file,
                       eval_prompts=prompts_file, client=client)


def write_pairs(ctx, pairs: list[dict]) -> None:
    round_dir = ctx.round_dir()
    write_jsonl(round_dir / "pairs.jsonl", pairs)
    write_jsonl(round_dir / "candidates.jsonl", [
        {"prompt_index": p["prompt_index"], "answers": [p["a"], p["b"]], "finished": [True, True]} for p in pairs])


def rude_or_calm_pairs(n: int) -> list[dict]:
    """The rude answer has more e's (helpfulness prefers it); the calm one has no toxic term (harmlessness does)."""
    pairs = []
    for i in range(n):
        rude, calm = f"Eleven eerie eels here, you idiot ({i}).", f"A calm, kind word for you ({i})."
        a, b = (rude, calm) if i % 2 else (calm, rude)
        pairs.append({"id": f"r1-{i}", "prompt_index": i, "a": a, "b": b, "priority": 0.0, "strategy": "random"})
    return pairs


def test_pairs_are_judged_twice_over_http_helpfulness_and_harmlessness(demo_data, tmp_path):
    """The same simulated annotators judge the same pairs in two projects; each project follows its own gold."""
    pairs = rude_or_calm_pairs(12)
    server = ThreadedApp(tmp_path)
    try:
        with server.client() as admin:
            ctx = make_context(tmp_path, demo_data["prompts"], client=admin)
            write_pairs(ctx, pairs)
            phase_feedback(ctx)
            assert set(ctx.state.project_ids) == {"1", "1-harmlessness"}
            helpful = [r for r in map(json.loads, (ctx.round_dir() / "judgments.jsonl").read_text().splitlines())
                       if r["id"].startswith("r1-")]  # the pairs, not the gold items ("gold-r1-...")
            harmless_rows = [json.loads(x) for x in (ctx.round_dir() / HARMLESSNESS_FILE).read_text().splitlines()]
            judged = [r for r in harmless_rows if r["id"].startswith("r1-")]
            assert len(helpful) == len(judged) == 12 * 2  # overlap 2
            winner = {"a": "response_a", "b": "response_b"}
            assert all(is_toxic(r[winner[r["preference"]]]) for r in helpful)  # more e's: the rude answer
            assert all(not is_toxic(r[winner[r["preference"]]]) for r in judged)  # less harmful: the calm one
            assert {r["annotator"] for r in judged} == {r["annotator"] for r in helpful} == {
                "sim-honest-0", "sim-honest-1", "sim-honest-2"}
            quality = json.loads((ctx.round_dir() / "harmlessness_quality.json").read_text())
            assert quality["kinds"] == {f"sim-honest-{k}": "honest" for k in range(3)}
            # gold items of the harmlessness project come from the harm judge: the calm answer is the known one
            project = admin.get_project(ctx.state.project_ids["1-harmlessness"])
            assert project["name"] == "loop round 1 harmlessness"
            gold = [item for item in admin.list_items(project["id"]) if item["is_gold"]]
            assert len(gold) == 3 and all(not is_toxic(item["responses"][0]) for item in gold)
            # a rerun of the phase (a resumed loop) finds both projects again and judges nothing twice
            ids = dict(ctx.state.project_ids)
            phase_feedback(ctx)
            assert ctx.state.project_ids == ids
            again = [json.loads(x) for x in (ctx.round_dir() / HARMLESSNESS_FILE).read_text().splitlines()]
            assert sorted(map(json.dumps, again)) == sorted(map(json.dumps, harmless_rows))
    finally:
        server.stop()


def test_pairs_without_any_harm_difference_are_flagged(demo_data, tmp_path):
    ctx = make_context(tmp_path, demo_data["prompts"], judges="ai", harm_judge="harmless")
    pairs = [{"id": f"r1-{i}", "prompt_index": i, "a": f"A plain answer {i}.", "b": f"Another plain answer {i}.",
              "priority": 0.0, "strategy": "random"} for i in range(6)]
    write_pairs(ctx, pairs)
    phase_feedback(ctx)
    rows = [json.loads(x) for x in (ctx.round_dir() / HARMLESSNESS_FILE).read_text().splitlines()]
    assert [r["preference"] for r in rows] == ["tie"] * 6 and {r["annotator"] for r in rows} == {"ai-harm-judge"}
    (warning,) = ctx.state.warnings["1"]
    assert "sees no difference in harm in any of the 6 pairs" in warning
    assert ctx.state.judgments_total == 6  # the helpfulness judgments only


def test_people_see_both_projects_before_the_loop_waits(demo_data, tmp_path, monkeypatch):
    from alinea.loop import feedback_round

    waits = []

    def no_wait(ctx, project_id, wanted, aspect="helpfulness"):  # stands in for polling until people are done
        waits.append((aspect, set(ctx.state.project_ids), wanted))

    monkeypatch.setattr(feedback_round, "_wait_for_people", no_wait)
    server = ThreadedApp(tmp_path)
    try:
        with server.client() as admin:
            ctx = make_context(tmp_path, demo_data["prompts"], client=admin, judges="people")
            write_pairs(ctx, rude_or_calm_pairs(4))
            phase_feedback(ctx)
            both = {"1", "1-harmlessness"}
            assert waits == [("helpfulness", both, 8), ("harmlessness", both, 8)]  # 4 pairs x overlap 2
            for key in both:
                assert admin.progress(ctx.state.project_ids[key])["items"] == 4
    finally:
        server.stop()
    assert ctx.state.warnings["1"] == [
        "round 1: 0 judgments, fewer than loop.min_judgments (1): the reward model keeps its previous weights this round.",
        "round 1: no harmlessness judgments; the cost model keeps its previous weights.",
    ]
