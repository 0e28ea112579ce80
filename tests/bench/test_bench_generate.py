"""The generation benchmark: shared inputs, both sides doing the same work, each in its own process, the JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from alinea.bench import generate as bench
from alinea.bench.generate import EOS_ID, Workload, bench_generate, build_lm, make_prompts, run_side
from alinea.model.generation import generate_ids

TINY = Workload(n_layer=1, n_embd=32, n_head=2, vocab=128, n_positions=32, batch=4, prompt_len=8, new_tokens=6,
                repeats=2, warmup=1)


def test_prompts_avoid_pad_and_end_of_sequence_and_follow_the_seed():
    prompts = make_prompts(TINY)
    assert prompts.shape == (4, 8)
    assert int(prompts.min()) >= 2 and int(prompts.max()) < TINY.vocab
    assert torch.equal(prompts, make_prompts(TINY))
    assert not torch.equal(prompts, make_prompts(replace(TINY, seed=1)))


def test_both_sides_compute_the_same_model():
    # Greedy, both sides must produce the same tokens: same weights, prompts, positions and stop rule.
    model = build_lm(TINY)
    prompts = make_prompts(TINY)
    mask = torch.ones_like(prompts)
    ours, finished = generate_ids(model, prompts, mask, max_new_tokens=6, min_new_tokens=6, stop_ids=[EOS_ID],
                                  pad_id=0, temperature=0.0)
    theirs = model.generate(input_ids=prompts, attention_mask=mask, do_sample=False, max_new_tokens=6,
                            min_new_tokens=6, eos_token_id=EOS_ID, pad_token_id=0)[:, 8:]
    assert torch.equal(ours, theirs)
    assert not bool(finished.any())


@pytest.mark.parametrize("side", ["ours", "baseline"])
def test_each_side_samples_exactly_the_workload_and_reports_its_rate(side):
    result = run_side(side, TINY)
    assert result["elapsed_s"] > 0
    assert result["tokens_per_s"] == pytest.approx(2 * 4 * 6 / result["elapsed_s"])
    assert result["s_per_call"] == pytest.approx(result["elapsed_s"] / 2)
    assert result["peak_rss_mb"] >= result["rss_setup_mb"] > 0


def test_a_side_that_samples_fewer_tokens_is_an_error(monkeypatch):
    monkeypatch.setattr(bench, "sampler_for", lambda side, workload, model: lambda: torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(RuntimeError, match=r"sampled \(4, 5\) tokens, not \(4, 6\)"):
        run_side("ours", TINY)


@pytest.mark.slow
def test_bench_generate_runs_both_sides_in_their_own_processes():
    result = bench_generate(TINY)
    assert {"ours", "baseline", "unit", "ratio", "peak_rss_mb", "workload", "detail"} <= result.keys()
    assert result["unit"] == "tokens/s"
    assert result["ours"] > 0 and result["baseline"] > 0
    assert result["ratio"] == pytest.approx(result["ours"] / result["baseline"], rel=1e-2)
    assert all(mb > 50 for mb in result["peak_rss_mb"].values())  # at least torch itself
    assert "exactly 6 new tokens each on both sides" in result["workload"]["sampling"]
    assert result["workload"]["baseline_library"].startswith("transformers ")
    for side in ("ours", "baseline"):
        (run,) = result["detail"][side]
        assert run["threads"] == TINY.threads


def test_cli_prints_the_json_keys(run_cli, monkeypatch):
    real = bench.bench_generate

    def tiny_bench(workload, *, rounds):
        return real(replace(TINY, repeats=workload.repeats, threads=workload.threads), rounds=rounds)

    monkeypatch.setattr(bench, "bench_generate", tiny_bench)
    monkeypatch.setattr(bench, "_run_child", run_side)  # in this process: the command is what is tested here
    code, out, _ = run_cli("bench", "generate", "--json", "--repeats", "1", "--threads", "1")
    assert code == 0
    result = json.loads(out)
    assert {"ours", "baseline", "unit", "ratio", "peak_rss_mb"} <= result.keys()
    assert result["workload"]["repeats"] == 1 and result["workload"]["threads"] == 1
    assert result["workload"]["precision"] == "float32"


def test_bfloat16_runs_both_sides_in_bf16(monkeypatch):
    seen = []
    real = bench.sampler_for

    def spy(side, workload, model):
        seen.append((side, next(model.parameters()).dtype))
        return real(side, workload, model)

    monkeypatch.setattr(bench, "sampler_for", spy)
    for side in ("ours", "baseline"):
        result = run_side(side, replace(TINY, dtype="bfloat16"))
        assert result["tokens_per_s"] > 0
    assert seen == [("ours", torch.bfloat16), ("baseline", torch.bfloat16)]
    with pytest.raises(ValueError, match="float16"):
        bench_generate(replace(TINY, dtype="float16"))


def test_cli_rejects_a_bad_device(run_cli):
    code, _, err = run_cli("bench", "generate", "--device", "tpu")
    assert code == 2 and "--device" in err
    code, _, err = run_cli("bench", "generate", "--dtype", "int8")
    assert code == 2 and "--dtype" in err
