"""The reward benchmark harness: shared inputs, each side in its own process, the printed numbers.

"ours" is a stand-in step defined here (`stand_in_step`), so the harness is tested independently of
`alinea.train.reward`; the TRL side runs for real on a tiny workload when TRL is installed.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from alinea.bench import reward as bench
from alinea.bench.reward import Workload, bench_reward, build_reward_model, make_pairs, run_ours
from alinea.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
STAND_IN = "tests.bench.test_bench_reward:stand_in_step"

TINY = Workload(n_layer=1, n_embd=32, n_head=2, vocab=128, n_positions=32, batch_pairs=4, prompt_len=8,
                response_len=8, steps=2, warmup=1)


def stand_in_step(model, *, lr: float):
    """The textbook step with the signature of `pairwise_bench_step`: Bradley-Terry loss, backward, AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def step(batch: dict[str, torch.Tensor]) -> float:
        chosen = model(input_ids=batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"]).logits
        rejected = model(input_ids=batch["rejected_input_ids"],
                         attention_mask=batch["rejected_attention_mask"]).logits
        loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def test_pairs_share_the_prompt_avoid_the_pad_id_and_follow_the_seed():
    chosen, rejected = make_pairs(TINY)
    n_pairs = TINY.batch_pairs * (TINY.warmup + TINY.steps)
    assert chosen.shape == rejected.shape == (n_pairs, 16)
    assert torch.equal(chosen[:, :8], rejected[:, :8])
    assert not torch.equal(chosen[:, 8:], rejected[:, 8:])
    assert int(torch.cat([chosen, rejected]).min()) >= 1 and int(chosen.max()) < TINY.vocab
    again, _ = make_pairs(TINY)
    other, _ = make_pairs(Workload(**{**TINY.__dict__, "seed": 1}))
    assert torch.equal(chosen, again) and not torch.equal(chosen, other)


def test_both_sides_start_from_the_same_weights_without_dropout():
    first, second = build_reward_model(TINY), build_reward_model(TINY)
    assert first.config.num_labels == 1 and first.config.pad_token_id == 0
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                   strict=True))
    assert all(m.p == 0 for m in first.modules() if isinstance(m, torch.nn.Dropout))


def test_ours_side_times_the_steps_and_reads_its_peak_memory():
    result = run_ours(TINY, STAND_IN)
    assert result["elapsed_s"] > 0
    assert result["pairs_per_s"] == pytest.approx(TINY.steps * TINY.batch_pairs / result["elapsed_s"])
    assert 0 < result["mean_loss"] < 2  # ln 2 = 0.693 at chance
    assert result["peak_rss_mb"] >= result["rss_setup_mb"] > 0


def test_the_cpu_clock_times_the_process_and_other_clocks_are_refused():
    result = run_ours(Workload(**{**TINY.__dict__, "clock": "cpu"}), STAND_IN)
    assert 0 < result["elapsed_s"] and result["pairs_per_s"] > 0
    with pytest.raises(ValueError, match="Workload.clock"):
        run_ours(Workload(**{**TINY.__dict__, "clock": "sundial"}), STAND_IN)


def test_each_side_gets_its_threads_and_wait_policy(monkeypatch):
    seen = []

    def fake_run(command, env, **kwargs):
        seen.append(env)
        return SimpleNamespace(returncode=0, stdout=bench.RESULT_PREFIX + '{"pairs_per_s": 1.0}\n', stderr="")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert bench._run_side("ours", TINY, STAND_IN) == {"pairs_per_s": 1.0}
    bench._run_side("baseline", Workload(**{**TINY.__dict__, "omp_wait_policy": ""}), STAND_IN)
    assert seen[0]["OMP_NUM_THREADS"] == str(TINY.threads) and seen[0]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in seen[1]


def test_a_missing_trl_is_a_user_error(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real_find_spec(name, *a))
    with pytest.raises(UserError, match=r"pip install -e '\.\[bench\]'"):
        bench_reward(TINY, ours_factory=STAND_IN)


def test_the_baseline_tokenizer_maps_ids_onto_themselves():
    pytest.importorskip("trl", reason="the TRL baseline needs the bench extra: pip install -e '.[bench]'")
    tokenizer = bench._word_level_tokenizer(TINY)
    assert len(tokenizer) == TINY.vocab and tokenizer.pad_token_id == 0
    assert tokenizer("t5 t127")["input_ids"] == [5, 127]


@pytest.mark.slow
def test_bench_reward_runs_both_sides_in_their_own_processes(monkeypatch):
    pytest.importorskip("trl", reason="the TRL baseline needs the bench extra: pip install -e '.[bench]'")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the child imports the stand-in from this module
    result = bench_reward(TINY, ours_factory=STAND_IN)

    assert {"ours", "baseline", "unit", "ratio", "peak_rss_mb", "workload"} <= result.keys()
    assert result["unit"] == "pairs/s"
    assert result["ours"] > 0 and result["baseline"] > 0
    assert result["ratio"] == pytest.approx(result["ours"] / result["baseline"], rel=1e-2)
    assert set(result["peak_rss_mb"]) == {"ours", "baseline"}
    assert all(mb > 50 for mb in result["peak_rss_mb"].values())  # at least torch itself
    assert result["workload"]["batch_pairs"] == 4 and result["workload"]["baseline_library"].startswith("trl ")
    assert len(result["workload"]["load_average_1m"]) == 2  # the machine's load, before and after
    for side in ("ours", "baseline"):
        (run,) = result["detail"][side]
        assert run["threads"] == TINY.threads
        assert math.isfinite(run["mean_loss"])
    # Same weights, same pairs, same optimizer and learning rate: the mean losses agree closely.
    assert result["detail"]["ours"][0]["mean_loss"] == pytest.approx(result["detail"]["baseline"][0]["mean_loss"],
                                                                     abs=1e-3)


@pytest.mark.slow
def test_our_real_step_trains_in_its_own_process():
    # The default factory: `alinea.train.reward.pairwise_bench_step` (shared-prompt forward, fp32), in a fresh
    # process as the benchmark runs it; the first of its steps sees the untrained model, so the mean loss is near
    # ln 2 and, with a small learning rate, stays there.
    result = bench._run_side("ours", TINY, bench.DEFAULT_OURS_FACTORY)
    assert result["pairs_per_s"] > 0 and result["threads"] == TINY.threads
    assert abs(result["mean_loss"] - math.log(2)) < 0.1
    assert result["peak_rss_mb"] >= result["rss_setup_mb"] > 0
