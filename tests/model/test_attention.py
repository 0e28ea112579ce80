"""bf16 attention on a CPU as two products: what scaled_dot_product_attention computes, only where it is used."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from alinea.model import attention
from alinea.model.attention import NAME, attend, takes_products, use_cpu_attention

BF16 = torch.bfloat16


def qkv(batch=2, heads=3, q=5, k=5, d=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, n, d, generator=generator).to(BF16) for n in (q, k, k)]


def reference(query, key, value, **kwargs):
    """The flash kernel in float32 on the same (bf16-rounded) numbers."""
    return F.scaled_dot_product_attention(query.float(), key.float(), value.float(), **kwargs)


@pytest.mark.parametrize("case", ["none", "causal", "bool", "float"])
def test_attend_computes_scaled_dot_product_attention(case):
    query, key, value = qkv()
    kwargs = {"scale": 0.3}
    if case == "causal":
        kwargs["is_causal"] = True
    elif case == "bool":
        kwargs["attn_mask"] = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(1)) > 0.3
        kwargs["attn_mask"][..., 0] = True  # every row may attend somewhere (the flash kernel gives NaN otherwise)
    elif case == "float":
        kwargs["attn_mask"] = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    assert takes_products(query, key, dropout=0.0, position_bias=None)
    out = attend(query, key, value, **kwargs)
    assert out.dtype == BF16 and out.shape == (2, 3, 5, 8)
    torch.testing.assert_close(out.float(), reference(query, key, value, **kwargs), atol=2e-2, rtol=2e-2)


def test_a_query_with_no_key_allowed_stays_finite():
    query, key, value = qkv(q=2, k=3)
    mask = torch.tensor([[False, False, False], [True, True, False]])
    out = attend(query, key, value, attn_mask=mask)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[:, :, 1].float(), reference(query, key, value, attn_mask=mask)[:, :, 1],
                               atol=2e-2, rtol=2e-2)


def test_products_only_on_a_cpu_in_bf16_without_dropout_and_within_the_memory_bound(monkeypatch):
    query, key, _ = qkv()
    wide_q, wide_k = query.float(), key.float()
    assert not takes_products(wide_q, wide_k, dropout=0.0, position_bias=None)  # fp32: the flash kernel
    with torch.autocast("cpu", dtype=BF16):
        assert takes_products(wide_q, wide_k, dropout=0.0, position_bias=None)  # autocast to bf16
    assert not takes_products(query, key, dropout=0.1, position_bias=None)
    assert not takes_products(query, key, dropout=0.0, position_bias=torch.zeros(1))
    monkeypatch.setattr(attention, "MAX_SCORE_BYTES", 2 * 3 * 5 * 5 * 4 - 1)  # one byte short of these scores
    assert not takes_products(query, key, dropout=0.0, position_bias=None)
    out = attend(query.float(), key.float(), key.float())  # handed to torch: fp32 in, fp32 out
    assert out.dtype == torch.float32


def tiny(kind: str):
    import transformers

    torch.manual_seed(0)
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=2, n_embd=32, n_head=4, vocab_size=60, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, bos_token_id=1, eos_token_id=1))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=60, max_position_embeddings=32, bos_token_id=1, eos_token_id=1))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_transformers_model_gives_the_same_logits_and_finite_gradients(kind, tmp_path):
    model = tiny(kind)
    ids = torch.randint(2, 60, (3, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, :3], mask[2, :6] = 0, 0  # left padding
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        flash = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
    calls = []
    real = attention._products
    assert use_cpu_attention(model) and model.config._attn_implementation == NAME
    try:
        attention._products = lambda *a, **k: calls.append(1) or real(*a, **k)
        with torch.autocast("cpu", dtype=BF16):
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, labels=ids)
    finally:
        attention._products = real
    assert len(calls) == 2  # one per layer: the products ran
    real_rows = mask.bool()
    torch.testing.assert_close(out.logits.float()[real_rows], flash[real_rows], atol=3e-2, rtol=3e-2)
    out.loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    model.save_pretrained(tmp_path)
    assert NAME not in json.dumps(json.loads((tmp_path / "config.json").read_text()))  # a plain checkpoint


def test_models_set_to_another_implementation_are_left_alone():
    model = tiny("gpt2")
    model.set_attn_implementation("eager")
    assert not use_cpu_attention(model)
    assert model.config._attn_implementation == "eager"


def _autograd_products(query, key, value, attn_mask, scale):
    """The formula `_ProductAttention` computes, written op by op so that autograd derives its backward."""
    scores = torch.matmul(query, key.transpose(-1, -2)).float().mul_(scale)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, torch.finfo(torch.float32).min)
    elif attn_mask is not None:
        scores = scores + attn_mask.float()
    return torch.matmul(scores.softmax(dim=-1).to(torch.bfloat16), value)


@pytest.mark.parametrize("mask_kind", ["none", "causal", "bool_with_empty_rows", "additive"])
def test_hand_written_backward_equals_autograd_bit_for_bit(mask_kind):
    torch.manual_seed(3)
    batch, heads, length, dim = 3, 2, 9, 8
    mask = None
    if mask_kind == "causal":
        mask = torch.ones(length, length, dtype=torch.bool).tril()
    elif mask_kind == "bool_with_empty_rows":  # row 0 is a left-padded sequence: its first queries see no key
        mask = torch.ones(length, length, dtype=torch.bool).tril()[None, None].repeat(batch, 1, 1, 1)
        mask[0, :, :, :3] = False
    elif mask_kind == "additive":
        mask = torch.randn(batch, 1, length, length)
    inputs = [torch.randn(batch, heads, length, dim, dtype=torch.bfloat16) for _ in range(3)]
    grad_out = torch.randn(batch, heads, length, dim, dtype=torch.bfloat16)
    results = []
    for function in (_autograd_products, attention._ProductAttention.apply):
        leaves = [x.clone().requires_grad_() for x in inputs]
        out = function(*leaves, mask, 0.3)
        out.backward(grad_out)
        results.append([out] + [x.grad for x in leaves])
    for mine, reference in zip(*results, strict=True):
        assert torch.equal(mine, reference)


def test_a_mask_changed_in_place_is_not_served_a_stale_bias():
    torch.manual_seed(4)
    query, key, value = (torch.randn(1, 2, 5, 8, dtype=torch.bfloat16) for _ in range(3))
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool).tril()
    first = attention._ProductAttention.apply(query, key, value, mask, 0.3)
    assert torch.equal(attention._ProductAttention.apply(query, key, value, mask, 0.3), first)  # cached bias
    mask[..., 0] = False  # the same tensor, now hiding the first key from every query
    changed = attention._ProductAttention.apply(query, key, value, mask, 0.3)
    assert torch.equal(changed, _autograd_products(query, key, value, mask, 0.3))
    assert not torch.equal(changed, first)

