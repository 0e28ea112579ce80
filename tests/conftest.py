"""Fixtures shared by the test suite: a small synthetic corpus, a tokenizer trained on it, a tiny model.

Everything is built once per session in a temporary folder and is small enough for milliseconds-to-seconds tests.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ALINEA_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["COLUMNS"] = "400"  # wide consoles: printed paths are never wrapped across lines

REPO_ROOT = Path(__file__).resolve().parents[1]

# A tiny Llama for tests: a forward+backward of a 8x32 batch takes milliseconds.
TINY_MODEL_OVERRIDES = [
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.num_kv_heads=2",
    "model.intermediate_size=64",
    "model.max_position_embeddings=128",
]


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> dict[str, Path]:
    """A small version of the embedded demo data: corpus.txt, prompts.jsonl, demonstrations.jsonl."""
    from alinea.data.synthetic import write_demo_data

    out = tmp_path_factory.mktemp("demo-data")
    return write_demo_data(out, n_documents=600, n_prompts=40, n_demonstrations=60, seed=0)


@pytest.fixture(scope="session")
def tokenizer_dir(demo_data, tmp_path_factory) -> Path:
    """A 600-token byte-level BPE trained on the small corpus, saved as a transformers tokenizer."""
    from alinea.data.corpus import read_documents
    from alinea.model.tokenizer import save_tokenizer, train_tokenizer

    tokenizer = train_tokenizer(read_documents(demo_data["corpus"]), vocab_size=600)
    return save_tokenizer(tokenizer, tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from alinea.model.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def tiny_overrides(tmp: Path, **extra: object) -> list[str]:
    """`--set` overrides for a tiny, fast pretrain/SFT run writing under `tmp`."""
    base = [
        *TINY_MODEL_OVERRIDES,
        f"pretrain.runs_dir={tmp}",
        f"sft.runs_dir={tmp}",
        "pretrain.seq_len=32",
        "pretrain.batch_size=8",
        "pretrain.max_steps=6",
        "pretrain.warmup_steps=2",
        "pretrain.eval_every=0",
        "pretrain.save_every=0",
        "pretrain.log_every=1",
        "pretrain.eval_batches=2",
        "sft.batch_size=4",
        "sft.max_steps=4",
        "sft.warmup_steps=1",
        "sft.log_every=1",
        "sft.max_len=96",
        "generate.max_new_tokens=8",
        f"reward.runs_dir={tmp}",
        "reward.batch_size=4",
        "reward.max_steps=4",
        "reward.warmup_steps=1",
        "reward.log_every=1",
        "reward.max_len=96",
    ]
    return base + [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items()]


@pytest.fixture(scope="session")
def pretrained_dir(demo_data, tokenizer_dir, tmp_path_factory) -> Path:
    """A tiny model pretrained for a few steps on the small corpus: its final/ checkpoint directory."""
    from alinea.config import load_config
    from alinea.train import pretrain

    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config(
        None,
        tiny_overrides(runs) + [f"pretrain.corpus={demo_data['corpus']}", f"pretrain.tokenizer={tokenizer_dir}"],
    )
    return pretrain.run(cfg).final_dir


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


RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(monkeypatch, capsys) -> RunCli:
    """run_cli(*args) -> (exit_code, stdout, stderr) of `alinea ARGS`, through the real entry point `main()`."""
    from alinea.cli import main

    def run(*args: object) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["alinea", *(str(a) for a in args)])
        capsys.readouterr()
        code: int = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run far faster on one thread when the machine is busy (two threads then spin on each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NOUNS = ["book", "film", "lamp", "trip", "meal", "song", "garden", "kettle", "story", "river"]
ADJECTIVES = ["good", "fine", "dull", "long", "short", "quiet", "bright", "cold", "warm", "plain"]


def excellent_comparisons(n: int, seed: int) -> list[dict]:
    """Pairs of short answers of one shape; the one that says "excellent" is preferred, on either side."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        noun = rng.choice(NOUNS)
        other, rest = rng.sample(ADJECTIVES, 2)
        good, bad = f"The {noun} was excellent and {rest}.", f"The {noun} was {other} and {rest}."
        a_first = rng.random() < 0.5
        rows.append({
            "type": "comparison", "prompt": f"What did you think of the {noun}?",
            "response_a": good if a_first else bad, "response_b": bad if a_first else good,
            "preference": "a" if a_first else "b",
        })
    return rows
