"""`alinea report`: a fake two-round loop directory -> report.html with every panel and summary.json with every field."""

import json
import math
import re

import pytest
from typer.testing import CliRunner

from alinea.cli import app
from alinea.errors import UserError
from alinea.eval.report import HEADLINE_KEYS, PANELS, write_report

runner = CliRunner()

GOLD_SFT = -0.2
GAO_A, GAO_B = 0.8, 0.3  # gold - gold_SFT = d (a - b log d) along the fake RL runs


def gold_at(d: float) -> float:
    return GOLD_SFT + (d * (GAO_A - GAO_B * math.log(d)) if d > 0 else 0.0)


def write_lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def full_round(number: int) -> dict:
    rate_sft = {1: 0.7, 2: 0.8}[number]
    return {
        "round": number,
        "judgments": 40,
        "judgments_total": 40 * number,
        "phase_seconds": {"generate": 10.0 * number, "feedback": 20.0, "reward": 30.0, "rl": 40.0, "evaluate": 5.0},
        "rm_accuracy": 0.6 + 0.05 * number,
        "rm_curve": {"active": [[10 * number, 0.6], [40 * number, 0.7]], "random": [[10 * number, 0.55], [40 * number, 0.62]]},
        "win_rate_vs_sft": {"gold": {"rate": rate_sft, "low": rate_sft - 0.1, "high": rate_sft + 0.1, "n": 64},
                            "rm": {"rate": 0.9, "low": 0.82, "high": 0.96, "n": 64}},
        "win_rate_vs_previous": {"gold": {"rate": 0.6, "low": 0.5, "high": 0.7, "n": 64},
                                 "rm": {"rate": 0.65, "low": 0.55, "high": 0.75, "n": 64}},
        "win_rate_by_language": {lang: {"rate": 0.75, "low": 0.6, "high": 0.9, "n": 16} for lang in ("en", "fr", "es", "mg")},
        "gold_reward": {"sft": GOLD_SFT, "policy": gold_at(float(number))},
        "proxy_reward": {"sft": 0.0, "policy": 1.0 * number},
        "kl": float(number) ** 2,
        "language_consistency": 0.95 + 0.01 * number,
        "language_consistency_by_language": {"en": 1.0, "fr": 0.97, "es": 0.96, "mg": 0.9 + 0.02 * number},
        "agreement": {"krippendorff_alpha": 0.4 + 0.1 * number, "cohen_kappa": {"ann-1|ann-2": 0.5, "ann-1|ann-3": 0.1}},
        "annotators": {
            "ann-1": {"gold_accuracy": 0.9, "position_bias": 0.02, "reliability": 0.95, "judgments": 30, "kind": "honest"},
            "ann-2": {"gold_accuracy": 0.75, "position_bias": 0.2, "reliability": 0.7, "judgments": 30, "kind": "noisy"},
            "<b>ann-3</b> & $x$": {"gold_accuracy": 0.2, "position_bias": 0.0, "reliability": 0.1, "judgments": 20,
                                   "kind": "<i>adversarial</i>"},
        },
        "safety": {"safe_rate_before": 0.5, "safe_rate_after": 0.6 + 0.1 * number, "needless_refusal_rate": 0.05,
                   "by_language": {"en": {"safe_rate": 0.9, "needless_refusal_rate": 0.0},
                                   "mg": {"safe_rate": 0.4, "needless_refusal_rate": 0.2}}},
        # constrained RL: the mean cost falls 0.5, 0.4, 0.3 while the multiplier rises; the limit is 0.35
        "constrained": {"sources": ["cost_model", "toxicity"], "cost_limit": 0.35, "planned_steps": 3,
                        "steps": [[1, 0.5, 1.0, 0.0], [2, 0.4, 1.1, 0.0], [3, 0.3, 1.15, 1.0]],
                        "cost_mean_final": 0.3, "lagrange_multiplier_final": 1.15, "satisfied_share": 1 / 3,
                        "stopped_early": False, "eval_cost": {"sft": 0.6, "policy": 0.4 - 0.1 * number}},
        "harmlessness": {"judgments": 30, "ties": 12, "krippendorff_alpha": 0.5, "cost_model_accuracy": 0.7,
                         "harmless_score": {"sft": 0.8, "policy": 0.85 + 0.05 * number}},
        "rl_run": f"rounds/{number}/rl",
        # sqrt(KL) goes 0.25 .. number along the run
        "over_optimisation": [[d, gold_at(d), 0.5 * d] for d in (0.25 * k for k in range(1, 4 * number + 1))],
        "rl_algorithm": "ppo",
    }


def make_loop_dir(path, rounds, *, done=True):
    path.mkdir(parents=True, exist_ok=True)
    write_lines(path / "rounds.jsonl", rounds)
    (path / "loop_state.json").write_text(json.dumps({"round": len(rounds), "phase": "report", "done": done}))
    for row in rounds:
        if isinstance(row.get("rl_run"), str):
            write_lines(path / row["rl_run"] / "metrics.jsonl", [
                {"step": step, "split": "train", "reward_mean": 0.1 * step, "kl": 0.05 * step} for step in range(6)
            ] + [{"step": 5, "split": "eval", "loss": 1.0}])
    return path


