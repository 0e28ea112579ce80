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
            "pretrain.max_steps=20",
            "pretrain.lr=3e-3",
        ],
    )
    result = run_demo(cfg)
    assert (result.data_dir / "corpus.txt").is_file()
    assert (result.tokenizer_dir / "tokenizer.json").is_file()
    assert (result.pretrain_run / "final" / "config.json").is_file()
    assert (result.sft_run / "final" / "model.safetensors").is_file()
    assert 1.0 < result.heldout_ppl < 500 and math.isfinite(result.sft_eval_loss)
    languages = {language for language, _, _ in result.samples}
    assert {"en", "fr", "es", "mg"} <= languages
    assert set(result.seconds) == {"data", "tokenizer", "pretrain", "sft", "reward", "samples"}
