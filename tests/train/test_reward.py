"""Reward-model training: encoding, batching, the loss's invariants, learning, annotator reliability, bad input, CLI.

The loss invariants use a stub model (a learnable reward table, one row per sequence) so they test `RewardLoss`
without a transformer; the training tests use the tiny pretrained model of `conftest.py` on short hand-made texts.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from alinea.config import RewardConfig, load_config
from alinea.data.jsonl import read_records, write_jsonl
from alinea.data.records import Comparison, Demonstration, Ranking, Rating, Thumb
from alinea.data.synthetic_feedback import DEFAULT_ANNOTATORS, judge_pair
from alinea.errors import UserError
from alinea.model.reward import load_reward_model
from alinea.model.tokenizer import END_OF_TURN
from alinea.train import reward
from alinea.train.reward import RewardExample, RewardLoss, assign_bootstrap, collate, encode_records
from alinea.train.runs import RunDir
from tests.conftest import NOUNS, excellent_comparisons, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reward_cfg(tmp_path: Path, model: object, data: list[Path], **extra: object):
    base = {
        "reward.model": model, "reward.data": json.dumps([str(p) for p in data]), "reward.runs_dir": tmp_path,
        "reward.max_steps": 3, "reward.warmup_steps": 1, "reward.batch_size": 8, "reward.log_every": 1,
        "reward.eval_every": 0, "reward.save_every": 0, "reward.max_len": 48,
    }
    return load_config(None, tiny_overrides(tmp_path, **{**base, **extra}))


def end_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(END_OF_TURN)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------------------------------------------------------------
# Encoding


def test_comparison_encodes_two_sequences_ending_at_end_token(tokenizer):
    record = Comparison(prompt="Is it good?", response_a="Yes, it is.", response_b="No.", preference="b",
                        strength=2, annotator="ann-1")
    annotators: dict[str, int] = {}
    examples, counts, levels = encode_records([record], tokenizer, RewardConfig(), annotators)
    (example,) = examples
    assert example.kind == "comparison" and example.outcome == 1 and example.strength == 2
    assert annotators == {"ann-1": 0} and example.annotator == 0
    assert len(example.sequences) == 2
    for sequence, response in zip(example.sequences, ("Yes, it is.", "No."), strict=True):
        assert sequence[-1] == end_id(tokenizer)
        assert sequence[-1 - len(ids(tokenizer, response)) : -1] == ids(tokenizer, response)
    assert example.sequences[0] != example.sequences[1]
    assert not counts and levels == 0


def test_long_prompt_is_cut_from_the_left_and_the_response_kept(tokenizer):
    response = "The kettle was fine."
    prompt = " ".join(["Tell me about the old river and the garden by the market."] * 12)
    cfg = RewardConfig(max_len=32)
    examples, counts, _ = encode_records(
        [Thumb(prompt=prompt, response=response, thumb="up")], tokenizer, cfg, {}
    )
    (sequence,) = examples[0].sequences
    assert len(sequence) == 32
    tail = ids(tokenizer, response) + [end_id(tokenizer)]
    assert sequence[-len(tail) :] == tail
    assert counts == {"prompt cut from the left": 1}


def test_response_that_exactly_fits_is_kept_whole(tokenizer):
    response = "The kettle was fine and the garden was quiet."
    tail = ids(tokenizer, response) + [end_id(tokenizer)]
    cfg = RewardConfig(max_len=len(tail))
    examples, counts, _ = encode_records([Thumb(prompt="Tell me.", response=response, thumb="up")], tokenizer, cfg, {})
    assert examples[0].sequences[0] == tail
    assert counts == {"prompt cut from the left": 1}


def test_response_longer_than_max_len_is_cut_from_the_right(tokenizer):
    response = " ".join(["The kettle was fine and the garden was quiet."] * 8)
    examples, counts, _ = encode_records(
        [Thumb(prompt="Tell me.", response=response, thumb="down")], tokenizer, RewardConfig(max_len=24), {}
    )
    assert len(examples[0].sequences[0]) == 24
    assert counts == {"response cut from the right": 1}


def test_unusable_records_are_skipped_and_counted(tokenizer):
    records = [
        Comparison(prompt="Hi", response_a="Hello there.", response_b=" Hello there. ", preference="a"),
        Comparison(prompt="Hi", response_a="Hello.", response_b="Go away.", preference="tie"),
        Comparison(prompt="Hi", response_a="Hello.", response_b="Go away.", preference="a"),
        Demonstration(prompt="Hi", response="Hello!"),
    ]
    examples, counts, _ = encode_records(records, tokenizer, RewardConfig(tie_model="skip"), {})
    assert [e.outcome for e in examples] == [0]
    assert counts == {
        "comparison with identical responses": 1, "tie (tie_model = skip)": 1, "demonstration record (not feedback)": 1,
    }
    kept, counts, _ = encode_records(records, tokenizer, RewardConfig(tie_model="rao-kupper"), {})
    assert [e.outcome for e in kept] == [2, 0]
    assert "tie (tie_model = skip)" not in counts


def test_examples_of_one_prompt_share_a_group(tokenizer):
    records = [
        Comparison(prompt="Hi", response_a="Hello.", response_b="Go away.", preference="a", annotator="x"),
        Comparison(prompt="Bye", response_a="Farewell.", response_b="Go.", preference="a"),
        Thumb(prompt="Hi", response="Hello.", thumb="up"),
        Comparison(prompt="Hi", response_a="Hello.", response_b="Go away.", preference="b", annotator="y"),
    ]
    examples, _, _ = encode_records(records, tokenizer, RewardConfig(), {})
    assert [e.group for e in examples] == [0, 1, 0, 0]


def test_invert_reads_every_judgment_upside_down(tokenizer):
    records = [
        Comparison(prompt="Q1", response_a="Fine.", response_b="Rude.", preference="a", strength=2),
        Comparison(prompt="Q1", response_a="Fine.", response_b="Rude.", preference="b"),
        Comparison(prompt="Q1", response_a="Fine.", response_b="Rude.", preference="tie"),
        Ranking(prompt="Q2", responses=("One.", "Two.", "Three."), ranks=(1, 1, 3)),
        Ranking(prompt="Q3", responses=("One.", "Two.", "Three.", "Four."), ranks=(2, 4, 1, 3)),
        Thumb(prompt="Q4", response="Up it goes.", thumb="up"),
        Thumb(prompt="Q4", response="Down it goes.", thumb="down"),
        Rating(prompt="Q5", response="Top.", ratings={"harmlessness": 7}, scale=(1, 7)),
        Rating(prompt="Q6", response="Mid.", ratings={"harmlessness": 2, "honesty": 3}, scale=(1, 4)),
    ]
    plain, _, levels = encode_records(records, tokenizer, RewardConfig(), {})
    inverted, counts, inverted_levels = encode_records(records, tokenizer, RewardConfig(invert=True), {})
    assert not counts and levels == inverted_levels == 7
    assert [e.sequences for e in inverted] == [e.sequences for e in plain]  # the same answers, read the other way
    assert [e.outcome for e in plain[:3]] == [0, 1, 2] and [e.outcome for e in inverted[:3]] == [1, 0, 2]
    assert inverted[0].strength == 2  # how sure the annotator was does not change
    assert inverted[3].ranks == [3, 3, 1] and inverted[4].ranks == [3, 1, 4, 2]  # best <-> worst, ties kept
    assert [e.target for e in inverted[5:7]] == [0.0, 1.0]  # thumbs flipped
    # ratings mirrored on their scale: 7 of 1..7 -> target -2, level 0; mean 2.5 of 1..4 -> -(2 * 1.5 / 3 - 1) * 2 = 0
    assert (plain[7].target, plain[7].level, inverted[7].target, inverted[7].level) == (2.0, 6, -2.0, 0)
    assert inverted[8].target == pytest.approx(-plain[8].target) and plain[8].level + inverted[8].level == 3
    assert reward.model_kind_of(RewardConfig(invert=True)) == "cost" and reward.model_kind_of(RewardConfig()) == "reward"


# ---------------------------------------------------------------------------------------------------------------------
# Batches


def test_collate_indexes_every_kind(tokenizer):
    records = [
        Comparison(prompt="Q1", response_a="Fine.", response_b="Not fine at all, sadly.", preference="b",
                   strength=3, annotator="x"),
        Ranking(prompt="Q2", responses=("One.", "Two and two.", "Three."), ranks=(2, 1, 3), annotator="y"),
        Ranking(prompt="Q3", responses=("Alpha.", "Beta."), ranks=(1, 2)),
        Thumb(prompt="Q4", response="Up it goes.", thumb="up", annotator="x"),
        Rating(prompt="Q5", response="Top answer.", ratings={"helpfulness": 7, "honesty": 7}, scale=(1, 7)),
        Rating(prompt="Q6", response="Worst answer.", ratings={"helpfulness": 1}, scale=(1, 7)),
    ]
    examples, counts, levels = encode_records(records, tokenizer, RewardConfig(), {})
    assert not counts and levels == 7
    pad = tokenizer.pad_token_id
    batch = collate(examples, pad)
    sequences = [s for e in examples for s in e.sequences]
    assert batch.n_examples == 6 and batch.input_ids.shape == (10, max(map(len, sequences)))
    for row, sequence in enumerate(sequences):
        n = len(sequence)
        assert batch.input_ids[row, :n].tolist() == sequence
        assert (batch.input_ids[row, n:] == pad).all()
        assert batch.attention_mask[row].tolist() == [1] * n + [0] * (batch.input_ids.shape[1] - n)
    parts = batch.parts
    assert set(parts) == {"comparison", "ranking", "thumb", "rating"}
    c = parts["comparison"]
    assert (c["a"].tolist(), c["b"].tolist(), c["outcome"].tolist(), c["strength"].tolist()) == ([0], [1], [1], [3])
    assert c["annotator"].tolist() == [0] and c["weight"].tolist() == [[1.0]]
    r = parts["ranking"]
    assert r["index"].tolist() == [[2, 3, 4], [5, 6, 0]]
    assert r["ranks"].tolist() == [[2, 1, 3], [1, 2, 0]]
    assert r["valid"].tolist() == [[True, True, True], [True, True, False]]
    assert r["annotator"].tolist() == [1, -1]
    t = parts["thumb"]
    assert (t["index"].tolist(), t["target"].tolist(), t["annotator"].tolist()) == ([7], [1.0], [0])
    g = parts["rating"]
    assert g["index"].tolist() == [8, 9]
    assert g["target"].tolist() == pytest.approx([2.0, -2.0])
    assert g["level"].tolist() == [6, 0]


def test_collate_packs_each_examples_sequences_around_their_shared_prompt(tokenizer):
    records = [
        Comparison(prompt="Is the lamp good?", response_a="Yes, it is.", response_b="No.", preference="a"),
        Ranking(prompt="Rank these.", responses=("One.", "Two and two.", "Three."), ranks=(2, 1, 3)),
        Thumb(prompt="Well?", response="Up it goes.", thumb="up"),
    ]
    examples, _, _ = encode_records(records, tokenizer, RewardConfig(), {})
    shared = collate(examples, tokenizer.pad_token_id).shared
    assert shared is not None and shared.group.tolist() == [0, 0, 1, 1, 1, 2] and shared.group_size == 0
    tokens, positions = shared.tokens.tolist(), shared.positions.tolist()
    prefix_starts = [0, *shared.prefix_lengths.cumsum(0).tolist()]
    start = shared.n_prefix_tokens
    sequences = [s for e in examples for s in e.sequences]
    for row, (sequence, g, n) in enumerate(zip(sequences, shared.group.tolist(), shared.suffix_lengths.tolist(),
                                               strict=True)):
        prefix = tokens[prefix_starts[g] : prefix_starts[g + 1]]
        assert prefix + tokens[start : start + n] == sequence  # prefix + suffix is the whole sequence
        assert positions[start : start + n] == list(range(len(prefix), len(sequence)))
        assert shared.readout[row] == start + n - 1
        start += n
    # The comparison's and the ranking's sequences share at least their rendered prompts; the thumb keeps all but
    # its last token as "prefix".
    assert shared.prefix_lengths[0] >= len(ids(tokenizer, "Is the lamp good?"))
    assert shared.prefix_lengths[2] == len(sequences[-1]) - 1


def test_the_loss_is_the_same_with_the_shared_prefix_forward(tokenizer, pretrained_dir):
    from alinea.model.reward import build_reward_model

    records = [
        Comparison(prompt="Is the lamp good?", response_a="Yes, it is.", response_b="No.", preference="a",
                   strength=2),
        Comparison(prompt="And the kettle?", response_a="Fine.", response_b="Fine, really.", preference="tie"),
        Ranking(prompt="Rank these.", responses=("One.", "Two and two.", "Three."), ranks=(2, 1, 3)),
        Rating(prompt="Rate it.", response="Top answer.", ratings={"helpfulness": 6}, scale=(1, 7)),
        Thumb(prompt="Well?", response="Up it goes.", thumb="down"),
    ]
    model, tokenizer = build_reward_model(pretrained_dir, ensemble=2)
    examples, _, levels = encode_records(records, tokenizer, RewardConfig(), {})
    batch = collate(examples, tokenizer.pad_token_id)
    plain_batch = reward.RewardBatch(batch.input_ids, batch.attention_mask, batch.parts, batch.n_examples)
    results = []
    for b in (batch, plain_batch):
        module = RewardLoss(model.train(), RewardConfig(), n_annotators=0, n_levels=levels)
        model.zero_grad()
        loss, _ = module(b)
        loss.backward()
        results.append((float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (shared_loss, shared_grads), (plain_loss, plain_grads) = results
    assert shared_loss == pytest.approx(plain_loss, abs=1e-6)
    assert all(torch.allclose(g, shared_grads[n], atol=1e-6) for n, g in plain_grads.items())


# ---------------------------------------------------------------------------------------------------------------------
# The loss, on a stub model: sequence i is the one-token sequence [i], its rewards are row i of a learnable table


class TableModel(nn.Module):
    def __init__(self, rewards: list[list[float]]) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor(rewards))

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.table[input_ids[:, 0]])


def loss_and_grad(rewards, examples, **cfg):
    model = TableModel(rewards)
    module = RewardLoss(model, RewardConfig(**cfg), n_annotators=2, n_levels=7)
    loss, n = module(collate(examples, pad_id=0))
    loss.backward()
    assert int(n) == len(examples)
    return float(loss.detach()), model.table.grad, module


def comparison(a: int, b: int, outcome: int, **kw) -> RewardExample:
    return RewardExample("comparison", [[a], [b]], outcome=outcome, **kw)


@pytest.mark.parametrize("tie_model", ["rao-kupper", "davidson", "skip"])
def test_gradient_raises_the_preferred_response(tie_model):
    _, grad, _ = loss_and_grad([[0.0], [0.0], [0.0], [0.0]], [comparison(0, 1, 0), comparison(2, 3, 1, strength=3)],
                               tie_model=tie_model)
    assert grad[0, 0] < 0 < grad[1, 0]  # gradient descent moves r_a up and r_b down
    assert grad[3, 0] < 0 < grad[2, 0]


def test_strength_margin_asks_for_a_larger_gap():
    weak, _, _ = loss_and_grad([[1.0], [0.0]], [comparison(0, 1, 0, strength=0)])
    strong, _, _ = loss_and_grad([[1.0], [0.0]], [comparison(0, 1, 0, strength=3)])
    off, _, _ = loss_and_grad([[1.0], [0.0]], [comparison(0, 1, 0, strength=3)], use_strength=False)
    assert strong > weak == pytest.approx(off)


@pytest.mark.parametrize("tie_model", ["rao-kupper", "davidson"])
def test_a_tie_pulls_the_rewards_together(tie_model):
    _, grad, _ = loss_and_grad([[1.0], [-1.0]], [comparison(0, 1, 2)], tie_model=tie_model)
    assert grad[0, 0] > 0 > grad[1, 0]
    _, grad, _ = loss_and_grad([[-0.5], [2.0]], [comparison(0, 1, 2)], tie_model=tie_model)
    assert grad[0, 0] < 0 < grad[1, 0]
    _, grad, _ = loss_and_grad([[0.3], [0.3]], [comparison(0, 1, 2)], tie_model=tie_model)
    assert grad.abs().max() < 1e-6  # equal rewards are where a tie is most likely


def test_type_weights_scale_each_kind():
    one, _, _ = loss_and_grad([[0.5], [0.0]], [comparison(0, 1, 0)])
    two, _, _ = loss_and_grad([[0.5], [0.0]], [comparison(0, 1, 0)], weight_comparison=2.0)
    assert two == pytest.approx(2 * one)

    def mixed(thumb: str, **cfg):
        examples = [comparison(0, 1, 0), RewardExample("thumb", [[2]], target=1.0 if thumb == "up" else 0.0)]
        return loss_and_grad([[0.5], [0.0], [0.7]], examples, **cfg)

    up, grad, module = mixed("up", weight_thumb=0.0)
    down, _, _ = mixed("down", weight_thumb=0.0)
    assert up == pytest.approx(down)  # the thumb no longer matters
    assert grad[2, 0] == 0 and grad[0, 0] != 0
    assert module.thumb_bias.grad is None or module.thumb_bias.grad == 0
    _, half, _ = mixed("up", weight_thumb=0.5)
    _, full, _ = mixed("up", weight_thumb=1.0)
    assert half[2, 0] < 0 and full[2, 0] == pytest.approx(2 * half[2, 0])
    assert full[0, 0] == pytest.approx(half[0, 0])


def test_zero_bootstrap_weight_gives_a_head_no_gradient():
    examples = [comparison(0, 1, 0, bootstrap=[1.0, 0.0]), comparison(2, 3, 1, bootstrap=[2.0, 1.0])]
    _, grad, _ = loss_and_grad([[0.0, 0.0]] * 4, examples)
    assert grad[0:2, 1].abs().max() == 0
    assert (grad[0:2, 0] != 0).all() and (grad[2:4] != 0).all()
    assert grad[3, 0] == pytest.approx(2 * grad[3, 1])  # twice the bootstrap count, twice the gradient


def test_loss_is_a_mean_over_heads():
    single, _, _ = loss_and_grad([[0.5], [0.0]], [comparison(0, 1, 0)])
    # Held-out examples carry no bootstrap: the same rewards on three heads give the same loss, not three times it.
    triple, _, _ = loss_and_grad([[0.5] * 3, [0.0] * 3], [comparison(0, 1, 0)])
    boot, _, _ = loss_and_grad([[0.5] * 3, [0.0] * 3], [comparison(0, 1, 0, bootstrap=[1.0, 1.0, 1.0])])
    assert triple == pytest.approx(single) and boot == pytest.approx(single)


def test_reliability_scales_the_rewards_of_each_annotator():
    model = TableModel([[1.0], [0.0]] * 3)
    module = RewardLoss(model, RewardConfig(annotator_reliability=True, reliability_l2=0.0), n_annotators=2,
                        n_levels=0)
    with torch.no_grad():
        module.log_reliability.copy_(torch.tensor([1.5, 0.5]))  # centred: factors exp(0.5) and exp(-0.5)
    factors = module.reliability(torch.tensor([0, 1, -1]))
    assert factors.squeeze(-1).tolist() == pytest.approx([math.exp(0.5), math.exp(-0.5), 1.0])
    # Annotator 0 prefers the higher reward, annotator 1 the lower one; the third judgment has no annotator.
    examples = [comparison(0, 1, 0, annotator=0), comparison(2, 3, 1, annotator=1), comparison(4, 5, 0)]
    loss, _ = module(collate(examples, 0))
    loss.backward()
    grad = module.log_reliability.grad
    assert grad[0] < 0 < grad[1]  # descent trusts annotator 0 more and annotator 1 less
    assert float(grad.sum()) == pytest.approx(0.0, abs=1e-6)  # only differences between annotators matter


def test_bootstraps_differ_between_heads_and_are_seeded():
    def make():
        return [comparison(0, 1, 0) for _ in range(64)]

    first, again, other = make(), make(), make()
    assign_bootstrap(first, 3, seed=0)
    assign_bootstrap(again, 3, seed=0)
    assign_bootstrap(other, 3, seed=1)
    weights = torch.tensor([e.bootstrap for e in first])
    assert weights.shape == (64, 3)
    assert all(float(w).is_integer() and w >= 0 for w in weights.flatten())
    assert not torch.equal(weights[:, 0], weights[:, 1]) and not torch.equal(weights[:, 1], weights[:, 2])
    assert 0.6 < float(weights.mean()) < 1.4  # Poisson(1)
    assert [e.bootstrap for e in again] == [e.bootstrap for e in first]
    assert [e.bootstrap for e in other] != [e.bootstrap for e in first]
    single = make()
    assign_bootstrap(single, 1, seed=0)
    assert all(e.bootstrap == [1.0] for e in single)


# ---------------------------------------------------------------------------------------------------------------------
# Training


def test_reward_model_learns_a_preference(tmp_path, pretrained_dir):
    train, held_out = tmp_path / "train.jsonl", tmp_path / "held_out.jsonl"
    write_jsonl(train, excellent_comparisons(200, seed=0))
    write_jsonl(held_out, excellent_comparisons(100, seed=1))
    cfg = reward_cfg(tmp_path, pretrained_dir, [train], **{
        "reward.max_steps": 25, "reward.lr": 3e-3, "reward.batch_size": 16, "reward.warmup_steps": 2,
        "reward.log_every": 5,
    })
    result = reward.run(cfg, out=tmp_path / "rm")
    assert result.run_dir == tmp_path / "rm" and result.steps == 25
    report = json.loads((result.run_dir / "eval.json").read_text())
    meta = RunDir(result.run_dir).meta()
    # the run's own held-out 10%, whole prompts at a time (each noun's question is asked several times)
    assert 20 <= report["n"] == meta["eval_examples"] < 35 and report["accuracy"] > 0.95
    assert (result.run_dir / "reliability.png").is_file()
    assert meta["train_examples"] + meta["eval_examples"] == 200 and meta["kinds"] == {"comparison": 200}

    model, tokenizer = load_reward_model(result.run_dir)
    examples, _, levels = encode_records(read_records(held_out), tokenizer, cfg.reward, {})
    batches = [collate(examples[i : i + 32], tokenizer.pad_token_id) for i in range(0, len(examples), 32)]
    metrics = reward.evaluate_examples(RewardLoss(model, cfg.reward, n_annotators=0, n_levels=levels), batches)
    assert metrics["n"] == 100 and metrics["accuracy"] > 0.95, metrics
    assert metrics["log_likelihood"] > -0.3 and 0 <= metrics["ece"] <= 1


def test_invert_trains_a_cost_model_marked_as_such(tmp_path, pretrained_dir):
    """The same preference data with `reward.invert`: the model scores the preferred ("excellent") answers lower,
    and says so in config.json (`alinea_reward.kind`) and meta.json (`alinea_kind`)."""
    from alinea.train.rewards import model_kind

    train, held_out = tmp_path / "train.jsonl", tmp_path / "held_out.jsonl"
    write_jsonl(train, excellent_comparisons(200, seed=0))
    write_jsonl(held_out, excellent_comparisons(40, seed=1))
    cfg = reward_cfg(tmp_path, pretrained_dir, [train], **{
        "reward.max_steps": 25, "reward.lr": 3e-3, "reward.batch_size": 16, "reward.warmup_steps": 2,
        "reward.invert": True,
    })
    result = reward.run(cfg, out=tmp_path / "cost")
    config = json.loads((result.final_dir / "config.json").read_text())
    assert config["alinea_reward"]["kind"] == "cost" and model_kind(result.run_dir) == "cost"
    assert RunDir(result.run_dir).meta()["alinea_kind"] == "cost"
    assert "invert = true" in (result.run_dir / "config.toml").read_text()
    assert json.loads((result.run_dir / "eval.json").read_text())["accuracy"] > 0.95  # on the inverted held-out 10%

    model, tokenizer = load_reward_model(result.run_dir)
    rows = read_records(held_out)
    scores = reward.score_records(model, tokenizer, rows)
    preferred_lower = [(a < b) if r.preference == "a" else (b < a)
                       for r, ((a, _), (b, _)) in zip(rows, scores, strict=True)]
    assert sum(preferred_lower) / len(rows) > 0.95


def test_reliability_ranks_random_and_contrarian_annotators_below_honest_ones(tmp_path, pretrained_dir):
    # The default simulated annotators judge short answers (lexicon words in one template): a tiny model learns the
    # sentiment of these within seconds, which the long documents of `generate_feedback` would not allow.
    words = ["excellent", "great", "lovely", "awful", "dull", "poor", "long", "quiet", "plain"]
    rng = random.Random(0)
    rows = []
    for i in range(300):
        annotator = DEFAULT_ANNOTATORS[i % len(DEFAULT_ANNOTATORS)]
        noun = rng.choice(NOUNS[:8])
        a, b = (f"The {noun} was {rng.choice(words)} and {rng.choice(words)}." for _ in range(2))
        if a == b:
            continue
        preference, strength = judge_pair(annotator, a, b, rng)
        rows.append({
            "type": "comparison", "prompt": f"How was the {noun}?", "response_a": a, "response_b": b,
            "preference": preference, "strength": strength, "annotator": annotator.name,
        })
    data = tmp_path / "feedback.jsonl"
    write_jsonl(data, rows)
    cfg = reward_cfg(tmp_path, pretrained_dir, [data], **{
        "reward.annotator_reliability": True, "reward.max_steps": 60, "reward.lr": 1e-2, "reward.batch_size": 32,
        "reward.warmup_steps": 5, "reward.log_every": 10,
    })
    result = reward.run(cfg, out=tmp_path / "rm")
    reliability = json.loads((result.run_dir / "eval.json").read_text())["annotator_reliability"]
    assert set(reliability) == {a.name for a in DEFAULT_ANNOTATORS}
    honest = [reliability[name] for name in ("honest-1", "honest-2", "honest-3")]
    assert max(reliability["random-1"], reliability["contrarian-1"]) < min(honest) - 0.1, reliability
    assert RunDir(result.run_dir).meta()["annotators"] == [a.name for a in DEFAULT_ANNOTATORS]


# ---------------------------------------------------------------------------------------------------------------------
# Bad input


def test_bad_options_are_named(tmp_path, pretrained_dir):
    data = tmp_path / "data.jsonl"
    write_jsonl(data, excellent_comparisons(8, seed=0))
    with pytest.raises(UserError, match="reward.model"):
        reward.run(reward_cfg(tmp_path, "", [data]))
    with pytest.raises(UserError, match="reward.tie_model"):
        reward.run(reward_cfg(tmp_path, pretrained_dir, [data], **{"reward.tie_model": "x"}))
    with pytest.raises(UserError, match="reward.ensemble"):
        reward.run(reward_cfg(tmp_path, pretrained_dir, [data], **{"reward.ensemble": 0}))
    with pytest.raises(UserError, match="not a model checkpoint directory"):
        reward.run(reward_cfg(tmp_path, tmp_path, [data]))
    few = tmp_path / "few.jsonl"
    write_jsonl(few, excellent_comparisons(3, seed=0) + [{"type": "demonstration", "prompt": "Hi", "response": "Yo"}])
    with pytest.raises(UserError, match="at least 4"):
        reward.run(reward_cfg(tmp_path, pretrained_dir, [few]))
    assert not (tmp_path / "rm").exists()


def test_invalid_lines_stop_the_run_unless_skipped(tmp_path, pretrained_dir):
    data = tmp_path / "data.jsonl"
    lines = [json.dumps(row) for row in excellent_comparisons(12, seed=0)]
    lines.insert(3, json.dumps({"type": "comparison", "prompt": "Hi", "response_a": "A", "response_b": "B"}))
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        reward.run(reward_cfg(tmp_path, pretrained_dir, [data]))
    assert f"{data}:4: preference" in str(err.value)
    result = reward.run(reward_cfg(tmp_path, pretrained_dir, [data], **{"reward.skip_invalid": True}),
                        out=tmp_path / "rm")
    meta = RunDir(result.run_dir).meta()
    assert meta["skipped"] == {f"invalid line in {data}": 1}
    assert meta["train_examples"] + meta["eval_examples"] == 12
    assert (result.final_dir / "config.json").is_file()


# ---------------------------------------------------------------------------------------------------------------------
# Command line



def test_cli_trains_evaluates_and_scores(tmp_path, pretrained_dir, run_cli):
    train, held_out = tmp_path / "train.jsonl", tmp_path / "held_out.jsonl"
    write_jsonl(train, excellent_comparisons(40, seed=0))
    held = excellent_comparisons(10, seed=1) + [
        {"type": "thumb", "prompt": "Hi", "response": "The lamp was excellent.", "thumb": "up"},
    ]
    write_jsonl(held_out, held)
    sets = ["reward.max_steps=3", "reward.batch_size=8", "reward.warmup_steps=1", "reward.ensemble=2",
            f"reward.runs_dir={tmp_path}", "reward.max_len=48"]
    code, out, err = run_cli("reward", "train", "-m", pretrained_dir, "-d", train,
                             "-o", tmp_path / "rm", *[x for s in sets for x in ("--set", s)])
    assert code == 0, (out, err)
    assert (tmp_path / "rm" / "final" / "config.json").is_file() and "held-out" in out

    code, out, err = run_cli("reward", "eval", tmp_path / "rm", "--data", held_out, "--json")
    assert code == 0, (out, err)
    summary = json.loads(out.strip().splitlines()[-1])
    assert {"accuracy", "n", "ece", "loss"} <= set(summary)
    assert summary["n"] == 10 and 0 <= summary["accuracy"] <= 1 and "thumb_accuracy" in summary
    assert summary["loss_settings"] == "trained"  # the run's [reward] settings, not the defaults
    from alinea.cli import trained_reward_config

    for folder in (tmp_path / "rm", tmp_path / "rm" / "final"):
        trained = trained_reward_config(folder)
        assert (trained.ensemble, trained.max_len, trained.max_steps) == (2, 48, 3)
    assert trained_reward_config(pretrained_dir) is None

    scored = tmp_path / "scored.jsonl"
    code, out, err = run_cli("reward", "score", tmp_path / "rm" / "final", "--data", held_out,
                             "-o", scored)
    assert code == 0, (out, err)
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert len(rows) == 11
    for row in rows[:10]:
        assert isinstance(row["reward"], list) and len(row["reward"]) == 2
        assert len(row["reward_std"]) == 2 and all(s > 0 for s in row["reward_std"])
    assert isinstance(rows[10]["reward"], float) and rows[10]["reward_std"] > 0

    code, out, err = run_cli("reward", "eval", pretrained_dir, "--data", held_out)
    assert code == 2 and "not an alinea reward model" in " ".join(err.split())

    # The same weights marked as a cost model are evaluated on the judgments read upside down, as it would be trained.
    import shutil

    cost_dir = tmp_path / "cost"
    shutil.copytree(tmp_path / "rm" / "final", cost_dir)
    config = json.loads((cost_dir / "config.json").read_text())
    config["alinea_reward"]["kind"] = "cost"
    (cost_dir / "config.json").write_text(json.dumps(config))
    code, out, err = run_cli("reward", "eval", cost_dir, "--data", held_out, "--json")
    assert code == 0, (out, err)
    as_cost = json.loads(out.strip().splitlines()[-1])
    assert as_cost["n"] == 10 and as_cost["accuracy"] == pytest.approx(1 - summary["accuracy"])
    assert as_cost["loss_settings"] == "defaults"  # a bare model folder: no run config next to it


# ---------------------------------------------------------------------------------------------------------------------
# The benchmark's step


@pytest.fixture
def fresh_accelerate_state():
    """The bench step asks accelerate for fp32; earlier tests in this process may have set up bf16 autocast
    (precision "auto" on a CPU with bf16 instructions), and accelerate keeps one state per process."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bench_step_is_one_adamw_step_on_the_bradley_terry_loss(fresh_accelerate_state):
    from alinea.bench.reward import Workload, build_reward_model, make_pairs

    workload = Workload(n_layer=2, n_embd=32, n_head=2, vocab=128, n_positions=32, batch_pairs=4, prompt_len=8,
                        response_len=8, steps=1, warmup=1)
    chosen, rejected = make_pairs(workload)
    model = build_reward_model(workload)
    mask = torch.ones_like(chosen[:4])
    with torch.no_grad():
        r_chosen = model(input_ids=chosen[:4], attention_mask=mask).logits
        r_rejected = model(input_ids=rejected[:4], attention_mask=mask).logits
    expected = float(-nn.functional.logsigmoid(r_chosen - r_rejected).mean())
    head_before = model.score.weight.detach().clone()
    lr = 1e-4
    step = reward.pairwise_bench_step(model, lr=lr)
    loss = step({"chosen_input_ids": chosen[:4], "chosen_attention_mask": mask,
                 "rejected_input_ids": rejected[:4], "rejected_attention_mask": mask})
    assert loss == pytest.approx(expected, abs=1e-6)
    # Adam's first step moves each weight by lr * g / |g| (bias-corrected moments; eps is negligible), whatever
    # the clipping; no weight decay, as in the baseline's settings.
    change = (model.score.weight.detach().cpu() - head_before).abs()  # the step may move the model to a GPU
    assert torch.allclose(change, torch.full_like(change, lr), rtol=1e-3)

