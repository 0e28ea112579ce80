"""End to end: the demo pipeline on a tiny configuration."""

import math

import pytest

from alinea.config import load_config
from alinea.loop.demo import run_demo
from tests.conftest import tiny_overrides


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path):
    cfg = load_config(
        None,
        tiny_overrides(tmp_path) + [
            f"demo_data.out_dir={tmp_path / 'data'}",
            "demo_data.n_documents=300",
            "demo_data.n_prompts=30",
            "demo_data.n_demonstrations=40",
            "tokenizer.vocab_size=500",
            "demo_data.n_prompts=40",
            "demo_data.n_refusals=8",
            "pretrain.max_steps=20",
            "pretrain.lr=3e-3",
            "loop.eval_prompts=12",
            "loop.prompts_per_round=12",
            "loop.pairs_per_round=12",
            "loop.rounds=1",
            "loop.rm_steps=3",
            "loop.rl_steps=2",
            "rloo.batch_size=8",
            "rloo.generation_batch_size=8",
            "rloo.max_new_tokens=8",
            "rloo.max_prompt_len=48",
            f"rloo.runs_dir={tmp_path}",
            "loop.safety_eval=false",
        ],
    )
    result = run_demo(cfg)
    assert (result.data_dir / "corpus.txt").is_file()
    assert (result.tokenizer_dir / "tokenizer.json").is_file()
    assert (result.pretrain_run / "final" / "config.json").is_file()
    assert (result.sft_run / "final" / "model.safetensors").is_file()
    assert 1.0 < result.heldout_ppl < 500 and math.isfinite(result.sft_eval_loss)
    assert set(result.seconds) == {"data", "tokenizer", "pretrain", "sft", "loop"}
    assert result.report.is_file() and (result.loop_dir / "summary.json").is_file()
    for key in ("rounds", "win_rate_vs_sft", "gold_reward_sft", "gold_reward_final", "kl_final", "rm_accuracy",
                "language_consistency"):
        assert key in result.summary
    assert result.summary["rounds"] == 1
    judgments = (result.loop_dir / "round-1" / "judgments.jsonl").read_text().splitlines()
    assert len(judgments) >= 12  # simulated annotators judged through the embedded app
