"""DPO and best-of-n: pairs from records, cached reference log-probs, learning a preference built from a reward."""

from __future__ import annotations

import json

import pytest
import torch

from alinea.config import load_config
from alinea.data.jsonl import read_records, write_records
from alinea.data.records import parse_record
from alinea.errors import UserError
from alinea.model.causal_lm import load_model_and_tokenizer
from alinea.train import dpo
from alinea.train.best_of_n import preference_records, sample_candidates, summarise
from alinea.train.rewards import RewardMix
from alinea.train.rollout import encode_prompt_records

REWARD = "tests.train.rl_rewards:target_share"


def test_pairs_from_records_count_what_they_skip():
    records = [
        parse_record({"type": "comparison", "prompt": "p", "response_a": "x", "response_b": "y", "preference": "b"}),
        parse_record({"type": "comparison", "prompt": "p", "response_a": "x", "response_b": "y", "preference": "tie"}),
        parse_record({"type": "ranking", "prompt": "q", "responses": ["r1", "r2", "r3"], "ranks": [2, 1, 2]}),
        parse_record({"type": "thumb", "prompt": "q", "response": "r", "thumb": "up"}),
    ]
    pairs, skipped = dpo.pairs_from_records(records)
    assert [(p.chosen, p.rejected) for p in pairs] == [("y", "x"), ("r2", "r1"), ("r2", "r3")]
    assert skipped == {"ties": 1, "thumb records": 1}


def test_policy_equal_to_reference_gives_log_two(pretrained_dir):
    model, tokenizer = load_model_and_tokenizer(pretrained_dir)
    pairs = [dpo.PreferencePair([{"role": "user", "content": "Say hi"}], "hello there", "go away")] * 3
    encoded, dropped = dpo.encode_pairs(pairs, tokenizer, 64)
    assert dropped == 0
    dpo.fill_reference_logps(model, encoded, tokenizer.pad_token_id, batch_size=2, average=False)
    assert encoded[0].ref_chosen < 0 and encoded[0].ref_chosen == pytest.approx(encoded[2].ref_chosen)
    cfg = load_config(None).dpo
    loss_module = dpo.DPOLoss(model, cfg)
    batch = dpo.collate_pairs(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        loss, count = loss_module(batch)
    assert int(count) == 3
    assert float(loss) == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)
    # The answer's log-prob is the sum over its tokens only: prompt tokens carry no label.
    logps = dpo.sequence_logps(model, batch.input_ids, batch.attention_mask, batch.labels)
    assert float(logps[0].detach()) == pytest.approx(encoded[0].ref_chosen, abs=1e-4)


def test_pairs_of_one_prompt_share_a_group(pretrained_dir):
    _, tokenizer = load_model_and_tokenizer(pretrained_dir)
    hi, bye = [{"role": "user", "content": "Say hi"}], [{"role": "user", "content": "Say bye"}]
    pairs = [dpo.PreferencePair(hi, "hello", "go away"), dpo.PreferencePair(bye, "bye", "what"),
             dpo.PreferencePair(hi, "hi there", "no")]
    encoded, _ = dpo.encode_pairs(pairs, tokenizer, 64)
    assert [pair.group for pair in encoded] == [0, 1, 0]


def test_dpo_config_errors(pretrained_dir, tmp_path):
    cfg = load_config(None, [f"dpo.model={pretrained_dir}", f"dpo.runs_dir={tmp_path}", "dpo.loss=hinge"])
    with pytest.raises(UserError, match="dpo.loss: expected sigmoid or ipo"):
        dpo.run(cfg)
    cfg = load_config(None, [f"dpo.model={pretrained_dir}", f"dpo.runs_dir={tmp_path}", "dpo.label_smoothing=0.5"])
    with pytest.raises(UserError, match="label_smoothing"):
        dpo.run(cfg)
    ties = tmp_path / "ties.jsonl"
    ties.write_text(json.dumps({"type": "comparison", "prompt": "p", "response_a": "x", "response_b": "y",
                                "preference": "tie"}) + "\n")
    cfg = load_config(None, [f"dpo.model={pretrained_dir}", f"dpo.runs_dir={tmp_path}", f'dpo.data=["{ties}"]'])
    with pytest.raises(UserError, match="need at least 2 preference pairs"):
        dpo.run(cfg)


