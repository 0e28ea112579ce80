"""RL and DPO benchmarks against TRL: shared inputs, each side training for real, the printed JSON; and the speed-ups
of our trainers computing the same numbers as the plain code they replace.

The harness tests run reduced workloads (one layer, width 32, vocabulary 128, 8-token prompts and answers). The
end-to-end tests start both sides in their own processes (TRL from the `bench` extra) and are marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from alinea.bench import dpo as bench_dpo_module
from alinea.bench import rl as bench_rl_module
from alinea.bench.common import CHAT_TEMPLATE, word_level_tokenizer, words
from alinea.bench.dpo import DPOWorkload, bench_dpo, make_pairs
from alinea.bench.rl import RLWorkload, bench_rl, even_token_share, make_prompts, ours_config
from alinea.errors import UserError
from alinea.losses import IGNORE_INDEX, entropy_from_logits

TINY_MODEL = dict(n_layer=1, n_embd=32, n_head=2, vocab=128, n_positions=64)
TINY_RL = dict(**TINY_MODEL, prompt_len=8, response_len=8, batch=8, minibatch=4, k=2, steps=1, warmup=1)
TINY_DPO = DPOWorkload(**TINY_MODEL, batch_pairs=4, prompt_len=8, response_len=8, steps=2, warmup=1)
RESULT_KEYS = {"ours", "baseline", "unit", "ratio", "peak_rss_mb", "workload"}


@pytest.fixture
def fresh_accelerator_state():
    """Our sides run fp32; accelerate keeps one process-wide state, which an earlier test may have set to bf16."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def needs_trl():
    pytest.importorskip("trl", reason="the TRL baseline needs the bench extra: pip install -e '.[bench]'")


# ---------------------------------------------------------------------------------------------------------------------
# Shared inputs


def test_the_reward_is_the_share_of_even_word_ids():
    assert even_token_share(["p"] * 4, ["t2 t3 t4", "t5", "", "ok t10"], completion_ids=None) == [2 / 3, 0.0, 0.0, 1.0]


def test_prompts_are_random_words_fixed_by_the_seed():
    workload = RLWorkload(algorithm="rloo", **TINY_RL)
    prompts = make_prompts(workload)
    assert len(prompts) == (1 + 1) * 8 // 2  # (warmup + steps) x batch / k distinct prompts
    tokenizer = word_level_tokenizer(workload.vocab)
    for text in prompts:
        ids = tokenizer(text)["input_ids"]
        assert len(ids) == 8 and min(ids) >= 2 and max(ids) < 128  # never the pad (0) or eos (1) id
    assert make_prompts(workload) == prompts
    assert make_prompts(RLWorkload(algorithm="rloo", **{**TINY_RL, "seed": 1})) != prompts


