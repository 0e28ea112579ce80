"""Attention for transformers models on a CPU in bf16: two matrix products and a float32 softmax.

PyTorch's CPU flash-attention kernel (what transformers' "sdpa" attention runs on a CPU) is slower in bf16 than in
fp32 at the shapes of our training steps, and its backward pass most of all. Measured on an AMD EPYC with native
bf16 (2 threads, torch 2.13), forward and backward of 8 sequences x 4 heads x 128 positions x 64, causal: 10.0 ms
in bf16, 6.4 ms in fp32, and 4.6 ms written as `softmax(q k^T * scale + mask) v` with both products in bf16 and the
softmax in float32 (the "math" formulation; Vaswani et al. 2017, eq. 1). The explicit products hold the
(batch, heads, queries, keys) scores in memory, so they run only where those are small (`MAX_SCORE_BYTES`).

`use_cpu_attention(model)` points a transformers model at `cpu_attention`, which takes the products only on a CPU,
in bf16 (autocast or bf16 tensors), without dropout, and within the memory bound; everything else (fp32, GPUs,
dropout, long sequences, position biases) goes to transformers' own "sdpa" function unchanged.
"""

from __future__ import annotations

import torch

NAME = "alinea_cpu"
"""The attention implementation's name in transformers' registries."""

MAX_SCORE_BYTES = 2**26
"""Largest float32 score tensor (batch x heads x queries x keys x 4 bytes) taken by the explicit products: 64 MiB,
e.g. 8 sequences x 12 heads x 416 x 416 positions. Longer sequences use the flash kernel, which never holds it."""


def _low_precision(query: torch.Tensor) -> bool:
    return query.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


def takes_products(query: torch.Tensor, key: torch.Tensor, *, dropout: float, position_bias) -> bool:
    """Whether `cpu_attention` computes this call itself (else it hands it to transformers' sdpa function)."""
    batch, heads, q_len, _ = query.shape
    return (
        query.device.type == "cpu"
        and dropout == 0.0
        and position_bias is None
        and _low_precision(query)
        and batch * heads * q_len * key.shape[2] * 4 <= MAX_SCORE_BYTES
    )


def attend(query, key, value, *, attn_mask=None, is_causal: bool = False, scale: float | None = None):
    """`F.scaled_dot_product_attention` (same arguments, same meaning, no dropout), as two products and a float32
    softmax where `takes_products` says so. query (batch, heads, q, d); key and value (batch, heads, k, d);
    `attn_mask` boolean (True = may attend) or additive float, broadcastable to (batch, heads, q, k); `is_causal`
    aligned top-left, as torch's."""
    if not takes_products(query, key, dropout=0.0, position_bias=None):
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                                                is_causal=is_causal, scale=scale)
    return _products(query, key, value, attn_mask=attn_mask, is_causal=is_causal, scale=scale)


def _products(query, key, value, *, attn_mask, is_causal: bool, scale: float | None):
    """softmax(q k^T * scale + mask) v: bf16 products, float32 scores and softmax, a bf16 result."""
    if is_causal:
        attn_mask = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool, device=query.device).tril_()
    scale = scale if scale is not None else query.shape[-1] ** -0.5
    low = torch.bfloat16
    return _ProductAttention.apply(query.to(low), key.to(low), value.to(low), attn_mask, scale)


