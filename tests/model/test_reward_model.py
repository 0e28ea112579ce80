"""Reward models: head initialisation, no dropout, ensembles, normalisation, plain-transformers loading, bad input,
and the shared-prefix forward (same rewards and gradients as the plain forward, with less work)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alinea.config import load_config
from alinea.data.jsonl import read_records, write_jsonl
from alinea.errors import UserError
from alinea.model.reward import (
    NORMALISATION_KEY,
    build_reward_model,
    linear,
    load_reward_model,
    normalisation_of,
    pack_shared_prefixes,
    score_head,
    shared_prefix_rewards,
    supports_shared_prefix,
)
from alinea.train import reward
from alinea.train.padding import right_pad
from alinea.train.reward import Encoder, _score_sequences, encode_records, score_records
from tests.conftest import excellent_comparisons, tiny_overrides

ENSEMBLE = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reward_cfg(tmp: Path, model: Path, data: Path, **extra: object):
    base = {
        "reward.model": model, "reward.data": json.dumps([str(data)]), "reward.runs_dir": tmp,
        "reward.max_steps": 8, "reward.warmup_steps": 1, "reward.batch_size": 8, "reward.lr": 3e-3,
        "reward.eval_every": 0, "reward.save_every": 0, "reward.max_len": 48,
    }
    return load_config(None, tiny_overrides(tmp, **{**base, **extra}))


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, pretrained_dir):
    """A 3-head reward model trained a few steps on every record (eval_fraction 0: all are training responses)."""
    tmp = tmp_path_factory.mktemp("reward-ensemble")
    data = tmp / "train.jsonl"
    write_jsonl(data, excellent_comparisons(48, seed=0))
    cfg = reward_cfg(tmp, pretrained_dir, data, **{"reward.ensemble": ENSEMBLE, "reward.eval_fraction": 0.0})
    result = reward.run(cfg, out=tmp / "rm")
    return cfg, data, result


def sequences_of(tokenizer, cfg, data: Path) -> list[list[int]]:
    examples, _, _ = encode_records(read_records(data), tokenizer, cfg.reward, {})
    return [s for e in examples for s in e.sequences]


# ---------------------------------------------------------------------------------------------------------------------
# A fresh reward model


def test_new_head_is_scaled_to_the_width_and_seeded(pretrained_dir):
    model, tokenizer = build_reward_model(pretrained_dir, ensemble=8, seed=0)
    head = score_head(model)
    assert head.weight.shape == (8, head.in_features) and model.config.num_labels == 8
    expected = 1.0 / math.sqrt(head.in_features + 1)
    weights = head.weight.detach().flatten()
    assert abs(float(weights.std()) - expected) < 0.2 * expected
    assert abs(float(weights.mean())) < 4 * expected / math.sqrt(weights.numel())
    assert head.bias is None or float(head.bias.abs().max()) == 0
    again, _ = build_reward_model(pretrained_dir, ensemble=8, seed=0)
    other, _ = build_reward_model(pretrained_dir, ensemble=8, seed=1)
    assert torch.equal(score_head(again).weight, head.weight)
    assert not torch.equal(score_head(other).weight, head.weight)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert getattr(model.config, NORMALISATION_KEY, None) is None


def test_dropout_is_switched_off(pretrained_dir, tmp_path):
    copy = tmp_path / "with-dropout"
    shutil.copytree(pretrained_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["attention_dropout"] = 0.3
    (copy / "config.json").write_text(json.dumps(config))
    model, _ = build_reward_model(copy)
    values = {k: v for k, v in model.config.to_dict().items() if "dropout" in k or k.endswith("pdrop")}
    assert values and all(v == 0 for v in values.values() if isinstance(v, float)), values
    assert model.config.attention_dropout == 0.0


def test_rewards_are_read_at_the_last_real_token(pretrained_dir):
    model, tokenizer = build_reward_model(pretrained_dir, ensemble=2)
    model.eval()
    sequence = tokenizer("The lamp was excellent.", add_special_tokens=False)["input_ids"]
    alone = _score_sequences(model, [sequence], tokenizer.pad_token_id, batch_size=4)
    padded = _score_sequences(model, [sequence, sequence + sequence + sequence], tokenizer.pad_token_id, 4)
    assert alone.shape == (1, 2)
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# A trained ensemble


def test_ensemble_heads_disagree(ensemble_run):
    cfg, data, result = ensemble_run
    model, tokenizer = load_reward_model(result.run_dir)
    records = read_records(data)[:10]
    scored = score_records(model, tokenizer, records, max_len=cfg.reward.max_len)
    assert len(scored) == 10 and all(len(pair) == 2 for pair in scored)
    assert all(std > 0 for pair in scored for _, std in pair)
    raw = _score_sequences(model, sequences_of(tokenizer, cfg, data)[:20], tokenizer.pad_token_id, 8)
    assert raw.shape == (20, ENSEMBLE)
    assert not torch.allclose(raw[:, 0], raw[:, 1]) and not torch.allclose(raw[:, 1], raw[:, 2])


def test_normalisation_gives_training_responses_mean_0_std_1(ensemble_run):
    cfg, data, result = ensemble_run
    model, tokenizer = load_reward_model(result.final_dir)
    stored = getattr(model.config, NORMALISATION_KEY)
    assert stored["reference"] == "training responses" and stored["ensemble"] == ENSEMBLE
    raw = _score_sequences(model, sequences_of(tokenizer, cfg, data), tokenizer.pad_token_id, 16)
    assert raw.shape == (96, ENSEMBLE)
    normalised = normalisation_of(model).apply(raw)
    assert normalised.mean(dim=0).abs().max() < 1e-4
    assert (normalised.std(dim=0, unbiased=False) - 1).abs().max() < 1e-4
    report = json.loads((result.run_dir / "eval.json").read_text())
    assert report["normalisation"] == {"shift": stored["shift"], "scale": stored["scale"]}


def test_normalisation_uses_the_reference_demonstrations(tmp_path, pretrained_dir):
    data, reference = tmp_path / "train.jsonl", tmp_path / "reference.jsonl"
    write_jsonl(data, excellent_comparisons(16, seed=3))
    demos = [{"type": "demonstration", "prompt": f"Tell me about the {w}.", "response": f"The {w} was {a}."}
             for w in ("lamp", "kettle", "garden", "river") for a in ("fine", "excellent", "cold")]
    write_jsonl(reference, demos)
    cfg = reward_cfg(tmp_path, pretrained_dir, data, **{"reward.reference": reference, "reward.max_steps": 2})
    result = reward.run(cfg, out=tmp_path / "rm")
    model, tokenizer = load_reward_model(result.final_dir)
    assert getattr(model.config, NORMALISATION_KEY)["reference"] == str(reference)
    encoder = Encoder(tokenizer, cfg.reward.max_len)
    sequences = [encoder.sequence(r.prompt_messages(), r.response) for r in read_records(reference)]
    normalised = normalisation_of(model).apply(_score_sequences(model, sequences, tokenizer.pad_token_id, 5))
    assert abs(float(normalised.mean())) < 1e-4
    assert abs(float(normalised.std(unbiased=False)) - 1) < 1e-4


def test_plain_transformers_reads_the_same_rewards(ensemble_run):
    cfg, data, result = ensemble_run
    config = json.loads((result.final_dir / "config.json").read_text())
    stored = config[NORMALISATION_KEY]
    assert len(stored["shift"]) == len(stored["scale"]) == ENSEMBLE == len(config["id2label"])
    assert all(s > 0 for s in stored["scale"])
    plain = AutoModelForSequenceClassification.from_pretrained(str(result.final_dir)).eval()
    ours, tokenizer = load_reward_model(result.run_dir)
    records = read_records(data)[:6]
    encoder = Encoder(tokenizer, cfg.reward.max_len)
    sequences = [encoder.sequence(r.prompt_messages(), t) for r in records for t in r.response_texts()]
    ids = torch.full((len(sequences), max(map(len, sequences))), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    with torch.no_grad():
        plain_logits = plain(input_ids=ids, attention_mask=mask).logits
        our_logits = ours(input_ids=ids, attention_mask=mask).logits
    assert plain_logits.shape == (12, ENSEMBLE)
    assert torch.allclose(plain_logits, our_logits, atol=1e-6)
    raw = _score_sequences(ours, sequences, tokenizer.pad_token_id, 4)
    assert torch.allclose(plain_logits, raw, atol=1e-5)
    # The stored shift and scale turn plain logits into the rewards `score_records` reports.
    normalised = (plain_logits - torch.tensor(stored["shift"])) / torch.tensor(stored["scale"])
    scored = [m for pair in score_records(ours, tokenizer, records, max_len=cfg.reward.max_len) for m, _ in pair]
    assert torch.allclose(normalised.mean(dim=-1), torch.tensor(scored), atol=1e-5)


def test_a_trained_model_is_a_starting_point(ensemble_run):
    _, _, result = ensemble_run
    trained, _ = load_reward_model(result.final_dir)
    same, _ = build_reward_model(result.final_dir, ensemble=ENSEMBLE, seed=5)
    assert torch.equal(score_head(same).weight, score_head(trained).weight)  # the head is kept
    assert getattr(same.config, NORMALISATION_KEY, None) is None  # and measured again after training
    wider, _ = build_reward_model(result.final_dir, ensemble=ENSEMBLE + 1, seed=5)
    assert score_head(wider).weight.shape[0] == ENSEMBLE + 1


# ---------------------------------------------------------------------------------------------------------------------
# Bad input


def test_load_reward_model_refuses_other_folders(pretrained_dir, tmp_path):
    with pytest.raises(UserError, match="not an alinea reward model"):
        load_reward_model(pretrained_dir)
    with pytest.raises(UserError, match="not a reward model directory"):
        load_reward_model(tmp_path)
    with pytest.raises(UserError, match="not a model checkpoint directory"):
        build_reward_model(tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# The shared-prefix forward


def test_packing_shares_each_groups_prefix_and_keeps_the_last_token_apart():
    groups = [[[5, 6, 7, 8], [5, 6, 9]], [[3, 4]], [[2, 3, 4], [2, 3, 4, 5]]]
    packed = pack_shared_prefixes(groups, pad_id=0)
    # Prefixes [5, 6], [3] (a single sequence keeps its last token apart) and [2, 3] (the shorter sequence would be
    # all prefix: its last token stays a suffix); then the suffixes in order.
    assert packed.tokens.tolist() == [5, 6, 3, 2, 3] + [7, 8] + [9] + [4] + [4] + [4, 5]
    assert packed.positions.tolist() == [0, 1, 0, 0, 1] + [2, 3] + [2] + [1] + [2] + [2, 3]
    assert packed.prefix_lengths.tolist() == [2, 1, 2] and packed.suffix_lengths.tolist() == [2, 1, 1, 1, 2]
    assert packed.group.tolist() == [0, 0, 1, 2, 2] and packed.group_size == 0
    assert packed.readout.tolist() == [6, 7, 8, 9, 11]  # rows of 8, 9, 4, 4, 5: each sequence's last token
    assert (packed.prefix_width, packed.suffix_width, packed.n_prefix_tokens) == (2, 2, 5)
    # Padded layouts: prefix slots (3 x 2), suffix slots (5 x 2); padded slots point at row 0.
    assert packed.prefix_rows.tolist() == [0, 1, 2, 0, 3, 4]
    assert packed.prefix_slots.tolist() == [0, 1, 2, 4, 5]
    assert packed.suffix_rows.tolist() == [0, 1, 2, 0, 3, 0, 4, 0, 5, 6]
    assert packed.suffix_slots.tolist() == [0, 1, 2, 4, 6, 8, 9]


def test_packing_without_padding_needs_no_gather_and_refuses_what_it_cannot_read():
    packed = pack_shared_prefixes([[[1, 2, 3], [1, 2, 4]], [[5, 6, 7], [5, 6, 8]]], pad_id=0)
    assert packed.group_size == 2 and packed.prefix_width == 2 and packed.suffix_width == 1
    assert packed.prefix_rows is packed.suffix_rows is packed.prefix_slots is packed.suffix_slots is None
    assert pack_shared_prefixes([[[1, 2, 0]]], pad_id=0) is None  # transformers would read the 2, not the pad
    assert pack_shared_prefixes([[[1, 2], []]], pad_id=0) is None


def tiny_gpt2(**overrides):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = dict(n_layer=3, n_embd=32, n_head=4, vocab_size=50, n_positions=64, num_labels=2, pad_token_id=0,
                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    return GPT2ForSequenceClassification(GPT2Config(**{**config, **overrides}))


def tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = dict(num_hidden_layers=3, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=48, vocab_size=50, max_position_embeddings=64, num_labels=2, pad_token_id=0)
    torch.manual_seed(0)
    return LlamaForSequenceClassification(LlamaConfig(**{**config, **overrides}))


def random_groups(seed: int, sizes: list[int]) -> list[list[list[int]]]:
    """Per group a prompt of 0-10 tokens, then answers of 1-8 tokens (ids 1..49, never the pad id 0)."""
    generator = torch.Generator().manual_seed(seed)

    def tokens(low: int, high: int) -> list[int]:
        n = int(torch.randint(low, high + 1, (), generator=generator))
        return torch.randint(1, 50, (n,), generator=generator).tolist()

    return [[prompt + tokens(1, 8) for _ in range(k)] for k in sizes for prompt in [tokens(0, 10)]]


def plain_and_shared(model, groups):
    """(rewards, gradients) of the plain forward on right-padded sequences and of the shared-prefix forward."""
    ids, mask = right_pad([s for group in groups for s in group], pad_id=0)
    weights = torch.randn(ids.shape[0], model.config.num_labels, generator=torch.Generator().manual_seed(1))
    results = []
    for forward in (lambda: model(input_ids=ids, attention_mask=mask).logits,
                    lambda: shared_prefix_rewards(model, pack_shared_prefixes(groups, 0))):
        model.zero_grad()
        rewards = forward()
        (rewards * weights).sum().backward()
        results.append((rewards.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    return results


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama-gqa"])
@pytest.mark.parametrize("sizes", [[2, 3, 1, 2, 2], [2, 2, 2], [1, 1, 1]], ids=["mixed", "pairs", "singles"])
def test_shared_prefix_forward_gives_the_plain_rewards_and_gradients(make, sizes):
    model = make().train()
    assert supports_shared_prefix(model)
    (plain, plain_grads), (shared, shared_grads) = plain_and_shared(model, random_groups(0, sizes))
    assert plain.shape == shared.shape == (sum(sizes), 2)
    assert torch.allclose(plain, shared, atol=1e-5)
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, shared_grads[name], atol=1e-5), name  # the prompt collects both answers' share


def test_equal_length_pairs_and_a_one_layer_model():
    groups = [[prompt + [7, 8, 9], prompt + [9, 8, 7]] for prompt in ([1, 2, 3], [4, 5, 6], [7, 8, 9])]
    model = tiny_gpt2(n_layer=1).train()  # the only block is the last: read at the last tokens alone
    (plain, plain_grads), (shared, shared_grads) = plain_and_shared(model, groups)
    assert torch.allclose(plain, shared, atol=1e-5)
    assert all(torch.allclose(g, shared_grads[n], atol=1e-5) for n, g in plain_grads.items())


def test_the_tiny_pretrained_llama_reads_the_same_rewards(pretrained_dir, tokenizer):
    model, _ = build_reward_model(pretrained_dir, ensemble=2)
    model.eval()
    records = excellent_comparisons(4, seed=5)
    encoder = Encoder(tokenizer, max_len=48)
    groups = [[encoder.sequence([{"role": "user", "content": r["prompt"]}], r[k]) for k in ("response_a",
                                                                                          "response_b")]
              for r in records]
    packed = pack_shared_prefixes(groups, tokenizer.pad_token_id)
    assert packed.prefix_lengths.min() > 5  # the chat-rendered prompt and the answers' common start are shared
    plain = _score_sequences(model, [s for g in groups for s in g], tokenizer.pad_token_id, batch_size=8)
    with torch.no_grad():
        shared = shared_prefix_rewards(model, packed)
    assert torch.allclose(plain, shared, atol=1e-5)


def test_models_the_shared_forward_does_not_cover_are_refused():
    assert not supports_shared_prefix(tiny_gpt2(resid_pdrop=0.1).train())  # dropout: a different function
    assert supports_shared_prefix(tiny_gpt2(resid_pdrop=0.1).eval())
    checkpointed = tiny_llama()
    enable = getattr(checkpointed, "activation_checkpointing_enable", None) or checkpointed.gradient_checkpointing_enable
    enable()
    assert not supports_shared_prefix(checkpointed.train())  # the user chose recomputation to save memory
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                    intermediate_size=32, vocab_size=50))
    assert not supports_shared_prefix(bert.eval())
    with pytest.raises(ValueError, match="no shared-prefix forward"):
        shared_prefix_rewards(bert, pack_shared_prefixes([[[1, 2]]], 0))


@pytest.mark.parametrize("in_out", [False, True], ids=["linear", "conv1d"])
def test_linear_computes_what_torch_does_and_its_gradients(in_out):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=generator, requires_grad=True)
    weight = torch.randn(*((5, 3) if in_out else (3, 5)), generator=generator, requires_grad=True)
    bias = torch.randn(3, generator=generator, requires_grad=True)
    grad = torch.randn(7, 3, generator=generator)
    expected = x @ weight + bias if in_out else x @ weight.t() + bias
    expected_grads = torch.autograd.grad(expected, (x, weight, bias), grad)
    ours = linear(x, weight, bias, in_out=in_out)
    assert torch.allclose(ours, expected, atol=1e-5)
    for got, want in zip(torch.autograd.grad(ours, (x, weight, bias), grad), expected_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps torch's own op (and its precision rules)
        assert linear(x, weight, bias, in_out=in_out).dtype == torch.bfloat16


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama-gqa"])
def test_shared_prefix_forward_in_bf16_autocast_stays_close_to_the_plain_one(make):
    # In bf16 on a CPU the shared forward's attention runs as two products (alinea.model.attention), the plain
    # forward's as the flash kernel: the same function, rounded differently.
    model = make().train()
    groups = random_groups(0, [2, 3, 1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (plain, plain_grads), (shared, shared_grads) = plain_and_shared(model, groups)
    assert bool(torch.isfinite(shared).all())
    scale = float(plain.abs().max())
    assert float((plain.float() - shared.float()).abs().max()) < 0.05 * scale
    for name, grad in plain_grads.items():
        assert bool(torch.isfinite(shared_grads[name]).all()), name
        assert float((grad - shared_grads[name]).abs().max()) <= 0.1 * float(grad.abs().max()) + 1e-3, name