def test_the_word_level_tokenizer_maps_ids_onto_themselves():
    tokenizer = word_level_tokenizer(128, chat_template=CHAT_TEMPLATE)
    assert tokenizer("t5 t127<eos>")["input_ids"] == [5, 127, 1]
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1 and len(tokenizer) == 128
    assert tokenizer.decode([5, 6, 1], skip_special_tokens=True) == "t5 t6"
    messages = [{"role": "user", "content": "t3 t4"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == "t3 t4"
    from alinea.model.tokenizer import stop_token_ids

    assert stop_token_ids(tokenizer) == [1]


def test_the_workload_derives_epochs_updates_and_beta_per_algorithm():
    assert RLWorkload(algorithm="ppo").n_epochs == 4 and RLWorkload(algorithm="rloo").n_epochs == 1
    assert RLWorkload(algorithm="ppo").updates_per_step == 16  # 4 epochs x 32 / 8
    assert RLWorkload(algorithm="grpo").updates_per_step == 4
    assert RLWorkload(algorithm="grpo").kl_coef == 0.04 and RLWorkload(algorithm="rloo").kl_coef == 0.05
    with pytest.raises(UserError, match="minibatch"):
        RLWorkload(algorithm="rloo", batch=32, minibatch=6).check()
    with pytest.raises(UserError, match="unknown RL algorithm"):
        RLWorkload(algorithm="a2c").check()
    with pytest.raises(UserError, match="precision 'fp16'; expected fp32 or bf16"):
        RLWorkload(algorithm="ppo", precision="fp16").check()


def test_our_config_does_the_workload(tmp_path):
    workload = RLWorkload(algorithm="grpo")
    cfg = ours_config(workload, tmp_path / "model", tmp_path / "prompts.jsonl", tmp_path)
    section = cfg.grpo
    assert (section.batch_size, section.minibatch_size, section.epochs, section.k) == (32, 8, 1, 4)
    assert (section.max_prompt_len, section.max_new_tokens, section.generation_batch_size) == (64, 64, 32)
    assert section.temperature == 1.0 and section.top_p == 1.0 and section.kl_coef == 0.04
    assert section.rewards == [bench_rl_module.BENCH_REWARD] and not section.penalise_missing_eos
    assert section.precision == "fp32"
    bf16 = ours_config(RLWorkload(algorithm="ppo", precision="bf16"), tmp_path / "model", tmp_path / "p.jsonl", tmp_path)
    assert bf16.ppo.precision == "bf16"


def test_our_ppo_config_reads_the_reward_model_and_trains_the_critic_at_the_policys_rate(tmp_path):
    workload = RLWorkload(algorithm="ppo")
    section = ours_config(workload, tmp_path / "model", tmp_path / "prompts.jsonl", tmp_path).ppo
    assert section.rewards == [str(bench_rl_module.reward_model_dir(tmp_path))]
    assert section.critic == "" and section.critic_lr == section.lr == workload.lr  # critic from the reward model
    assert (section.epochs, section.minibatch_size, section.batch_size) == (4, 8, 32)


def test_the_ppo_reward_model_is_one_for_transformers_and_for_us(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from alinea.bench.common import save_gpt2_reward_model
    from alinea.train.rewards import RewardModelSource, model_kind

    folder = save_gpt2_reward_model(tmp_path / "rm", **TINY_MODEL, seed=3)
    assert model_kind(folder) == "reward"
    hf = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True)
    ours = RewardModelSource(str(folder))
    assert ours.norm.shift == [0.0] and ours.norm.scale == [1.0]
    ids = torch.tensor([[5, 6, 7, 1]])
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0]
        assert torch.allclose(ours.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0], expected)
    again = save_gpt2_reward_model(tmp_path / "again", **TINY_MODEL, seed=3)
    assert torch.equal(AutoModelForSequenceClassification.from_pretrained(str(again)).score.weight, hf.score.weight)


def test_dpo_pairs_read_the_same_ids_through_the_baselines_text():
    prompts, chosen, rejected = make_pairs(TINY_DPO)
    assert prompts.shape == (12, 8) and chosen.shape == rejected.shape == (12, 8)
    assert bool((chosen[:, -1] == 1).all()) and bool((chosen[:, :-1] >= 2).all())
    tokenizer = word_level_tokenizer(TINY_DPO.vocab)
    prompt_text = words(prompts[0].tolist())
    answer_text = bench_dpo_module._answer_text(chosen[0])
    assert answer_text.endswith("<eos>")  # TRL adds no second eos
    assert tokenizer(prompt_text + answer_text)["input_ids"] == prompts[0].tolist() + chosen[0].tolist()


# ---------------------------------------------------------------------------------------------------------------------
# Our side, in this process


@pytest.mark.parametrize("algorithm", ["ppo", "rloo", "grpo"])
def test_our_rl_side_trains_and_times_each_phase(algorithm, one_torch_thread, fresh_accelerator_state):
    workload = RLWorkload(algorithm=algorithm, **TINY_RL)
    result = bench_rl_module.run_ours(workload)
    assert result["episodes_per_s"] == pytest.approx(workload.steps * workload.batch / result["elapsed_s"])
    assert math.isfinite(result["mean_loss"])
    assert result["param_change"] > 0  # the policy really moved
    expected = {"generate", "score", "reference", "advantages", "update"} | ({"values"} if algorithm == "ppo" else set())
    assert set(result["phase_s_per_step"]) == expected
    assert sum(result["phase_s_per_step"].values()) <= result["elapsed_s"] / workload.steps + 1e-3
    assert result["peak_rss_mb"] >= result["rss_setup_mb"] > 0


def test_our_dpo_side_starts_at_log_two_and_moves_the_weights(fresh_accelerator_state):
    result = bench_dpo_module.run_ours(TINY_DPO)
    assert result["pairs_per_s"] == pytest.approx(TINY_DPO.steps * TINY_DPO.batch_pairs / result["elapsed_s"])
    assert result["mean_loss"] == pytest.approx(math.log(2), abs=0.01)  # policy = reference at the start
    assert result["param_change"] > 0


