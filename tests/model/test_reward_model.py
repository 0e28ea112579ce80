"""Reward models: head initialisation, no dropout, ensembles, normalisation, plain-transformers loading, bad input."""

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
    load_reward_model,
    normalisation_of,
    score_head,
)
from alinea.train import reward
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
