"""KV-cached sampling: equal to recomputing from scratch, independent of batch padding, correct top-p and stops."""

import math

import pytest
import torch

from alinea.model.causal_lm import load_model_and_tokenizer
from alinea.model.generation import generate, generate_ids, sample_next
from alinea.model.tokenizer import stop_token_ids


@pytest.fixture(scope="module")
def lm(pretrained_dir):
    model, tokenizer = load_model_and_tokenizer(pretrained_dir)
    return model.eval(), tokenizer


def greedy_without_cache(model, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([out])).logits[0, -1]
            out.append(int(logits.argmax()))
    return out[len(ids):]


def test_cached_greedy_equals_full_recomputation(lm):
    model, tokenizer = lm
    ids = tokenizer("The film was", add_special_tokens=False)["input_ids"]
    new, finished = generate_ids(
        model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=6,
        stop_ids=[], pad_id=tokenizer.pad_token_id, temperature=0.0,
    )
    assert new[0].tolist() == greedy_without_cache(model, ids, 6)
    assert not bool(finished[0])


def test_left_padding_does_not_change_answers(lm):
    model, tokenizer = lm
    short = "A story:"
    long = "Write a long and detailed review of the restaurant by the river, please."
    alone = generate(model, tokenizer, [short], max_new_tokens=6, temperature=0.0)
    batched = generate(model, tokenizer, [long, short], max_new_tokens=6, temperature=0.0)
    assert batched[1].token_ids == alone[0].token_ids


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    drawn = sample_next(logits, temperature=1.0, top_p=0.6, generator=gen)
    assert set(drawn.tolist()) == {0, 1}  # 0.5 < 0.6, so token 1 is needed; token 2 never
    share = (drawn == 0).float().mean().item()
    assert share == pytest.approx(0.5 / 0.8, abs=0.04)  # renormalised within the nucleus
    assert set(sample_next(logits, temperature=1.0, top_p=0.01, generator=gen).tolist()) == {0}
    assert sample_next(logits[:1], temperature=0.0, top_p=1.0, generator=gen).tolist() == [0]


def test_temperature_sharpens():
    logits = torch.tensor([[math.log(0.6), math.log(0.4)]]).repeat(4000, 1)
    gen = torch.Generator().manual_seed(1)
    hot = (sample_next(logits, temperature=1.0, top_p=1.0, generator=gen) == 0).float().mean().item()
    cold = (sample_next(logits, temperature=0.25, top_p=1.0, generator=gen) == 0).float().mean().item()
    assert hot == pytest.approx(0.6, abs=0.03)
    assert cold == pytest.approx(0.6**4 / (0.6**4 + 0.4**4), abs=0.03)


class _ScriptedLM(torch.nn.Module):
    """A fake LM whose next token is scripted per row, to test stopping and padding."""

    def __init__(self, script: list[list[int]], vocab: int = 10):
        super().__init__()
        self.script = script
        self.vocab = vocab
        self.calls = 0
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, position_ids, use_cache, logits_to_keep=0, cache=None):
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], self.vocab), -1e9)
        for row, tokens in enumerate(self.script):
            logits[row, -1, tokens[min(self.calls, len(tokens) - 1)]] = 0.0
        self.calls += 1
        return type("Out", (), {"logits": logits})()


def test_rows_stop_at_their_stop_token_and_are_padded():
    model = _ScriptedLM([[5, 2, 7, 7], [5, 6, 6, 6]])
    new, finished = generate_ids(
        model, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), max_new_tokens=4,
        stop_ids=[2], pad_id=0, temperature=0.0,
    )
    assert new.tolist() == [[5, 2, 0, 0], [5, 6, 6, 6]]
    assert finished.tolist() == [True, False]


def test_generate_returns_text_and_stops(lm):
    model, tokenizer = lm
    answers = generate(model, tokenizer, ["Hi", [{"role": "user", "content": "Hello"}]], max_new_tokens=5, seed=3)
    assert len(answers) == 2
    for answer in answers:
        assert 0 < len(answer.token_ids) <= 5
        assert answer.finished == any(t in stop_token_ids(tokenizer) for t in answer.token_ids)
    again = generate(model, tokenizer, ["Hi", [{"role": "user", "content": "Hello"}]], max_new_tokens=5, seed=3)
    assert [a.token_ids for a in again] == [a.token_ids for a in answers]  # seeded