def test_a_missing_trl_is_a_user_error_except_for_ppo(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real_find_spec(name, *a))
    monkeypatch.setattr(bench_rl_module, "_run_side", lambda side, workload: pytest.fail("no side may start"))
    with pytest.raises(UserError, match=r"pip install -e '\.\[bench\]'"):
        bench_rl(RLWorkload(algorithm="rloo", **TINY_RL))
    with pytest.raises(UserError, match=r"pip install -e '\.\[bench\]'"):
        bench_dpo(TINY_DPO)


def test_an_unknown_precision_is_refused_before_any_side_starts(monkeypatch):
    monkeypatch.setattr(bench_dpo_module, "_run_side", lambda side, workload: pytest.fail("no side may start"))
    with pytest.raises(UserError, match="bench dpo: precision 'fp16'; expected fp32 or bf16"):
        bench_dpo(dataclasses.replace(TINY_DPO, precision="fp16"))


def test_ppo_reports_ours_with_a_null_baseline(monkeypatch):
    seen = []

    def fake_side(side, workload):
        seen.append(side)
        return {"episodes_per_s": 4.0, "peak_rss_mb": 300.0, "phase_s_per_step": {"generate": 1.0, "update": 6.0}}

    monkeypatch.setattr(bench_rl_module, "_run_side", fake_side)
    result = bench_rl(RLWorkload(algorithm="ppo", **TINY_RL), rounds=2)
    assert seen == ["ours", "ours"]  # no TRL side at all
    assert RESULT_KEYS <= result.keys()
    assert result["baseline"] is None and result["ratio"] is None and result["unit"] == "episodes/s"
    assert result["ours"] == 4.0 and result["peak_rss_mb"] == {"ours": 300.0}
    assert result["phases"] == {"generate": 1.0, "update": 6.0}
    assert "no PPO trainer" in result["workload"]["baseline_library"]


def test_a_folder_without_a_ppo_trainer_is_refused_before_any_side_starts(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_rl_module, "_run_side", lambda side, workload: pytest.fail("no side may start"))
    (tmp_path / "trl").mkdir()  # a TRL without trl/experimental/ppo, as 1.13 and later
    with pytest.raises(UserError, match=r"no TRL with a PPO trainer.*pip install --no-deps --target .* trl==1\.12\.0"):
        bench_rl(RLWorkload(algorithm="ppo", **TINY_RL, trl_ppo=str(tmp_path)))


def test_ppo_with_a_trl_folder_runs_the_baseline_side_from_it(monkeypatch, tmp_path):
    trainer = tmp_path / "trl" / "experimental" / "ppo" / "ppo_trainer.py"
    trainer.parent.mkdir(parents=True)
    trainer.write_text("")
    started = []

    def fake_run_side(module, args, *, prefix, threads, what, python_path=""):
        side = args[args.index("--side") + 1]
        started.append((side, python_path))
        rate = 4.0 if side == "ours" else 1.0
        return {"episodes_per_s": rate, "peak_rss_mb": 300.0, "phase_s_per_step": {"update": 6.0},
                "library": "trl 1.12.0 PPOTrainer (trl.experimental.ppo)"}

    monkeypatch.setattr(bench_rl_module, "run_side", fake_run_side)
    result = bench_rl(RLWorkload(algorithm="ppo", **TINY_RL, trl_ppo=str(tmp_path)))
    assert started == [("ours", ""), ("baseline", str(tmp_path))]  # only the baseline imports the folder's TRL
    assert result["ours"] == 4.0 and result["baseline"] == 1.0 and result["ratio"] == 4.0
    assert result["workload"]["baseline_library"].startswith("trl 1.12.0 PPOTrainer")