class _ProductAttention(torch.autograd.Function):
    """`_products` with a hand-written backward pass: the same numbers as autograd through the products, the float32
    softmax and the casts between them, in fewer passes over the (batch, heads, q, k) scores. Autograd's version kept
    a masked copy of the scores and a graph node per operation; here the scale and the mask (as an additive bias
    built once per mask, `_bias_of`) are applied in one pass, the softmax gradient is one `_softmax_backward_data`
    call, and the gradient is masked only where some row allows no key. Measured on 8 x 4 heads x 128 x 64, causal
    (2 threads, Intel Xeon with AMX, q, k and v split from one projection as in GPT-2, alternating runs in one
    process, three runs of 15): forward and backward 3.0-3.4 -> 2.5-2.7 ms (medians; 20-22% less in each run),
    identical outputs and gradients."""

    @staticmethod
    def forward(ctx, query, key, value, attn_mask, scale: float):
        # Transformers hands q, k and v over as strided views of one projection: batched products of contiguous
        # copies are faster, copies included (8 x 4 x 128 x 64: q k^T 0.29 ms on the views, 0.15 ms this way).
        query, key, value = query.contiguous(), key.contiguous(), value.contiguous()
        products = torch.matmul(query, key.transpose(-1, -2))  # (batch, heads, q, k), bf16
        bias, empty_rows = _bias_of(attn_mask)
        if bias is None:
            scores = products.float().mul_(scale)
        else:  # bias + scale * products in one pass: the numbers of float(products) * scale, then the mask
            scores = torch.add(bias, products, alpha=scale)
        probs32 = torch.softmax(scores, dim=-1)
        probs = probs32.to(torch.bfloat16)
        ctx.save_for_backward(query, key, value, probs, probs32, attn_mask if empty_rows else None)
        ctx.scale = scale
        return torch.matmul(probs, value)  # bf16, as the flash kernel's output under autocast

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, probs, probs32, bool_mask = ctx.saved_tensors
        grad_out = grad_out.to(torch.bfloat16).contiguous()
        grad_value = torch.matmul(probs.transpose(-1, -2), grad_out)
        grad_probs = torch.matmul(grad_out, value.transpose(-1, -2)).float()
        grad_scores = torch._softmax_backward_data(grad_probs, probs32, -1, torch.float32)
        if bool_mask is not None:  # rows with no allowed key: uniform weights, but masked scores get no gradient
            grad_scores.masked_fill_(~bool_mask, 0.0)
        grad_scores = grad_scores.mul_(ctx.scale).to(torch.bfloat16)  # (batch, heads, q, k)
        grad_query = torch.matmul(grad_scores, key)
        grad_key = torch.matmul(grad_scores.transpose(-1, -2), query)
        return grad_query, grad_key, grad_value, None, None


_last_bias: tuple = (None, -1, None, False)
"""(mask, its version, its additive bias, whether some row allows no key) of the last mask seen: the layers of one
forward pass share one mask object, so the bias is built once per forward, not once per layer. The version counter
(bumped by any in-place change of the mask) keeps a mask changed in place from reusing a stale bias."""


def _bias_of(attn_mask) -> tuple[torch.Tensor | None, bool]:
    """The float32 additive form of `attn_mask` (0 where allowed, the most negative float elsewhere: not -inf, so a
    row with no allowed key, a left pad's query, stays finite) and whether some row allows no key."""
    global _last_bias
    if attn_mask is None:
        return None, False
    if attn_mask.dtype != torch.bool:
        return attn_mask.float(), False
    mask, version, bias, empty_rows = _last_bias
    if mask is not attn_mask or version != attn_mask._version:
        bias = torch.zeros(attn_mask.shape, dtype=torch.float32, device=attn_mask.device)
        bias.masked_fill_(~attn_mask, torch.finfo(torch.float32).min)
        empty_rows = not bool(attn_mask.any(dim=-1).all())
        _last_bias = (attn_mask, attn_mask._version, bias, empty_rows)
    return bias, empty_rows


def cpu_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
                  position_bias=None, **kwargs):
    """transformers' attention-function contract: query (batch, heads, q, d), key and value (batch, kv_heads, k, d),
    `attention_mask` None, boolean (True = may attend) or additive float, broadcastable to (batch, heads, q, k).
    Returns (output (batch, q, heads, d), None)."""
    if not takes_products(query, key, dropout=dropout, position_bias=position_bias) or kwargs.get("softcap"):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, position_bias=position_bias, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    q_len, k_len = query.shape[2], key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal and attention_mask is None and q_len > 1)
    if causal and k_len > q_len:  # as transformers' sdpa function: an unmasked causal call aligns the queries top-left
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    out = _products(query, key, value, attn_mask=attention_mask, is_causal=causal, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Add `cpu_attention` (and transformers' sdpa mask builder, whose masks it takes) to transformers' registries."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, cpu_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_cpu_attention(model) -> bool:
    """Point `model` (a transformers model, or a peft wrapper of one) at `cpu_attention` where it runs transformers'
    "sdpa" attention; returns whether it did. Models set to another implementation (eager, flash) are left alone.
    The choice is not saved with the checkpoint."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    register()
    if config._attn_implementation != NAME:
        base.set_attn_implementation(NAME)
    return True