def section(html: str, panel: str) -> str:
    match = re.search(rf'<section id="panel-{panel}">(.*?)</section>', html, re.S)
    assert match, f"panel {panel} missing"
    return match.group(1)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    loop_dir = make_loop_dir(tmp_path_factory.mktemp("loop"), [full_round(1), full_round(2)])
    report_path, summary = write_report(loop_dir)
    return loop_dir, report_path, summary, report_path.read_text(encoding="utf-8")


def test_report_has_every_panel_and_plot(full_report):
    loop_dir, report_path, _, html = full_report
    assert report_path == loop_dir / "report.html"
    for panel, _ in PANELS:
        section(html, panel)
    with_plots = ("rl-curves", "constrained", "over-optimisation", "win-rates", "rm-accuracy", "agreement", "languages",
                  "safety")
    for panel in with_plots:
        assert section(html, panel).count('<img alt="') == 1, panel
        assert 'src="data:image/png;base64,iVBORw0KGgo' in section(html, panel)  # the PNG signature, base64
    assert html.count("<img ") == len(with_plots)
    assert "not measured" not in html
    # self-contained: no external resources, no scripts
    assert not re.search(r"https?://|<script|<link|@import", html)


def test_summary_has_every_headline_number(full_report):
    loop_dir, _, summary, _ = full_report
    on_disk = json.loads((loop_dir / "summary.json").read_text(encoding="utf-8"))
    assert on_disk == summary
    assert set(HEADLINE_KEYS) <= set(summary)
    assert summary["rounds"] == 2
    assert summary["win_rate_vs_sft"] == 0.8
    assert summary["win_rate_vs_sft_ci"] == pytest.approx([0.7, 0.9]) and summary["win_rate_vs_sft_n"] == 64
    assert summary["gold_reward_sft"] == GOLD_SFT
    assert summary["gold_reward_final"] == pytest.approx(gold_at(2.0))  # -0.2 + 2 (0.8 - 0.3 ln 2) = 0.9841
    assert summary["gold_reward_final"] == pytest.approx(0.98411, abs=1e-5)
    assert summary["kl_final"] == 4.0
    assert summary["rm_accuracy"] == pytest.approx(0.7)
    assert summary["language_consistency"] == pytest.approx(0.97)
    assert summary["judgments_total"] == 80 and summary["done"] is True and summary["rl_algorithm"] == "ppo"
    assert summary["agreement_alpha"] == pytest.approx(0.6)
    assert summary["safety"]["safe_rate_after"] == pytest.approx(0.8)
    assert summary["language_consistency_by_language"]["mg"] == pytest.approx(0.94)
    assert summary["win_rate_by_language"]["fr"] == {"rate": 0.75, "low": 0.6, "high": 0.9, "n": 16}
    # phase times: round 1 10+20+30+40+5 = 105, round 2 20+20+30+40+5 = 115
    assert summary["loop_seconds"] == 220.0 and summary["phase_seconds"]["generate"] == 30.0
    # the points lie on gold_SFT + d (0.8 - 0.3 log d): the fit recovers a and b; the peak is at exp(a/b - 1)
    fit = summary["gao_fit"]
    assert fit["kind"] == "rl" and fit["a"] == pytest.approx(GAO_A) and fit["b"] == pytest.approx(GAO_B)
    assert fit["peak_sqrt_kl"] == pytest.approx(math.exp(GAO_A / GAO_B - 1))
    assert [r["win_rate_vs_sft"] for r in summary["per_round"]] == [0.7, 0.8]
    assert summary["measured_in_round"]["win_rate_vs_sft"] == 2 and summary["measured_in_round"]["gold_reward_sft"] == 1


def test_report_tables_show_the_numbers(full_report):
    _, _, _, html = full_report
    assert "0.800 [0.700, 0.900] n=64" in section(html, "win-rates")
    assert "a = 0.8000" in section(html, "over-optimisation") and "b = 0.3000" in section(html, "over-optimisation")
    phases = section(html, "phase-times")
    assert "<td>105.0</td>" in phases and "<td>115.0</td>" in phases and "<td>220.0</td>" in phases
    assert "ann-1 &amp; ann-2" in section(html, "agreement")
    assert "<td>0.940</td>" in section(html, "languages")  # Malagasy consistency in round 2


def test_annotator_names_are_escaped(full_report):
    _, _, _, html = full_report
    assert "<b>ann-3</b>" not in html and "<i>adversarial</i>" not in html
    agreement = section(html, "agreement")
    assert "&lt;b&gt;ann-3&lt;/b&gt; &amp; $x$" in agreement and "&lt;i&gt;adversarial&lt;/i&gt;" in agreement


