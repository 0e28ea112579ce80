"""The report's constrained-RL panel, the loop's warnings, harmlessness and per-language safety: fake loop dirs."""

import json

import pytest

from alinea.eval.report import LoopDir, constraint_steps, loop_warnings, write_report
from tests.eval.test_report import full_round, make_loop_dir, section, write_lines

UNREACHABLE = "rloo: the cost constraint (mean cost <= 0.35) was not met for 2 steps with the Lagrange multiplier <b>at its cap</b>"


@pytest.fixture
def constrained_loop(tmp_path):
    second = full_round(2)
    second["warnings"] = [UNREACHABLE]
    second["constrained"] = {**second["constrained"], "stopped_early": True}
    loop_dir = make_loop_dir(tmp_path / "loop", [full_round(1), second], done=False)
    # round 3 is still running: its warning lives in the state only; round 2's is in both places, shown once
    state = {"round": 3, "phase": "rl", "done": False,
             "warnings": {"2": [UNREACHABLE], "3": ["round 3: 2 judgments, fewer than loop.min_judgments (4)"]}}
    (loop_dir / "loop_state.json").write_text(json.dumps(state))
    report_path, summary = write_report(loop_dir)
    return loop_dir, summary, report_path.read_text(encoding="utf-8")


def test_summary_has_the_constraint_harmlessness_and_warnings(constrained_loop):
    _, summary, _ = constrained_loop
    assert summary["constrained"] == {
        "sources": ["cost_model", "toxicity"], "cost_limit": 0.35, "cost_mean_final": 0.3,
        "lagrange_multiplier_final": 1.15, "satisfied_share": pytest.approx(1 / 3), "stopped_early": True,
        "eval_cost_sft": 0.6, "eval_cost_policy": pytest.approx(0.2),
    }
    assert summary["measured_in_round"]["constrained"] == 2
    assert [r["cost_mean"] for r in summary["per_round"]] == [0.3, 0.3]
    assert [r["lagrange_multiplier"] for r in summary["per_round"]] == [1.15, 1.15]
    assert summary["harmlessness"] == {
        "judgments_total": 60, "cost_model_accuracy": 0.7, "krippendorff_alpha": 0.5, "harmless_score_sft": 0.8,
        "harmless_score_final": pytest.approx(0.95),
    }
    assert summary["warnings"] == [
        {"round": 2, "message": UNREACHABLE},
        {"round": 3, "message": "round 3: 2 judgments, fewer than loop.min_judgments (4)"},
    ]
    assert summary["safety_by_language"] == {"en": {"safe_rate": 0.9, "needless_refusal_rate": 0.0},
                                             "mg": {"safe_rate": 0.4, "needless_refusal_rate": 0.2}}


def test_constrained_panel_plots_cost_and_multiplier_and_tabulates_each_round(constrained_loop):
    _, _, html = constrained_loop
    panel = section(html, "constrained")
    assert panel.count("<img ") == 1 and "mean cost and Lagrange multiplier" in panel
    # round 1: limit 0.35, last cost 0.3, 1 of 3 steps within the limit, held-out cost 0.6 -> 0.3
    assert "<td>cost_model, toxicity</td><td>0.350</td><td>0.300</td><td>0.333</td><td>1.150</td>" in panel
    assert "<td>0.600 -&gt; 0.300</td><td>no</td>" in panel
    assert "<td>0.600 -&gt; 0.200</td><td>yes (see the warnings)</td>" in panel
    assert "<td>30</td><td>12</td><td>0.500</td><td>0.700</td><td>0.800 -&gt; 0.950</td>" in panel
    assert "mean cost at the last RL step (limit)</td><td>0.300 (0.350)" in section(html, "summary")
    assert "<td>warnings</td><td>2</td>" in section(html, "summary")


def test_warnings_panel_lists_every_warning_escaped(constrained_loop):
    _, _, html = constrained_loop
    panel = section(html, "warnings")
    assert panel.count("<tr>") == 3  # header + 2 warnings
    assert "&lt;b&gt;at its cap&lt;/b&gt;" in panel and "<b>at its cap</b>" not in html
    assert "<td>3</td><td>round 3: 2 judgments" in panel


def test_safety_panel_has_the_languages(constrained_loop):
    _, _, html = constrained_loop
    panel = section(html, "safety")
    assert "By prompt language (round 2)" in panel
    assert "<td>mg</td><td>0.400</td><td>0.200</td>" in panel


def test_constraint_steps_come_from_the_rl_metrics_when_the_round_has_none(tmp_path):
    row = {"round": 1, "rl_run": "round-1/rl", "constrained": {"cost_limit": 0.2}}
    loop_dir = make_loop_dir(tmp_path / "loop", [row])
    write_lines(loop_dir / "round-1" / "rl" / "metrics.jsonl", [
        {"step": step, "split": "train", "reward_mean": 0.1, "kl": 0.0, "cost_mean": 1.0 / step,
         "lagrange_multiplier": 0.5 * step} for step in (1, 2, 4)
    ])
    loop = LoopDir(path=loop_dir, rounds=[row])
    assert constraint_steps(loop, row) == [(1.0, 1.0, 0.5), (2.0, 0.5, 1.0), (4.0, 0.25, 2.0)]
    _, summary = write_report(loop_dir)
    html = (loop_dir / "report.html").read_text(encoding="utf-8")
    assert section(html, "constrained").count("<img ") == 1
    assert summary["constrained"]["cost_limit"] == 0.2 and summary["constrained"]["cost_mean_final"] is None


def test_warnings_of_the_wrong_shape_are_ignored(tmp_path):
    loop_dir = make_loop_dir(tmp_path / "loop", [{"round": 1, "warnings": "not a list"},
                                                 {"round": 2, "warnings": [3, "kept"]}])
    state = {"round": 2, "done": True, "warnings": {"x": ["bad round"], "2": "not a list"}}
    assert loop_warnings(LoopDir(path=loop_dir, rounds=[{"round": 1, "warnings": "not a list"},
                                                        {"round": 2, "warnings": [3, "kept"]}], state=state)) == [
        {"round": 2, "message": "kept"}]