def _target_share(model, tokenizer, prompt_set, rewards, seed: int) -> float:
    candidates = sample_candidates(model, tokenizer, prompt_set, rewards, n=4, max_new_tokens=16, seed=seed)
    return sum(sum(c.scores) / len(c.scores) for c in candidates) / len(candidates)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_dpo_learns_pairs_built_from_a_reward(loss, rl_policy_dir, demo_data, tmp_path, one_torch_thread):
    model, tokenizer = load_model_and_tokenizer(rl_policy_dir)
    records = read_records(demo_data["prompts"])
    prompt_set = encode_prompt_records(records, tokenizer, max_prompt_len=48)
    rewards = RewardMix.from_config([REWARD], [])
    pairs = []
    for seed in (1, 2, 3):
        candidates = sample_candidates(model, tokenizer, prompt_set, rewards, n=4, max_new_tokens=16, seed=seed)
        summary = summarise(candidates, 4)
        assert summary["reward_best_of_n"] > summary["reward_sample"]
        pairs += preference_records(candidates, records)
    assert len(pairs) >= 90
    pairs_file = tmp_path / "pairs.jsonl"
    write_records(pairs_file, pairs)
    before = _target_share(model, tokenizer, prompt_set, rewards, seed=7)
    cfg = load_config(None, [
        f"dpo.model={rl_policy_dir}", f'dpo.data=["{pairs_file}"]', f"dpo.runs_dir={tmp_path}", f"dpo.loss={loss}",
        "dpo.max_steps=30", "dpo.batch_size=8", "dpo.lr=1e-3", "dpo.warmup_steps=2", "dpo.eval_every=15",
        "dpo.save_every=0", "dpo.max_len=96", "dpo.eval_fraction=0.15", "dpo.beta=0.3",
    ])
    result = dpo.run(cfg)
    evals = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["split"] == "eval"]
    assert evals[-1]["reward_margin"] > 0
    # held-out pairs: about 15, of prompts never trained on (each prompt's pairs are on one side; with single pairs
    # held out, most of their prompts were also trained on, and this read > 0.7)
    assert evals[-1]["reward_accuracy"] > 0.6, evals[-1]
    trained, _ = load_model_and_tokenizer(result.final_dir)
    after = _target_share(trained, tokenizer, prompt_set, rewards, seed=7)
    assert after > before + 0.15, (before, after)


def test_best_of_n_cli_writes_demonstrations_and_pairs(rl_policy_dir, demo_data, tmp_path, run_cli):
    out, pairs = tmp_path / "best.jsonl", tmp_path / "pairs.jsonl"
    code, stdout, _ = run_cli(
        "best-of-n", rl_policy_dir, "--prompts", demo_data["prompts"], "--reward", REWARD, "--n", "3",
        "--max-new-tokens", "12", "--out", out, "--pairs-out", pairs, "--json",
    )
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["kl_best_of_n"] == pytest.approx(torch.log(torch.tensor(3.0)).item() - 2 / 3)
    assert summary["reward_best_of_n"] >= summary["reward_sample"]
    assert summary["written"] == len(read_records(out)) > 0
    assert all(r.record_type == "comparison" for r in read_records(pairs))


def test_rl_cli_runs_and_weights_rewards(rl_policy_dir, demo_data, tmp_path, run_cli):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "grpo", "--policy", rl_policy_dir, "--prompts", demo_data["prompts"], "--reward", f"{REWARD}@2",
        "--reward", "tests.train.rl_rewards:length_reward@0.5", "--out", out,
        "--set", "grpo.max_steps=2", "--set", "grpo.batch_size=8", "--set", "grpo.generation_batch_size=8",
        "--set", "grpo.max_new_tokens=8", "--set", "grpo.max_prompt_len=48",
    )
    assert code == 0, stderr
    assert "grpo: 2 steps" in stdout
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    components = [k for k in rows[0] if k.startswith("reward/")]
    assert len(components) == 2
    # The total is the weighted sum of the components (no missing-EOS penalty when every answer ended)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["reward_sources"] == [REWARD, "tests.train.rl_rewards:length_reward"]
    code, _, stderr = run_cli("grpo", "--policy", rl_policy_dir, "--reward", "x@y")
    assert code == 2 and "must be a number" in stderr