def test_missing_keys_say_not_measured(tmp_path):
    # round 1 has nothing but its number; round 2 only a gold win rate and an RL run whose metrics are missing
    loop_dir = make_loop_dir(tmp_path / "loop", [{"round": 1}], done=False)
    write_lines(loop_dir / "rounds.jsonl", [
        {"round": 1},
        {"round": 2, "win_rate_vs_sft": {"gold": {"rate": 0.55, "low": 0.4, "high": 0.7, "n": 20}}, "rl_run": "gone",
         "rm_accuracy": "high", "kl": float("nan"), "annotators": ["not", "a", "mapping"]},
    ])
    report_path, summary = write_report(loop_dir)
    html = report_path.read_text(encoding="utf-8")
    for key in HEADLINE_KEYS:
        assert key in summary
    assert summary["rounds"] == 2 and summary["win_rate_vs_sft"] == 0.55 and summary["done"] is False
    assert all(summary[k] is None for k in HEADLINE_KEYS if k not in ("rounds", "win_rate_vs_sft"))
    assert summary["gao_fit"] is None and summary["loop_seconds"] is None
    for panel in ("rl-curves", "constrained", "over-optimisation", "rm-accuracy", "agreement", "languages", "safety",
                  "phase-times"):
        assert "not measured" in section(html, panel), panel
    assert summary["constrained"] is None and summary["harmlessness"] is None and summary["warnings"] == []
    assert "No warnings." in section(html, "warnings")
    assert "gone/metrics.jsonl not found" in section(html, "rl-curves")
    # the win-rate panel plots round 2 and marks the other cells
    win_rates = section(html, "win-rates")
    assert win_rates.count("<img ") == 1 and "0.550 [0.400, 0.700] n=20" in win_rates and "not measured" in win_rates
    assert html.count("<img ") == 1


def test_gao_fit_needs_the_sft_gold_reward(tmp_path):
    row = {key: full_round(1)[key] for key in ("round", "over_optimisation", "proxy_reward")}
    loop_dir = make_loop_dir(tmp_path / "loop", [row])
    _, summary = write_report(loop_dir)
    assert summary["gao_fit"] is None and summary["gold_reward_sft"] is None
    html = (loop_dir / "report.html").read_text(encoding="utf-8")
    assert "no Gao fit: the SFT model" in section(html, "over-optimisation")


def test_bad_loop_dirs(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        write_report(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither rounds.jsonl nor loop_state.json"):
        write_report(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "rounds.jsonl").write_text('{"round": 1}\n{"round": 2,\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"rounds\.jsonl:2: not valid JSON"):
        write_report(bad)
    (bad / "rounds.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"rounds\.jsonl:1: expected a JSON object"):
        write_report(bad)
    assert not (bad / "report.html").exists() and not (bad / "summary.json").exists()


def test_cli_report(tmp_path):
    loop_dir = tmp_path / "loop"
    loop_dir.mkdir()
    (loop_dir / "loop_state.json").write_text('{"round": 1, "phase": "generate", "done": false}')
    result = runner.invoke(app, ["report", str(loop_dir)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output and "win_rate_vs_sft" in result.output and "not measured" in result.output
    result = runner.invoke(app, ["report", str(loop_dir), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rounds"] == 0 and summary["win_rate_vs_sft"] is None
    result = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert isinstance(result.exception, UserError)


def test_values_of_the_wrong_shape_do_not_crash(tmp_path):
    odd = {
        "round": "first",  # not an int: numbered by position
        "judgments": True, "judgments_total": "many", "phase_seconds": [1, 2], "rm_accuracy": float("inf"),
        "rm_curve": {"active": [[1], "x", [None, 0.5]], "random": "none"},
        "win_rate_vs_sft": {"gold": {"rate": 0.6, "low": 0.7, "high": 0.5, "n": "?"}, "rm": 3},
        "win_rate_by_language": {"en": {"rate": None}}, "language_consistency_by_language": [],
        "agreement": {"krippendorff_alpha": "x", "cohen_kappa": {"a|b": None}},
        "annotators": {"x": None, "y": {"kind": None}},
        "safety": {"by_language": {"en": 0.5}}, "rl_run": 7, "over_optimisation": [[-1, 2, 3], "x", [0.5]],
        "rl_algorithm": ["ppo"], "gold_reward": {"policy": "good"}, "kl": -1.0,
    }
    loop_dir = make_loop_dir(tmp_path / "loop", [odd])
    _, summary = write_report(loop_dir)
    html = (loop_dir / "report.html").read_text(encoding="utf-8")
    assert summary["rounds"] == 1 and summary["per_round"][0]["round"] == 1
    # a low bound above the rate gives no negative error bar, the rate still shows
    assert summary["win_rate_vs_sft"] == 0.6 and summary["win_rate_vs_sft_n"] is None
    assert summary["judgments_total"] is None and summary["rm_accuracy"] is None and summary["rl_algorithm"] is None
    assert html.count("<img ") == 1  # the win rate; everything else is not measured or a table
    assert "not measured" in section(html, "rl-curves") and "not measured" in section(html, "over-optimisation")
