"""The loop: an end-to-end round over HTTP against a real `alinea serve`, resumption after a killed phase, bad config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alinea.config import load_config
from alinea.errors import UserError
from alinea.loop.rounds import PHASES, LoopState, run_loop
from tests.conftest import tiny_overrides

GOLD = "tests.train.rl_rewards:target_share"
HEADLINE = ("rounds", "win_rate_vs_sft", "gold_reward_sft", "gold_reward_final", "kl_final", "rm_accuracy",
            "language_consistency")


def loop_config(tmp: Path, policy: Path, prompts: Path, **loop):
    sets = {
        "policy": str(policy), "prompts": str(prompts), "eval_prompts": 12, "prompts_per_round": 16,
        "pairs_per_round": 16, "rl_steps": 3, "rm_steps": 4, "rm_update_steps": 2, "rounds": 1, "gold_judge": GOLD,
        "automated_rewards": [], "automated_weights": [], "annotators_honest": 3, "annotators_careless": 1,
    }
    sets.update(loop)
    overrides = tiny_overrides(tmp / "runs") + [
        "rloo.batch_size=8", "rloo.generation_batch_size=8", "rloo.max_new_tokens=12", "rloo.max_prompt_len=48",
        f"rloo.runs_dir={tmp / 'runs'}", "rloo.penalise_missing_eos=false",
    ]
    for key, value in sets.items():
        overrides.append(f"loop.{key}={json.dumps(value)}")
    return load_config(None, overrides)


@pytest.mark.slow
def test_resume_after_a_killed_phase_continues_from_the_next(rl_policy_dir, demo_data, tmp_path):
    cfg = loop_config(tmp_path, rl_policy_dir, demo_data["prompts"], judges="ai", active_curve=False)
    out = tmp_path / "loop"
    with pytest.raises(UserError, match="interrupted after round 1 phase 'reward'.*--resume"):
        run_loop(cfg, out, stop_after=lambda r, phase: phase == "reward")
    state = LoopState.load(out)
    assert (state.round, state.phase, state.done) == (1, "reward", False)
    assert state.reward_model and Path(state.reward_model).is_dir()
    candidates = (out / "round-1" / "candidates.jsonl").stat().st_mtime_ns
    with pytest.raises(UserError, match="already holds a loop"):
        run_loop(cfg, out)
    report = run_loop(None, out, resume=True)
    state = LoopState.load(out)
    assert state.done and state.phase == PHASES[-1]
    assert (out / "round-1" / "candidates.jsonl").stat().st_mtime_ns == candidates  # not generated again
    assert set(state.phase_seconds["1"]) == set(PHASES)
    summary = json.loads((out / "summary.json").read_text())
    assert all(key in summary for key in HEADLINE)
    assert report.is_file()


def test_bad_loop_settings_are_refused(rl_policy_dir, demo_data, tmp_path):
    for key, value, message in [
        ("selection", "greedy", "loop.selection"),
        ("judges", "robots", "loop.judges"),
        ("rl_algorithm", "a2c", "loop.rl_algorithm"),
        ("automated_weights", [1.0, 2.0], "loop.automated_weights"),
        ("eval_top_p", 0.0, "loop.eval_top_p"),
        ("annotator_workers", 0, "loop.annotator_workers"),
        ("eval_top_p", 1.5, "loop.eval_top_p"),
        ("eval_temperature", -0.5, "loop.eval_temperature"),
    ]:
        cfg = loop_config(tmp_path, rl_policy_dir, demo_data["prompts"], **{key: value})
        with pytest.raises(UserError, match=message):
            run_loop(cfg, tmp_path / f"bad-{key}")
    with pytest.raises(UserError, match="not a loop directory"):
        run_loop(None, tmp_path / "nothing", resume=True)


@pytest.mark.slow
def test_one_round_over_http_moves_the_policy(rl_policy_dir, demo_data, tmp_path, one_torch_thread):
    """A real `alinea serve` (subprocess, free port, SQLite): simulated annotators judge through the API, their
    judgments train the reward model, RL on it raises the gold reward above the SFT model's."""
    cfg = loop_config(
        tmp_path, rl_policy_dir, demo_data["prompts"], judges="simulated", pairs_per_round=48, prompts_per_round=24,
        rl_steps=32, rm_steps=60, overlap=2, gold_rate=0.1, flip_prob=0.0, position_bias=0.0, tie_rate=0.0,
        annotators_careless=0,  # every label is then a function of the item alone: the run is reproducible
        eval_samples=4,
        gold_judge="tests.train.rl_rewards:says_the",  # a preference a 2-layer reward model learns from ~70 pairs
    )
    cfg.rloo.max_new_tokens = 24
    cfg.rloo.lr = 2e-3
    cfg.rloo.batch_size = 16
    cfg.rloo.generation_batch_size = 16
    cfg.reward.lr = 1e-3
    out = tmp_path / "loop"
    run_loop(cfg, out)
    judgments = [json.loads(x) for x in (out / "round-1" / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) >= 32  # every pair judged by 2 annotators (plus gold items)
    assert {j["annotator"] for j in judgments} == {"sim-honest-0", "sim-honest-1", "sim-honest-2"}
    # The reward model was trained on exactly those judgments, annotators and all.
    reward_run = out / "round-1" / "reward"
    assert str(out / "round-1" / "judgments.jsonl") in (reward_run / "config.toml").read_text()
    reward_meta = json.loads((reward_run / "meta.json").read_text())
    assert sum(reward_meta["kinds"].values()) == len(judgments), reward_meta
    assert set(reward_meta["annotators"]) == {j["annotator"] for j in judgments}
    row = json.loads((out / "rounds.jsonl").read_text().splitlines()[0])
    assert row["gold_reward"]["policy"] > row["gold_reward"]["sft"], row["gold_reward"]
    quality = json.loads((out / "round-1" / "quality.json").read_text())
    assert quality["kinds"]["sim-honest-0"] == "honest"
    summary = json.loads((out / "summary.json").read_text())
    assert all(key in summary for key in HEADLINE)
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 5


def test_balance_languages_repeats_the_rarer_languages_up_to_the_largest():
    from alinea.data.records import Prompt
    from alinea.loop.rounds import balance_languages

    records = ([Prompt(id=f"en{i}", prompt="Hello there", language="en") for i in range(7)]
               + [Prompt(id=f"fr{i}", prompt="Bonjour à toi", language="fr") for i in range(3)]
               + [Prompt(id="mg0", prompt="Manao ahoana", language="mg")])
    out = balance_languages(records, seed=1)
    counts = {lang: sum(r.language == lang for r in out) for lang in ("en", "fr", "mg")}
    assert counts == {"en": 7, "fr": 7, "mg": 7}
    assert len({r.id for r in out}) == len(out)  # repeats get fresh ids
    assert [r.id for r in out if r.language == "en"] == [f"en{i}" for i in range(7)]  # the largest group untouched
    fr = [r.id.split("~")[0] for r in out if r.language == "fr"]
    assert sorted(fr.count(f"fr{i}") for i in range(3)) == [2, 2, 3]  # 7 = 2 full copies + 1 sampled
    assert [r.id for r in out if r.language == "mg"] == ["mg0"] + [f"mg0~{k}" for k in range(2, 8)]
    assert balance_languages(records, seed=1) == out  # seeded
    single = records[:7]
    assert balance_languages(single, seed=1) == single  # one language: nothing to balance