def test_the_cli_prints_the_benchmark_json(monkeypatch):
    from typer.testing import CliRunner

    from alinea.cli import app

    calls = []

    def fake_bench(workload, rounds=1):
        calls.append(workload)
        workload.rounds_asked = rounds
        return {"ours": 2.0, "baseline": 1.0, "unit": "episodes/s", "ratio": 2.0, "peak_rss_mb": {"ours": 1.0, "baseline": 2.0},
                "phases": {}, "workload": {}}

    monkeypatch.setattr(bench_rl_module, "bench_rl", fake_bench)
    out = CliRunner().invoke(app, ["bench", "grpo", "--json", "--steps", "2"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.strip().splitlines()[-1])["ratio"] == 2.0
    assert calls[0].algorithm == "grpo" and calls[0].steps == 2 and calls[0].precision == "fp32"
    out = CliRunner().invoke(app, ["bench", "ppo", "--json", "--precision", "bf16"])
    assert out.exit_code == 0, out.output
    assert calls[-1].algorithm == "ppo" and calls[-1].precision == "bf16" and calls[-1].rounds_asked == 1
    out = CliRunner().invoke(app, ["bench", "rloo", "--json", "--rounds", "3"])
    assert out.exit_code == 0, out.output
    assert calls[-1].algorithm == "rloo" and calls[-1].rounds_asked == 3
    monkeypatch.setattr(bench_dpo_module, "bench_dpo", lambda workload, rounds=1: {**fake_bench(workload, rounds),
                                                                                    "unit": "pairs/s"})
    out = CliRunner().invoke(app, ["bench", "dpo", "--steps", "3"])
    assert out.exit_code == 0, out.output
    assert "ratio 2.00" in out.output and calls[-1].steps == 3 and calls[-1].precision == "fp32"
    out = CliRunner().invoke(app, ["bench", "dpo", "--precision", "bf16", "--rounds", "2"])
    assert out.exit_code == 0, out.output
    assert calls[-1].precision == "bf16" and calls[-1].rounds_asked == 2


# ---------------------------------------------------------------------------------------------------------------------
# Both sides, each in its own process


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_rl_bench_runs_both_sides_and_both_train(algorithm):
    needs_trl()
    result = bench_rl(RLWorkload(algorithm=algorithm, **TINY_RL))
    assert RESULT_KEYS <= result.keys()
    assert result["unit"] == "episodes/s" and result["ours"] > 0 and result["baseline"] > 0
    assert result["ratio"] == pytest.approx(result["ours"] / result["baseline"], rel=1e-2)
    assert set(result["peak_rss_mb"]) == {"ours", "baseline"}
    assert all(mb > 50 for mb in result["peak_rss_mb"].values())  # at least torch itself
    assert result["workload"]["baseline_library"].startswith("trl ")
    for side in ("ours", "baseline"):
        (run,) = result["detail"][side]
        assert run["threads"] == 2
        assert math.isfinite(run["mean_loss"]) and run["param_change"] > 0, (side, run)


def trl_ppo_folder():
    """TRL 1.12 as `make install` puts it (.venv/trl-1.12), or $ALINEA_TRL_PPO; skip when neither is there."""
    import os
    from pathlib import Path

    for folder in (os.environ.get("ALINEA_TRL_PPO", ""), str(Path(__file__).parents[2] / ".venv" / "trl-1.12")):
        if folder and (Path(folder) / "trl" / "experimental" / "ppo" / "ppo_trainer.py").is_file():
            return folder
    pytest.skip("TRL 1.12 (the last with a PPOTrainer) not found: make install puts it in .venv/trl-1.12")


@pytest.mark.slow
def test_ppo_bench_runs_trl_1_12_ppo_beside_ours_and_both_train():
    needs_trl()
    result = bench_rl(RLWorkload(algorithm="ppo", **TINY_RL, trl_ppo=trl_ppo_folder()))
    assert result["ours"] > 0 and result["baseline"] > 0
    assert result["ratio"] == pytest.approx(result["ours"] / result["baseline"], rel=1e-2)
    assert result["workload"]["baseline_library"].startswith("trl 1.12.0 PPOTrainer")
    for side in ("ours", "baseline"):
        (run,) = result["detail"][side]
        assert run["param_change"] > 0, (side, run)  # both policies moved


@pytest.mark.slow
def test_dpo_bench_runs_both_sides_and_both_train():
    needs_trl()
    result = bench_dpo(TINY_DPO)
    assert RESULT_KEYS <= result.keys() and result["unit"] == "pairs/s"
    assert result["ratio"] == pytest.approx(result["ours"] / result["baseline"], rel=1e-2)
    for side in ("ours", "baseline"):
        (run,) = result["detail"][side]
        assert run["param_change"] > 0, side
        # Same weights, same pairs, the same loss: both start at ln 2 and barely move at this learning rate.
        assert run["mean_loss"] == pytest.approx(math.log(2), abs=0.01), side


# ---------------------------------------------------------------------------------------------------------------------
# The speed-ups compute what the plain code computes


def _tiny_models():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=60, n_positions=64, bos_token_id=1,
                                      eos_token_id=1))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, bos_token_id=1,
                                         eos_token_id=1, pad_token_id=0))
    return [gpt2.eval(), llama.eval()]  # eval: GPT-2's dropout would make two forwards differ


