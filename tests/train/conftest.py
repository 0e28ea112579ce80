"""Fixtures of the training tests: a tiny policy that has seen enough text to have opinions (for the RL tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_overrides


@pytest.fixture(scope="session")
def rl_policy_dir(demo_data, tokenizer_dir, tmp_path_factory) -> Path:
    """A tiny model pretrained for 60 steps and fine-tuned for 20 on demonstrations: its final/ directory.

    Its next-token entropy is well below the uniform ln(600) = 6.4, so a few RL steps move a reward visibly."""
    from alinea.config import load_config
    from alinea.train import pretrain, sft

    runs = tmp_path_factory.mktemp("rl-policy")
    cfg = load_config(
        None,
        tiny_overrides(
            runs, **{"pretrain.max_steps": 60, "pretrain.lr": 3e-3, "sft.max_steps": 20, "sft.lr": 2e-3, "sft.batch_size": 8}
        )
        + [
            f"pretrain.corpus={demo_data['corpus']}",
            f"pretrain.tokenizer={tokenizer_dir}",
            f"sft.data={demo_data['demonstrations']}",
        ],
    )
    cfg.sft.model = str(pretrain.run(cfg).final_dir)
    return sft.run(cfg).final_dir
