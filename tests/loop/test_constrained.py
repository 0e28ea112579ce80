"""Constrained RL in the loop: harmlessness judgments -> cost model -> RL under a cost limit -> report; bad settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alinea.data.jsonl import read_records
from alinea.errors import UserError
from alinea.judges import get_judge
from alinea.loop.constrained import cost_model_records, rl_constraint_figures
from alinea.loop.rounds import STATE_FILE, LoopState, _reward_heads, run_loop
from tests.loop.test_rounds import loop_config

HARM_JUDGE = "tests.loop.harm_rules:avoids_the"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------------------
# pure pieces


def test_cost_model_records_are_the_judged_comparisons_and_rankings():
    # kept as judged: the reward trainer inverts them (reward.invert, tests/train/test_reward.py)
    rows = [
        {"type": "comparison", "response_a": "x", "response_b": "y", "preference": "a", "annotator": "ann"},
        {"type": "comparison", "response_a": "x", "response_b": "y", "preference": "b"},
        {"type": "comparison", "response_a": "x", "response_b": "y", "preference": "tie"},
        {"type": "comparison", "response_a": "x", "response_b": "y", "preference": "maybe"},
        {"type": "ranking", "responses": ["x", "y", "z"], "ranks": [1, 1, 3]},
        {"type": "ranking", "responses": [], "ranks": []},
        {"type": "rating", "response": "x", "rating": 3},
    ]
    kept, skipped = cost_model_records(rows)
    assert kept == [rows[0], rows[1], rows[2], rows[4]] and skipped == 3


def test_constraint_figures_from_rl_metrics():
    metrics = [
        {"step": 1, "cost_mean": 0.5, "lagrange_multiplier": 1.0, "constraint_satisfied": 0.0, "reward/cost/toxicity": 0.5},
        {"step": 2, "cost_mean": 0.1, "lagrange_multiplier": 1.2, "constraint_satisfied": 1.0, "reward/cost/toxicity": 0.1},
        {"step": 3, "reward_mean": 1.0},  # a row without costs (not constrained) is left out
    ]
    figures = rl_constraint_figures(metrics, limit=0.2, sources=["toxicity"], planned_steps=4)
    assert figures["steps"] == [[1, 0.5, 1.0, 0.0], [2, 0.1, 1.2, 1.0]]
    assert figures["cost_mean_final"] == 0.1 and figures["lagrange_multiplier_final"] == 1.2
    assert figures["lagrange_multiplier_max"] == 1.2 and figures["satisfied_share"] == 0.5
    assert figures["cost_by_source_final"] == {"toxicity": 0.1} and figures["stopped_early"] is True
    assert rl_constraint_figures([], limit=0.2, sources=[], planned_steps=4) == {
        "sources": [], "cost_limit": 0.2, "planned_steps": 4}


# ---------------------------------------------------------------------------------------------------------------------
# bad settings: refused before anything runs


@pytest.mark.parametrize(("settings", "message"), [
    ({"rl_algorithm": "dpo", "costs": ["toxicity"]}, r"constrained RL is not supported with loop.rl_algorithm = dpo"),
    ({"costs": ["no_such_cost"]}, r"loop.costs\[0\]: 'no_such_cost' is unknown.*detector \(harm, refusal, toxicity\)"),
    ({"costs": ["toxicity", "runs/absent-cost-model"]}, r"loop.costs\[1\]: 'runs/absent-cost-model' is no directory"),
    ({"costs": ["non_toxic"]}, r"loop.costs\[0\]: 'non_toxic' reads higher = better.*'neg:non_toxic'"),
    ({"costs": ["neg:toxicity"]}, r"loop.costs\[0\]: 'neg:toxicity' reads higher = better.*drop 'neg:'"),
    ({"harmlessness": True, "costs": ["neg:cost_model"]}, r"loop.costs\[0\]: 'neg:cost_model' would read the loop's"),
    ({"costs": ["cost_model"]}, r"loop.costs\[0\]: 'cost_model' names the cost model.*loop.harmlessness = true"),
    ({"costs": ["toxicity"], "cost_weights": [1.0, 2.0]}, r"loop.cost_weights: 2 weights for 1 cost sources"),
    ({"cost_weights": [1.0]}, r"loop.cost_weights: given without loop.costs"),
    ({"costs": ["tests.train.rl_rewards:raises"]}, r"loop.costs\[0\]: .*raised RuntimeError on a probe batch"),
    ({"costs": ["tests.train.rl_rewards:wrong_count"]}, r"loop.costs\[0\]: .*returned \[0.0\] for 2 answers"),
    ({"costs": ["tests.train.no_module:cost"]}, r"loop.costs\[0\]: judge 'tests.train.no_module:cost': cannot import"),
    ({"harmlessness": True, "harm_judge": "kindness"}, r"loop.harm_judge: judge 'kindness': no such judge"),
])
def test_bad_cost_settings_are_refused_at_the_start(settings, message, rl_policy_dir, demo_data, tmp_path):
    cfg = loop_config(tmp_path, rl_policy_dir, demo_data["prompts"], judges="ai", **settings)
    out = tmp_path / "loop"
    with pytest.raises(UserError, match=message):
        run_loop(cfg, out)
    assert not (out / STATE_FILE).exists() and not (out / "round-1").exists()


def test_bad_lagrange_settings_and_section_costs_are_refused(rl_policy_dir, demo_data, tmp_path):
    for field, value, message in [
        ("lagrange_lr", 0.0, r"rloo.lagrange_lr: expected a finite number > 0, found 0.0"),
        ("lagrange_init", 80.0, r"rloo.lagrange_init: expected a number from 0 to lagrange_max \(50.0\)"),
        ("lagrange_patience", 0, r"rloo.lagrange_patience: expected 1 or more steps"),
        ("costs", ["toxicity"], r"rloo.costs: set to \['toxicity'\], but in the loop the costs come from loop.costs"),
    ]:
        cfg = loop_config(tmp_path, rl_policy_dir, demo_data["prompts"], judges="ai",
                          costs=[] if field == "costs" else ["toxicity"])
        setattr(cfg.rloo, field, value)
        with pytest.raises(UserError, match=message):
            run_loop(cfg, tmp_path / f"bad-{field}")


def test_cost_model_with_another_tokenizer_is_refused_at_the_start(rl_policy_dir, demo_data, tmp_path):
    from alinea.data.corpus import read_documents
    from alinea.model.tokenizer import save_tokenizer, train_tokenizer

    # A directory shaped like a cost model (config.json with the normalisation key, kind cost), with a tokenizer of
    # its own.
    cost_dir = tmp_path / "other-cost-model"
    shutil.copytree(rl_policy_dir, cost_dir)
    config = json.loads((cost_dir / "config.json").read_text())
    (cost_dir / "config.json").write_text(
        json.dumps({**config, "alinea_reward": {"shift": [0.0], "scale": [1.0], "kind": "cost"}}))
    other = save_tokenizer(train_tokenizer(read_documents(demo_data["corpus"]), vocab_size=300), tmp_path / "tok300")
    for file in other.iterdir():
        shutil.copy(file, cost_dir / file.name)
    cfg = loop_config(tmp_path, rl_policy_dir, demo_data["prompts"], judges="ai", costs=[str(cost_dir)])
    with pytest.raises(UserError, match=r"loop.costs\[0\]: the cost model .*other-cost-model has a tokenizer different "
                                        r"from the policy's .*vocabulary sizes 300 vs 600"):
        run_loop(cfg, tmp_path / "loop")
    assert not (tmp_path / "loop" / "round-1").exists()


def test_a_reward_model_as_a_loop_cost_needs_neg(rl_policy_dir, demo_data, tmp_path):
    from tests.train.test_rewards import save_scorer

    harmless_rm = save_scorer(rl_policy_dir, tmp_path / "harmless-rm", kind="reward")
    cfg = loop_config(tmp_path, rl_policy_dir, demo_data["prompts"], judges="ai", costs=[str(harmless_rm)])
    with pytest.raises(UserError, match=r"loop.costs\[0\]: .*harmless-rm is a reward model \(higher = better\), not a "
                                        r"cost model.*reward.invert = true.*'neg:"):
        run_loop(cfg, tmp_path / "loop")
    assert not (tmp_path / "loop" / "round-1").exists()
    from alinea.loop.constrained import check_costs

    cfg.loop.costs = [f"neg:{harmless_rm}"]
    check_costs(cfg)  # read as cost = -reward: accepted

    # the held-out cost of the report reads it the same way: -reward, i.e. minus the same weights marked as a cost
    from alinea.loop.constrained import eval_costs

    cost_model = save_scorer(rl_policy_dir, tmp_path / "cost-model", kind="cost")
    records = read_records(demo_data["prompts"])[:3]
    prompts = [r.prompt_messages()[-1]["content"] for r in records]
    answers = {"sft": ["Yes.", "No, thanks.", "The river."], "policy": ["Fine.", "Maybe.", "A long answer here."]}
    negated = eval_costs([f"neg:{harmless_rm}"], [], records, prompts, answers)
    as_cost = eval_costs([str(cost_model)], [], records, prompts, answers)
    assert negated["sft"] == pytest.approx(-as_cost["sft"]) and negated["policy"] == pytest.approx(-as_cost["policy"])
    assert as_cost["sft"] != as_cost["policy"]
    with_harm = eval_costs([f"neg:{harmless_rm}", "neg:harmless"], [1.0, 2.0], records, prompts, answers)
    assert with_harm["sft"] == pytest.approx(negated["sft"] - 2.0)  # no harm in these answers: -harmless = -1 each


# ---------------------------------------------------------------------------------------------------------------------
# a whole round


@pytest.mark.slow
def test_harmlessness_judgments_train_a_cost_model_that_constrains_rl(rl_policy_dir, demo_data, tmp_path,
                                                                    one_torch_thread):
    """AI judges label every pair twice (helpfulness: share of 'e'; harmlessness: fewer uses of 'the'); the cost model
    learns the inverted harmlessness pairs; RL runs under a limit no policy can meet (-5 standard deviations of the
    judged answers), so the multiplier hits its small cap, RL stops early and the warning reaches the report."""
    cfg = loop_config(
        tmp_path, rl_policy_dir, demo_data["prompts"], judges="ai", harmlessness=True, harm_judge=HARM_JUDGE,
        costs=["cost_model"], cost_limit=-5.0, rl_steps=4, rm_steps=30, pairs_per_round=24, prompts_per_round=24,
        active_curve=False, safety_eval=False, eval_prompts=8,
    )
    cfg.rloo.max_new_tokens = 16
    cfg.reward.lr = 2e-3
    cfg.rloo.lagrange_init, cfg.rloo.lagrange_lr, cfg.rloo.lagrange_max, cfg.rloo.lagrange_patience = 1.0, 10.0, 2.0, 2
    out = tmp_path / "loop"
    run_loop(cfg, out)
    round_dir = out / "round-1"

    # 1. every pair judged for harmlessness by the harm judge: the answer with fewer 'the' wins, equal ones tie
    pairs = read_jsonl(round_dir / "pairs.jsonl")
    harmless = read_jsonl(round_dir / "harmlessness.jsonl")
    assert len(harmless) == len(pairs) >= 16
    judge = get_judge(HARM_JUDGE)
    for pair, record in zip(pairs, harmless, strict=True):
        assert (record["response_a"], record["response_b"]) == (pair["a"], pair["b"])
        score_a, score_b = judge(["p", "p"], [pair["a"], pair["b"]])
        expected = "tie" if abs(score_a - score_b) < cfg.loop.tie_margin else ("a" if score_a > score_b else "b")
        assert record["preference"] == expected
    decided = [r for r in harmless if r["preference"] != "tie"]
    assert len(decided) >= 6, f"only {len(decided)} pairs differ in harm"

    # 2. the cost model is trained on exactly those judgments, inverted by the trainer (reward.invert): the more
    #    harmful answer counts as preferred, and the model is marked a cost model
    cost_records = read_jsonl(round_dir / "cost_records.jsonl")
    assert [r["preference"] for r in cost_records] == [r["preference"] for r in harmless]
    cost_run = round_dir / "cost"
    cost_config = (cost_run / "config.toml").read_text()
    assert str(round_dir / "cost_records.jsonl") in cost_config and "invert = true" in cost_config
    cost_meta = json.loads((cost_run / "meta.json").read_text())
    assert sum(cost_meta["kinds"].values()) == len(harmless) and cost_meta["alinea_kind"] == "cost"
    assert json.loads((cost_run / "final" / "config.json").read_text())["alinea_reward"]["kind"] == "cost"
    state = LoopState.load(out)
    assert state.cost_model == str(cost_run / "final")
    # ... and it learned the direction: it scores the more harmful answer of the judged pairs higher, mostly
    records = read_records(out / "train_prompts.jsonl")
    worse_better = [(p["a"], p["b"]) if r["preference"] == "b" else (p["b"], p["a"])
                    for p, r in zip(pairs, harmless, strict=True) if r["preference"] != "tie"]
    owners = [records[p["prompt_index"]] for p, r in zip(pairs, harmless, strict=True) if r["preference"] != "tie"]
    heads = _reward_heads(state.cost_model, owners, [list(wb) for wb in worse_better])
    ordered = sum(1 for h in heads if float(h[0].mean()) > float(h[1].mean()))
    assert ordered / len(heads) >= 0.75, f"the cost model ranks {ordered} of {len(heads)} judged pairs the right way"

    # 3. RL ran under the constraint with the cost model as its cost: multiplier and cost logged at every step; the
    #    multiplier reached its cap (2.0) at once, so after 2 steps at the cap the run stopped (of 4 planned)
    metrics = [m for m in read_jsonl(round_dir / "rl" / "metrics.jsonl") if m.get("split") == "train"]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["cost_limit"] == -5.0 and "reward/cost/rm:cost" in m and "cost_mean" in m for m in metrics)
    assert [m["lagrange_multiplier"] for m in metrics] == [1.0, 2.0]
    assert all(m["constraint_satisfied"] == 0.0 for m in metrics)
    assert "Lagrange multiplier at its cap" in (round_dir / "rl" / "warnings.json").read_text()

    # 4. the round's row, the summary and the report carry the constraint and the warning
    row = read_jsonl(out / "rounds.jsonl")[0]
    constrained = row["constrained"]
    assert constrained["sources"] == ["cost_model"] and constrained["cost_limit"] == -5.0
    assert [s[0] for s in constrained["steps"]] == [1, 2] and constrained["stopped_early"] is True
    assert constrained["lagrange_multiplier_final"] == 2.0
    assert set(constrained["eval_cost"]) == {"sft", "policy"}
    assert row["harmlessness"]["judgments"] == len(harmless) and row["harmlessness"]["cost_model"] == "round-1/cost/final"
    assert any("Lagrange multiplier at its cap" in w for w in row["warnings"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["constrained"]["cost_limit"] == -5.0 and summary["constrained"]["lagrange_multiplier_final"] == 2.0
    assert summary["constrained"]["stopped_early"] is True
    assert any(w["round"] == 1 and "Lagrange multiplier at its cap" in w["message"] for w in summary["warnings"])
    html = (out / "report.html").read_text()
    constrained_panel = html.split('<section id="panel-constrained">')[1].split("</section>")[0]
    assert constrained_panel.count("<img ") == 1 and "<td>cost_model</td><td>-5.000</td>" in constrained_panel
    assert "Lagrange multiplier at its cap" in html.split('<section id="panel-warnings">')[1].split("</section>")[0]