def _grouped_rollout():
    """3 prompts x 2 answers; prompts of 6, 4 and 2 tokens (left-padded), some answers stopped early."""
    from alinea.train.rollout import Rollout

    generator = torch.Generator().manual_seed(1)
    prompt_ids, prompt_mask = torch.zeros(6, 6, dtype=torch.long), torch.zeros(6, 6, dtype=torch.long)
    for group, length in enumerate((6, 4, 2)):
        ids = torch.randint(2, 60, (length,), generator=generator)
        prompt_ids[2 * group:2 * group + 2, 6 - length:] = ids
        prompt_mask[2 * group:2 * group + 2, 6 - length:] = 1
    response_ids = torch.randint(2, 60, (6, 5), generator=generator)
    response_mask = torch.ones(6, 5, dtype=torch.long)
    response_mask[1, 3:] = 0
    response_mask[4, 1:] = 0
    response_ids[response_mask == 0] = 0
    return Rollout(prompt_ids, prompt_mask, response_ids, response_mask, torch.ones(6, dtype=torch.bool),
                   torch.tensor([0, 0, 1, 1, 2, 2]), [""] * 6, [""] * 6)


def test_shared_prompts_are_found_from_the_ids_and_masks():
    from alinea.train.rollout import _shared_prompts

    rollout = _grouped_rollout()
    first_rows, inverse = _shared_prompts(rollout)
    assert first_rows[inverse].tolist() == [0, 0, 2, 2, 4, 4]  # each row -> the first row with its prompt
    assert torch.equal(rollout.prompt_ids[first_rows][inverse], rollout.prompt_ids)
    singles = rollout.select(torch.tensor([0, 2, 4]))
    assert _shared_prompts(singles) is None  # every prompt once: the plain forward


