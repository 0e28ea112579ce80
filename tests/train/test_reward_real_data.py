"""scripts/hh_reward.sh on a small slice of the real HH-RLHF file: the whole recipe runs, and its numbers add up.

The first 800 rows of ../shared/data/hh-rlhf/harmless-base/train-portion.jsonl.gz (which hold the file's three
known bad rows, see docs/data.md), a 2-layer width-32 Llama pretrained for a few steps on the SST sentences and
the training side's transcripts, a reward model trained for a few steps. Skipped, saying why, without the shared
data (the same location as tests/data/test_shared_datasets.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alinea.data.jsonl import read_records
from alinea.data.split import group_key
from tests.conftest import REPO_ROOT, TINY_MODEL_OVERRIDES
from tests.data.conftest import SHARED_DATA

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

HH = SHARED_DATA / "hh-rlhf" / "harmless-base" / "train-portion.jsonl.gz"
ROWS = 800
BAD_ROWS = [356, 632, 758]  # empty final chosen reply: docs/data.md, "What the real files in shared/data hold"
SMALL = [
    *TINY_MODEL_OVERRIDES,
    "tokenizer.vocab_size=600",
    "pretrain.seq_len=64", "pretrain.batch_size=8", "pretrain.max_steps=2", "pretrain.warmup_steps=1",
    "pretrain.eval_every=0", "pretrain.save_every=0", "pretrain.eval_batches=1",
    "reward.max_steps=3", "reward.batch_size=4", "reward.warmup_steps=1", "reward.eval_every=0",
    "reward.save_every=0", "reward.eval_fraction=0.05", "reward.max_len=64",
]


def run_script(out: Path, **env: str) -> subprocess.CompletedProcess:
    variables = os.environ | {
        "HH_OUT": str(out), "ALINEA": str(Path(sys.executable).parent / "alinea"), "OMP_NUM_THREADS": "1",
        "SHARED_DATA": str(SHARED_DATA),
    } | env
    return subprocess.run(
        ["bash", "scripts/hh_reward.sh"], cwd=REPO_ROOT, env=variables, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    if not HH.is_file():
        pytest.skip(f"shared data file not found: expected {HH.resolve()} (the folder shared/data beside the repository)")
    out = tmp_path_factory.mktemp("hh") / "run"
    result = run_script(
        out, HH_ROWS=str(ROWS), HH_SENTIMENT="0", HH_CORPORA="sst/train.txt", HH_SET=" ".join(SMALL)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_the_known_bad_rows_are_skipped_and_reported(small_run):
    records = read_records(small_run / "hh.jsonl", expected_type="comparison")
    assert len(records) == ROWS - len(BAD_ROWS)
    reported = (small_run / "import_skipped.txt").read_text(encoding="utf-8")
    found = [int(n) for n in re.findall(r"\.jsonl:(\d+): chosen: a non-empty final assistant reply", reported)]
    assert found == BAD_ROWS
    assert f"{len(BAD_ROWS)} rows skipped" in reported


def test_the_held_out_side_is_disjoint_from_the_training_side(small_run):
    train = read_records(small_run / "split" / "train.jsonl")
    heldout = read_records(small_run / "split" / "heldout.jsonl")
    assert len(train) + len(heldout) == ROWS - len(BAD_ROWS)
    assert len(heldout) == round(0.15 * len({group_key(r, "prompt") for r in train + heldout}))
    for by in ("prompt", "item"):
        assert not {group_key(r, by) for r in train} & {group_key(r, by) for r in heldout}
    meta = json.loads((small_run / "reward" / "meta.json").read_text(encoding="utf-8"))
    assert meta["train_examples"] + meta["eval_examples"] == len(train)  # trained on the training side only


def test_eval_counts_every_held_out_comparison_and_its_metrics_are_finite(small_run):
    heldout = read_records(small_run / "split" / "heldout.jsonl")
    metrics = json.loads((small_run / "heldout_eval.json").read_text(encoding="utf-8"))
    decided = [r for r in heldout if r.preference != "tie"]
    assert len(decided) == len(heldout)  # HH has no ties
    assert metrics["n"] == metrics["n_examples"] == len(decided)
    assert metrics["ties"] == 0
    for name in ("accuracy", "ece", "loss", "log_likelihood"):
        assert math.isfinite(metrics[name]), (name, metrics)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["ece"] <= 1.0
    assert metrics["log_likelihood"] < 0.0
    # Transcripts longer than reward.max_len=64 tokens are cut (counted): nearly all of them at this length.
    assert metrics["skipped"]["prompt cut from the left"] + metrics["skipped"].get("response cut from the right", 0) > 0


def test_the_script_refuses_to_overwrite_and_names_missing_data(tmp_path, small_run):
    existing = run_script(small_run, HH_SENTIMENT="0")
    assert existing.returncode == 2 and "already exists" in existing.stderr
    missing = run_script(tmp_path / "new", SHARED_DATA=str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert f"the shared data sets are missing: expected the folder {tmp_path / 'nowhere'}" in missing.stderr
    assert not (tmp_path / "new").exists()
