"""Pretraining: the held-out loss falls, runs resume exactly, two processes match one on the doubled batch."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alinea.config import load_config
from alinea.errors import UserError
from alinea.train import pretrain
from alinea.train.loop import Interrupted, TrainStep, example_indices
from alinea.train.runs import RunDir
from tests.conftest import REPO_ROOT, tiny_overrides


def _cfg(tmp_path, demo_data, tokenizer_dir, **extra):
    base = {"pretrain.corpus": demo_data["corpus"], "pretrain.tokenizer": tokenizer_dir}
    return load_config(None, tiny_overrides(tmp_path, **{**base, **extra}))


def _train_losses(run_dir: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in RunDir(run_dir).read_metrics("train")}


def test_example_order_is_a_pure_function_of_seed_and_step():
    kw = dict(n_examples=10, global_batch=4, grad_accum=1, seed=3)
    first = [example_indices(s, 0, **kw) for s in range(5)]
    assert first == [example_indices(s, 0, **kw) for s in range(5)]
    epoch0 = first[0] + first[1] + first[2][:2]
    assert sorted(epoch0) == list(range(10))  # each example once per epoch
    assert example_indices(0, 0, **{**kw, "seed": 4}) != first[0]


def test_pretraining_lowers_heldout_loss(tmp_path, demo_data, tokenizer_dir, tokenizer):
    cfg = _cfg(tmp_path, demo_data, tokenizer_dir, **{
        "pretrain.max_steps": 40, "pretrain.eval_every": 10, "pretrain.lr": 3e-3, "pretrain.warmup_steps": 4,
        "pretrain.log_every": 10,
    })
    result = pretrain.run(cfg)
    evals = [row["loss"] for row in RunDir(result.run_dir).read_metrics("eval")]
    assert len(evals) == 4
    assert evals[0] < math.log(len(tokenizer))  # already better than uniform after 10 steps
    assert evals[-1] < evals[0] - 0.3
    assert result.eval_loss == pytest.approx(evals[-1])
    run = RunDir(result.run_dir)
    assert (run.final_dir / "config.json").is_file() and (run.final_dir / "tokenizer.json").is_file()
    meta = run.meta()
    assert meta["seed"] == 0 and "torch" in meta["versions"] and meta["heldout_documents"] > 0
    assert run.config() == cfg
    assert any((run.path / "tb").iterdir())


def test_resume_after_interrupt_gives_the_same_losses(tmp_path, demo_data, tokenizer_dir, monkeypatch):
    extra = {"pretrain.max_steps": 6, "pretrain.save_every": 3}
    straight = pretrain.run(_cfg(tmp_path / "a", demo_data, tokenizer_dir, **extra))
    expected = _train_losses(straight.run_dir)
    assert sorted(expected) == [1, 2, 3, 4, 5, 6]

    original_step = TrainStep.step

    def interrupt_at_4(self, step, micro):
        if step == 4:
            raise KeyboardInterrupt
        return original_step(self, step, micro)

    monkeypatch.setattr(TrainStep, "step", interrupt_at_4)
    with pytest.raises(Interrupted, match="--resume") as err:
        pretrain.run(_cfg(tmp_path / "b", demo_data, tokenizer_dir, **extra))
    monkeypatch.setattr(TrainStep, "step", original_step)
    run_dir = Path(str(err.value).split("--resume ")[1].rstrip("`."))
    assert RunDir(run_dir).latest_checkpoint().name == "step-4"
    assert not (run_dir / "final").exists()

    resumed = pretrain.run(load_config(None), resume=run_dir)  # the config comes from the run directory
    assert resumed.run_dir == run_dir and resumed.steps == 6
    got = _train_losses(run_dir)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6)


def test_resume_rejects_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="not a run directory"):
        pretrain.run(load_config(None), resume=tmp_path)


def test_bad_inputs_are_user_errors(tmp_path, demo_data, tokenizer_dir):
    with pytest.raises(UserError, match="corpus file not found"):
        pretrain.run(_cfg(tmp_path, demo_data, tokenizer_dir, **{"pretrain.corpus": tmp_path / "none.txt"}))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("line one\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.txt:2: encoding: expected UTF-8"):
        pretrain.run(_cfg(tmp_path, demo_data, tokenizer_dir, **{"pretrain.corpus": latin1}))
    with pytest.raises(UserError, match="not a tokenizer directory"):
        pretrain.run(_cfg(tmp_path, demo_data, tokenizer_dir, **{"pretrain.tokenizer": tmp_path}))
    with pytest.raises(UserError, match="seq_len"):
        pretrain.run(_cfg(tmp_path, demo_data, tokenizer_dir, **{"pretrain.seq_len": 4096}))


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_doubled_batch(tmp_path, demo_data, tokenizer_dir):
    """accelerate launch with 2 CPU processes (gloo), batch 4 each == 1 process with batch 8."""
    extra = {"pretrain.max_steps": 4, "pretrain.eval_every": 2}
    single = pretrain.run(_cfg(tmp_path / "one", demo_data, tokenizer_dir, **extra))
    overrides = tiny_overrides(tmp_path / "two", **extra) + [
        f"pretrain.corpus={demo_data['corpus']}", f"pretrain.tokenizer={tokenizer_dir}", "pretrain.batch_size=4",
    ]
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists():
        pytest.skip("the accelerate launcher is not installed next to this Python")
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
        "-m", "alinea.cli", "pretrain", *[arg for o in overrides for arg in ("--set", o)],
    ]
    env = {**os.environ, "ALINEA_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [p for p in (tmp_path / "two").iterdir() if p.name.startswith("pretrain-")]
    assert len(runs) == 1, "both processes must share one run directory"
    meta = json.loads((runs[0] / "meta.json").read_text())
    assert meta["processes"] == 2
    one, two = _train_losses(single.run_dir), _train_losses(runs[0])
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=2e-4)
    eval_one = [r["loss"] for r in RunDir(single.run_dir).read_metrics("eval")]
    eval_two = [r["loss"] for r in RunDir(runs[0]).read_metrics("eval")]
    assert eval_two == pytest.approx(eval_one, abs=2e-4)
    shutil.rmtree(tmp_path / "two", ignore_errors=True)


def test_non_finite_loss_stops_with_step_batch_and_last_checkpoint(tmp_path, demo_data, tokenizer_dir, monkeypatch):
    original_step = TrainStep.step

    def nan_at_5(self, step, micro):
        metrics = original_step(self, step, micro)
        return {**metrics, "loss": float("nan")} if step == 4 else metrics

    monkeypatch.setattr(TrainStep, "step", nan_at_5)
    with pytest.raises(UserError) as err:
        pretrain.run(_cfg(tmp_path, demo_data, tokenizer_dir, **{"pretrain.max_steps": 6, "pretrain.save_every": 2}))
    message = str(err.value)
    assert "loss became nan at step 5" in message and "batch of training examples" in message
    run_dir = Path(message.split("--resume ")[1].rstrip("."))
    assert f"last good checkpoint is {run_dir / 'checkpoints' / 'step-4'}" in message
    assert RunDir(run_dir).latest_checkpoint().name == "step-4"
    assert not (run_dir / "final").exists()