def _lora_llama():
    """The tiny Llama with LoRA adapters (non-zero, so that they change the function) on q and v."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny_models()[1], LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                         lora_dropout=0.0, task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("which", ["gpt2", "llama", "llama-lora", "llama-lora-disabled"])
def test_answer_logits_with_shared_prompts_equal_one_full_forward(which):
    import contextlib

    from alinea.train.rollout import _full_answer_logits, answer_logits

    if which.startswith("llama-lora"):
        model = _lora_llama()
        context = model.disable_adapter() if which.endswith("disabled") else contextlib.nullcontext()
    else:
        model, context = _tiny_models()[0 if which == "gpt2" else 1], contextlib.nullcontext()
    rollout = _grouped_rollout()
    with torch.no_grad(), context:
        shared = answer_logits(model, rollout)
        full = _full_answer_logits(model, rollout, "cpu")
    assert shared.shape == full.shape == (6, 5, 60)
    assert torch.allclose(shared, full, atol=1e-5)


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_policy_log_probs_and_gradients_with_shared_prompts_equal_the_full_forward(which, monkeypatch):
    from alinea.train import rollout as rollout_module

    model = _tiny_models()[0 if which == "gpt2" else 1]
    rollout = _grouped_rollout()
    weights = torch.randn(6, 5, generator=torch.Generator().manual_seed(5)) * rollout.response_mask

    def logprobs_and_grads():
        logprobs, _ = rollout_module.policy_forward(model, rollout, temperature=0.7)
        grads = torch.autograd.grad((logprobs * weights).sum(), list(model.parameters()), allow_unused=True)
        return logprobs.detach(), grads

    shared, shared_grads = logprobs_and_grads()
    monkeypatch.setattr(rollout_module, "_shared_prompts", lambda rollout: None)  # the single full forward
    full, full_grads = logprobs_and_grads()
    mask = rollout.response_mask.bool()
    assert torch.allclose(shared[mask], full[mask], atol=1e-5)
    for a, b in zip(shared_grads, full_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)


def test_a_data_parallel_wrapper_gets_one_forward_with_gradients(monkeypatch):
    from alinea.train import rollout as rollout_module

    class Wrapper(torch.nn.Module):  # what DDP looks like from outside: the model as `.module`
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, **kwargs):
            return self.module(**kwargs)

    calls = []
    real = rollout_module._full_answer_logits
    monkeypatch.setattr(rollout_module, "_full_answer_logits", lambda *a: calls.append(1) or real(*a))
    wrapped = Wrapper(_tiny_models()[1])
    rollout_module.answer_logits(wrapped, _grouped_rollout())
    assert calls == [1]
    with torch.no_grad():  # without gradients the shared prompts are safe under any wrapper
        rollout_module.answer_logits(wrapped, _grouped_rollout())
    assert calls == [1]


def test_rollout_entropy_equals_the_reference_formula_even_with_minus_infinity():
    from alinea.losses import token_logprobs_and_entropy

    logits = torch.randn(3, 4, 50, generator=torch.Generator().manual_seed(2)) * 3
    logits[1, 2, 7] = float("-inf")  # a token with probability 0 contributes 0, not NaN
    targets = torch.zeros(3, 4, dtype=torch.long)
    for temperature in (1.0, 0.7):
        _, fast = token_logprobs_and_entropy(logits, targets, temperature=temperature)
        assert torch.isfinite(fast).all()
        assert torch.allclose(fast, entropy_from_logits(logits, temperature=temperature), atol=1e-4)
    _, uniform = token_logprobs_and_entropy(torch.zeros(1, 1, 8), torch.zeros(1, 1, dtype=torch.long))
    assert float(uniform) == pytest.approx(math.log(8), abs=1e-6)


def test_pair_prefix_lengths_stop_at_the_first_difference_or_padding(monkeypatch):
    from alinea.train import dpo

    # Pairs are (row 0, row 3), (row 1, row 4), (row 2, row 5): chosen rows first, then rejected.
    ids = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 9, 9, 9], [5, 6, 0, 0, 0],
                        [5, 6, 7, 3, 3], [4, 7, 9, 9, 9], [5, 6, 7, 0, 0]])
    mask = (ids != 0).long()
    ids_one_shared = ids.clone()
    ids_one_shared[4, 0] = 5
    assert dpo.MIN_SHARED_PREFIX > (3 + 1 + 2) / 3  # so short a shared prefix is not worth a second pass
    assert dpo._pair_prefix_lengths(ids_one_shared, mask) is None
    monkeypatch.setattr(dpo, "MIN_SHARED_PREFIX", 1)
    assert dpo._pair_prefix_lengths(ids, mask) is None  # pair 1 shares nothing: no prefix pass for it
    ids[4, 0] = 5
    # 3 equal tokens; 1; the padding of row 2 ends the shared run at 2
    assert dpo._pair_prefix_lengths(ids, mask).tolist() == [3, 1, 2]
    assert dpo._pair_prefix_lengths(ids[:5], mask[:5]) is None  # odd rows: not a DPO batch
    same = torch.tensor([[5, 6, 7], [5, 6, 7]])
    assert dpo._pair_prefix_lengths(same, torch.ones_like(same)).tolist() == [2]  # the last token runs in pass 2


@pytest.mark.parametrize("model_index", [0, 1], ids=["gpt2", "llama"])
def test_dpo_logps_and_gradients_with_the_shared_prompt_equal_the_plain_forward(model_index, monkeypatch):
    from alinea.train import dpo
    from alinea.train.padding import right_pad

    model = _tiny_models()[model_index]
    generator = torch.Generator().manual_seed(3)
    chosen, rejected, chosen_labels, rejected_labels = [], [], [], []
    for prompt_len, good_len, bad_len, common in ((12, 5, 7, 0), (9, 8, 3, 0), (10, 4, 6, 2)):
        prompt = torch.randint(2, 60, (prompt_len,), generator=generator).tolist()
        start = torch.randint(2, 60, (common,), generator=generator).tolist()  # answers may share a start too
        good = start + torch.randint(2, 60, (good_len,), generator=generator).tolist()
        bad = start + torch.randint(2, 60, (bad_len,), generator=generator).tolist()
        chosen.append(prompt + good)
        rejected.append(prompt + bad)
        chosen_labels.append([IGNORE_INDEX] * prompt_len + good)
        rejected_labels.append([IGNORE_INDEX] * prompt_len + bad)
    input_ids, mask = right_pad(chosen + rejected, 0)
    labels, _ = right_pad(chosen_labels + rejected_labels, IGNORE_INDEX)
    assert dpo._pair_prefix_lengths(input_ids, mask).tolist() == [12, 9, 12]

    def logps_and_grads():
        logps = dpo.sequence_logps(model, input_ids, mask, labels)
        grads = torch.autograd.grad(logps.sum(), [p for p in model.parameters()], allow_unused=True)
        return logps.detach(), grads

    shared, shared_grads = logps_and_grads()
    monkeypatch.setattr(dpo, "MIN_SHARED_PREFIX", 10**9)  # the plain single forward
    plain, plain_grads = logps_and_grads()
    assert torch.allclose(shared, plain, atol=1e-4)
    for a, b in zip(shared_grads, plain_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-4)
