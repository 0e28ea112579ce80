"""The sampling engine: KV-cached, batched sampling from a causal LM on left-padded prompts.

Every stage samples through `generate_ids` (token ids in, token ids out) or `generate` (text in, text out).

How a batch is sampled:

1. **Prefill**: one forward pass over the left-padded prompts writes every layer's keys and values into a cache and
   returns logits for the last position only.
2. **Decode**: each step feeds one token per sequence, at position `prompt_len + t`, and samples the next token.
   A sequence that emits a stop token is finished: its later tokens are `pad_id` (its row is still computed, so that
   the batch stays rectangular, and the result thrown away) until every row is finished.

Two ways to run the model, picked per call by `decoder_for`:

- **Our decoder** (`StaticKVDecoder`) for the architectures we know (GPT-2; Llama, Mistral and Qwen2 without
  sliding windows): the cache is preallocated once for `prompt_len + max_new_tokens` positions and written in place,
  the attention mask is built once (and dropped entirely when no prompt is padded), and the step calls the model's
  own submodules (norms, projections, MLPs, LM head, rotary tables) with `scaled_dot_product_attention` in between
  (on a CPU, a decode step's one-query attention goes through a C kernel, `alinea.model.native.decode_attention`).
  Calling the submodules, not copies of their weights, keeps LoRA adapters (peft) and later weight updates live.
  Dropout is never applied: a rollout samples from the deterministic policy whatever `model.training` says.
- **The model's own forward** with a transformers `DynamicCache` for any other causal LM.

Sampling (`sample_next`) is exact inverse-transform sampling: one uniform number per row, found in the cumulative
sum of the (temperature-scaled, top-p-truncated) probabilities. On a CPU it is about 5x cheaper per step than the
Gumbel-max trick and 15x cheaper than `torch.multinomial`, both of which draw one random number per vocabulary entry
(see docs/sampling.md for the numbers). The uniform numbers for all steps are drawn in one call before decoding.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alinea.model import native
from alinea.model.onednn import PackedLinears
from alinea.model.tokenizer import stop_token_ids

NUCLEUS_CANDIDATES = 64
"""On CPU, top-p first looks among this many most likely tokens and sorts the whole vocabulary only when their
probability mass is below top_p (a full sort of a 32 x 8192 batch costs about 9 ms, `topk(64)` about 0.3 ms)."""

_SDPA_HAS_GQA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 5)
"""`scaled_dot_product_attention(enable_gqa=True)` arrived in torch 2.5."""

HALF_DTYPES = (torch.bfloat16, torch.float16)
"""Dtypes whose attention runs in float32 on a CPU (see `StaticKVDecoder.attend`)."""

CHECK_FINISHED_EVERY = {"cpu": 1, "other": 8}
"""Decode steps between checks whether every row has stopped: each check waits for the device (free on a CPU)."""


@dataclass
class Generation:
    """One sampled answer."""

    prompt: str
    text: str
    token_ids: list[int]
    finished: bool  # True when a stop token ended it, False when it hit max_new_tokens


# ---------------------------------------------------------------------------------------------------------------------
# Drawing one token per row


def sample_next(logits: torch.Tensor, *, temperature: float, top_p: float, generator: torch.Generator | None):
    """Draw one token per row from `logits` (batch, vocab): greedy at temperature 0, else top-p sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    uniform = torch.rand(logits.shape[0], device=logits.device, generator=generator)
    return draw_tokens(logits, temperature=temperature, top_p=top_p, uniform=uniform)


def draw_tokens(logits: torch.Tensor, *, temperature: float, top_p: float, uniform: torch.Tensor) -> torch.Tensor:
    """One token per row of `logits` (batch, vocab), given one uniform number in [0, 1) per row (batch,).

    temperature <= 0 is greedy (argmax; `uniform` unused). Otherwise the distribution is softmax(logits / T),
    truncated to the nucleus when top_p < 1 (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration",
    sec. 3.1: the smallest set of most likely tokens whose probability reaches top_p), and sampled exactly by
    inverting its cumulative distribution at `uniform`.
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    scores = logits.float() * (1.0 / temperature)  # (batch, vocab)
    probs = torch.softmax(scores, dim=-1)
    if top_p >= 1.0:
        return _invert_cdf(probs, uniform)
    sorted_probs, sorted_ids = _nucleus_candidates(probs, top_p)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    # Keep a token when the mass before it is below top_p: the smallest set reaching top_p (at least one token).
    weights = sorted_probs * (mass_before < top_p)
    return sorted_ids.gather(-1, _invert_cdf(weights, uniform).unsqueeze(-1)).squeeze(-1)


def _nucleus_candidates(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities sorted in descending order (batch, k) and their token ids: enough of them to hold the nucleus."""
    k = NUCLEUS_CANDIDATES
    if probs.device.type == "cpu" and k < probs.shape[-1]:
        top_probs, top_ids = probs.topk(k, dim=-1)  # sorted, descending
        # The nucleus fits in the top k when their mass reaches top_p: token k+1 then has mass before it >= top_p.
        if bool((top_probs.cumsum(dim=-1)[:, -1] >= top_p).all()):
            return top_probs, top_ids
    return probs.sort(dim=-1, descending=True)


def _invert_cdf(weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Index i of each row where cumsum(weights)[i-1] <= u * total < cumsum(weights)[i]: token i has chance w_i / total.

    `weights` (batch, n) are non-negative with a positive sum; `uniform` (batch,) lies in [0, 1). The running sum is in
    float64 so that even a 150k vocabulary keeps each token's share exact to about 1e-16. A token of weight 0 owns an
    empty interval and is never drawn. A float32 uniform is at most 1 - 2^-24, so in float64 u * total stays below
    total and the index stays below n.
    """
    wide = torch.float32 if weights.device.type == "mps" else torch.float64  # MPS has no float64
    cumulative = weights.cumsum(dim=-1, dtype=wide)  # (batch, n)
    target = uniform.to(wide).unsqueeze(-1) * cumulative[:, -1:]  # (batch, 1)
    return torch.searchsorted(cumulative, target, right=True).squeeze(-1)


# ---------------------------------------------------------------------------------------------------------------------
# The decode loop


def generate_ids(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    min_new_tokens: int = 0,
    fixed_length: bool = False,
    use_own_decoder: bool = True,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample continuations of left-padded prompts `input_ids` (batch, prompt_len) with `attention_mask` (0 = pad).

    Returns (new_ids, finished): new_ids (batch, n_new) padded with `pad_id` after a sequence stops (the stop token
    itself is kept), finished (batch,) True where a stop token was emitted. n_new is the step at which the last row
    stopped, or `max_new_tokens`; with `fixed_length` it is always `max_new_tokens` (PPO's "EOS trick" samples a fixed
    number of tokens). Stop tokens cannot be drawn in the first `min_new_tokens` steps. `use_own_decoder=False`
    forces the model's own forward (for comparisons); otherwise our decoder runs whenever it knows the architecture.
    `compute_dtype=torch.bfloat16` runs the products of our GPT-2 decoder on a CPU in bf16 (bf16 copies of the
    weights, packed once per call; norms, residual sums and the sampling in float32), as autocast would: what a bf16
    RL run samples with. Elsewhere (fp32 by default, other decoders, GPUs) it changes nothing.
    The returned tensors are ordinary tensors (usable in autograd), although sampling runs under inference mode.
    """
    with torch.inference_mode():
        new_ids, finished = _sample_loop(
            model, input_ids, attention_mask, max_new_tokens=max_new_tokens, stop_ids=list(stop_ids), pad_id=pad_id,
            temperature=temperature, top_p=top_p, generator=generator, min_new_tokens=min_new_tokens,
            fixed_length=fixed_length, use_own_decoder=use_own_decoder, compute_dtype=compute_dtype,
        )
    return new_ids.clone(), finished.clone()  # clones made outside inference mode are normal tensors


def _sample_loop(
    model, input_ids, attention_mask, *, max_new_tokens, stop_ids, pad_id, temperature, top_p, generator,
    min_new_tokens, fixed_length, use_own_decoder, compute_dtype=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    device = input_ids.device
    batch, prompt_len = input_ids.shape
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    if max_new_tokens <= 0:
        return torch.empty(batch, 0, dtype=torch.long, device=device), finished
    prompt_mask = attention_mask.to(device=device, dtype=torch.bool)
    positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)  # (batch, prompt_len): left padding shifts them
    total_len = prompt_len + max_new_tokens
    decoder = decoder_for(model, total_len) if use_own_decoder else None
    if decoder is None:
        decoder = HFCacheDecoder(model)
    decoder.start(prompt_mask, total_len, compute_dtype=compute_dtype)

    stops = torch.tensor(stop_ids, dtype=torch.long, device=device)
    new_ids = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    stopped_at = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)  # step of the stop token
    uniforms = None
    if temperature > 0:  # every step's random numbers in one call: (steps, batch)
        uniforms = torch.rand(max_new_tokens, batch, device=device, generator=generator)
    check_every = CHECK_FINISHED_EVERY["cpu" if device.type == "cpu" else "other"]

    logits = decoder.prefill(input_ids, positions)  # (batch, vocab)
    next_position = positions[:, -1] + 1  # (batch,)
    steps_run = 0
    for step in range(max_new_tokens):
        if step < min_new_tokens and len(stop_ids):
            logits[:, stops] = float("-inf")
        uniform = uniforms[step] if uniforms is not None else None
        token = draw_tokens(logits, temperature=temperature, top_p=top_p, uniform=uniform)  # (batch,)
        token.masked_fill_(finished, pad_id)
        new_ids[:, step] = token
        newly = torch.isin(token, stops) & ~finished
        stopped_at.masked_fill_(newly, step)
        finished |= newly
        steps_run = step + 1
        if steps_run == max_new_tokens or (steps_run % check_every == 0 and bool(finished.all())):
            break
        logits = decoder.step(token, next_position, prompt_len + step)
        next_position += 1
    if fixed_length:
        return new_ids, finished
    # n_new: up to the last row's stop token, or every step run when some row is still going. Checking every few
    # steps only (on accelerators) changes nothing here: the extra columns are pad.
    n_new = int(stopped_at.max()) + 1 if bool(finished.all()) else steps_run
    return new_ids[:, :n_new], finished


# ---------------------------------------------------------------------------------------------------------------------
# Running the model: our static-cache decoder, or the model's own forward


class KVCache:
    """Keys and values of every layer, preallocated for `max_len` positions and written in place.

    Each layer holds two tensors (batch, kv_heads, max_len, head_dim), allocated at the first write with the dtype
    and device of the keys written (so autocast and half-precision models need nothing special).
    """

    def __init__(self, n_layers: int, max_len: int) -> None:
        self.max_len = max_len
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def write(self, layer: int, start: int, key: torch.Tensor, value: torch.Tensor):
        """Store key/value (batch, kv_heads, n, head_dim) at positions start..start+n; return all positions so far."""
        if self.keys[layer] is None:
            batch, heads, _, head_dim = key.shape
            self.keys[layer] = key.new_empty(batch, heads, self.max_len, head_dim)
            self.values[layer] = value.new_empty(batch, heads, self.max_len, head_dim)
        end = start + key.shape[2]
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, start:end] = key
        values[:, :, start:end] = value
        return keys[:, :, :end], values[:, :, :end]


class StaticKVDecoder:
    """Prefill and one-token decode steps over a `KVCache`, shared by the architectures below.

    The attention mask is built once per batch: None when no prompt is padded (prefill is then plainly causal and a
    decode step attends to every cached position), else a boolean (batch, 1, 1, total_len) row of valid positions.
    Prefill computes the top layer's attention output and MLP at the last position only: the other positions of that
    layer only contribute their keys and values (on the benchmark's 4-layer model, 19% of the prefill's products).
    """

    def __init__(self, lm, n_layers: int) -> None:
        self.lm = lm
        self.n_layers = n_layers
        self.cache: KVCache | None = None
        self.valid: torch.Tensor | None = None  # (batch, 1, 1, total_len) bool, or None without padding
        self.head_t: torch.Tensor | None = None  # lm_head weight as (width, vocab), on CPU
        self.head_bias: torch.Tensor | None = None
        self.linears: PackedLinears | None = None  # oneDNN-packed weights of this call, on CPU
        self.native_decode = False  # decode steps attend through alinea.model.native's kernel (CPU)

    def linear_modules(self) -> list[torch.nn.Module]:
        """Every linear layer a step multiplies by (projections, MLP, LM head): what `start` may pack."""
        raise NotImplementedError

    takes_compute_dtype = False
    """Whether `start(compute_dtype=...)` is honoured (the decoder keeps its attention inputs in one dtype)."""

    def start(self, prompt_mask: torch.Tensor, total_len: int, compute_dtype: torch.dtype | None = None) -> None:
        self.cache = KVCache(self.n_layers, total_len)
        head = self.lm.lm_head
        self.head_t = self.head_bias = self.linears = None
        on_cpu = prompt_mask.device.type == "cpu"
        if on_cpu:
            # The weights of plain linear layers packed once per call into oneDNN's layout: on the benchmark's
            # GPT-2, every product of a decode step about halved (see alinea.model.onednn and docs/sampling.md).
            # Per call, because a policy's weights change between calls.
            modules = self.linear_modules()
            dtype = compute_dtype if self.takes_compute_dtype else None
            if dtype is not None and PackedLinears.applies(modules, dtype=dtype):
                self.linears = PackedLinears(modules, rows=prompt_mask.shape[0], dtype=dtype)
            elif PackedLinears.applies(modules):
                self.linears = PackedLinears(modules, rows=prompt_mask.shape[0])
        head_packed = self.linears is not None and head in self.linears
        if on_cpu and not head_packed and type(head) is torch.nn.Linear and head.weight.numel() <= 2**26:
            # A (width, vocab) copy of the head made once per call: on a CPU, multiplying by it was about 10% faster
            # per step than by the transposed (vocab, width) weight (the largest matrix product of a step).
            self.head_t = head.weight.t().contiguous()
            self.head_bias = head.bias
        self.native_decode = on_cpu and native.library() is not None
        self.valid = None
        if not bool(prompt_mask.all()):
            batch, prompt_len = prompt_mask.shape
            valid = torch.ones(batch, total_len, dtype=torch.bool, device=prompt_mask.device)
            valid[:, :prompt_len] = prompt_mask
            self.valid = valid[:, None, None, :]

    def prefill(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits (batch, vocab) at the last prompt position; fills the cache for positions 0..prompt_len-1."""
        mask = None if self.valid is None else prefill_mask(self.valid[:, 0, 0, : input_ids.shape[1]])
        return self.forward(input_ids, positions, start=0, mask=mask)

    def step(self, token: torch.Tensor, position: torch.Tensor, start: int) -> torch.Tensor:
        """Logits (batch, vocab) after feeding `token` (batch,) at cache slot `start`, model position `position`."""
        mask = None if self.valid is None else self.valid[..., : start + 1]
        return self.forward(token.unsqueeze(-1), position.unsqueeze(-1), start=start, mask=mask)

    def attend(self, layer: int, query, key, value, *, start: int, mask, scale: float) -> torch.Tensor:
        """Cache key/value (batch, kv_heads, n, d) at `start`; attention of query (batch, heads, q, d) over the cache.

        Returns (batch, q, heads * d). The q queries are the last q of the n positions written: q = n in prefill and
        decode steps, q = 1 for the top layer of prefill. Without a mask, prefill is causal and a single query sees
        every cached position. On a CPU a single query goes through `alinea.model.native.decode_attention` when it
        is built, and the cache keeps the model's dtype; otherwise `scaled_dot_product_attention`, in float32 for
        half-precision models.
        """
        out_dtype = query.dtype
        on_cpu = query.device.type == "cpu"
        native_cache = self.native_decode and out_dtype in native.DECODE_DTYPES
        if out_dtype in HALF_DTYPES and on_cpu and not native_cache:
            # PyTorch's CPU attention kernel is several times slower in bf16 than in float32 at decode shapes (one
            # query over the cache; measured in docs/sampling.md): the cache holds float32 keys and values instead.
            query, key, value = query.float(), key.float(), value.float()
        keys, values = self.cache.write(layer, start, key, value)
        batch, heads, n, head_dim = query.shape
        if n == 1 and self.native_decode and native.decode_attention_usable(query, keys):
            # one query per row (a decode step, or prefill's top layer): the mask's last row is the one it reads
            return native.decode_attention(query, keys, values, None if mask is None else mask[:, 0, -1], scale)
        if out_dtype in HALF_DTYPES and on_cpu:
            query, keys, values = query.float(), keys.float(), values.float()
        if mask is not None and mask.shape[-2] != n:
            mask = mask[..., -n:, :]
        if keys.shape[1] != heads:  # grouped-query attention: each kv head serves heads // kv_heads query heads
            if _SDPA_HAS_GQA:
                extra = {"enable_gqa": True}
            else:
                keys = keys.repeat_interleave(heads // keys.shape[1], dim=1)
                values = values.repeat_interleave(heads // values.shape[1], dim=1)
                extra = {}
        else:
            extra = {}
        out = F.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, is_causal=mask is None and n > 1, scale=scale, **extra,
        )  # (batch, heads, n, d)
        return out.transpose(1, 2).reshape(batch, n, heads * head_dim).to(out_dtype)

    def project(self, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """`module(x)` for a linear layer, through its packed weight when this call packed it (`PackedLinears` also
        calls the layers it did not pack, with their own dtype's input)."""
        return self.linears(module, x) if self.linears is not None else module(x)

    def project_then(self, module: torch.nn.Module, x: torch.Tensor, act, fused: tuple[str, str] | None):
        """`act(module(x))`; `fused` names act as a oneDNN post-operation (e.g. ("gelu", "tanh")) applied in the
        product itself when the layer is packed."""
        if fused is not None and self.linears is not None and module in self.linears:
            return self.linears(module, x, *fused)
        return act(self.project(module, x))

    def logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """The LM head on the final-normed last hidden state (batch, width) -> (batch, vocab)."""
        if self.linears is not None and self.lm.lm_head in self.linears:
            return self.linears(self.lm.lm_head, last_hidden).float()  # sampling reads float32 logits
        if self.head_t is not None:
            out = torch.matmul(last_hidden, self.head_t)
            return out if self.head_bias is None else out.add_(self.head_bias)
        return self.lm.lm_head(last_hidden)

    def forward(self, input_ids, positions, *, start: int, mask) -> torch.Tensor:
        raise NotImplementedError


def prefill_mask(prompt_mask: torch.Tensor) -> torch.Tensor:
    """Which prompt positions each prompt position attends to: (batch, 1, n, n) bool from (batch, n) bool.

    Causal, without pad keys, and every position sees itself: a left pad position would otherwise see nothing, and
    some attention kernels (the math one before torch 2.5) then return NaN, which would reach the cache.
    """
    n = prompt_mask.shape[-1]
    causal = torch.ones(n, n, dtype=torch.bool, device=prompt_mask.device).tril_()
    mask = causal & prompt_mask[:, None, None, :]
    return mask | torch.eye(n, dtype=torch.bool, device=prompt_mask.device)


class Gpt2Decoder(StaticKVDecoder):
    """GPT-2 (`GPT2LMHeadModel`): learned positions, pre-LayerNorm blocks, fused qkv projection (Conv1D)."""

    takes_compute_dtype = True  # q, k and v come out of one product; the residual stream stays float32

    def __init__(self, lm) -> None:
        super().__init__(lm, lm.config.n_layer)
        self.body = lm.transformer
        self.heads = lm.config.n_head
        self.width = lm.config.n_embd

    @staticmethod
    def supports(lm) -> bool:
        cfg = lm.config
        return not getattr(cfg, "add_cross_attention", False)

    def linear_modules(self) -> list[torch.nn.Module]:
        parts = [(b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj) for b in self.body.h]
        return [module for four in parts for module in four] + [self.lm.lm_head]

    def forward(self, input_ids, positions, *, start: int, mask) -> torch.Tensor:
        body = self.body
        batch, n = input_ids.shape
        hidden = body.wte(input_ids) + body.wpe(positions)  # (batch, n, width)
        for layer, block in enumerate(body.h):
            attn = block.attn
            query, key, value = self.project(attn.c_attn, block.ln_1(hidden)).split(self.width, dim=2)
            query, key, value = (t.view(batch, n, self.heads, -1).transpose(1, 2) for t in (query, key, value))
            if n > 1 and layer == self.n_layers - 1:  # prefill reads the top layer at the last position only
                query, hidden = query[:, :, -1:], hidden[:, -1:]
            out = self.attend(layer, query, key, value, start=start, mask=mask, scale=_gpt2_scale(attn))
            hidden = self.project(attn.c_proj, out) + hidden
            mlp = block.mlp
            up = self.project_then(mlp.c_fc, block.ln_2(hidden), *_gpt2_activation(mlp.act))
            hidden = self.project(mlp.c_proj, up) + hidden
        return self.logits(body.ln_f(hidden[:, -1]))  # logits at the last position only


def _gpt2_scale(attn) -> float:
    """Attention scale of a GPT-2 layer (1/sqrt(d), further divided by layer+1 with scale_attn_by_inverse_layer_idx)."""
    if hasattr(attn, "scaling"):
        return float(attn.scaling)
    scale = attn.head_dim**-0.5 if attn.scale_attn_weights else 1.0
    return scale / float(attn.layer_idx + 1) if attn.scale_attn_by_inverse_layer_idx else scale


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _gpt2_activation(act) -> tuple:
    """(function, oneDNN post-operation or None) for a GPT-2 MLP's activation. Its tanh-approximate GELU written op
    by op (transformers' `NewGELUActivation`) runs as the one fused kernel of the same formula, or inside the packed
    product."""
    if _is_gelu_written_op_by_op(act) or (type(act) is torch.nn.GELU and act.approximate == "tanh"):
        return _gelu_tanh, ("gelu", "tanh")
    if type(act) is torch.nn.GELU and act.approximate == "none":
        return act, ("gelu", "none")
    return act, None


def _is_gelu_written_op_by_op(act) -> bool:
    """True for transformers' `NewGELUActivation` and `FastGELUActivation`: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    try:
        from transformers.activations import FastGELUActivation, NewGELUActivation
    except ImportError:
        return False
    return type(act) in (NewGELUActivation, FastGELUActivation)


class LlamaDecoder(StaticKVDecoder):
    """Llama and its look-alikes (Mistral, Qwen2): RMSNorm, rotary positions, grouped-query attention, gated MLP."""

    def __init__(self, lm) -> None:
        super().__init__(lm, lm.config.num_hidden_layers)
        self.body = lm.model

    @staticmethod
    def supports(lm, total_len: int) -> bool:
        cfg = lm.config
        layer_types = getattr(cfg, "layer_types", None) or []
        if any(kind != "full_attention" for kind in layer_types):
            return False
        window = getattr(cfg, "sliding_window", None)
        if window is not None and getattr(cfg, "use_sliding_window", True) and window < total_len:
            return False
        attn = lm.model.layers[0].self_attn
        return all(hasattr(attn, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim")) and not any(
            hasattr(attn, name) for name in ("q_norm", "k_norm")
        )

    def linear_modules(self) -> list[torch.nn.Module]:
        names = ("q_proj", "k_proj", "v_proj", "o_proj")
        modules = [getattr(block.self_attn, name) for block in self.body.layers for name in names]
        for block in self.body.layers:
            mlp = block.mlp
            modules += [getattr(mlp, name) for name in ("gate_proj", "up_proj", "down_proj") if hasattr(mlp, name)]
        return modules + [self.lm.lm_head]

    def mlp(self, mlp, x: torch.Tensor) -> torch.Tensor:
        """The gated MLP, down(act(gate(x)) * up(x)), with SiLU fused into the packed gate product; any other MLP
        as its module."""
        if not all(hasattr(mlp, name) for name in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            return mlp(x)
        fused = ("swish", "") if _is_silu(mlp.act_fn) else None
        gate = self.project_then(mlp.gate_proj, x, mlp.act_fn, fused)
        return self.project(mlp.down_proj, gate * self.project(mlp.up_proj, x))

    def forward(self, input_ids, positions, *, start: int, mask) -> torch.Tensor:
        body = self.body
        batch, n = input_ids.shape
        hidden = body.embed_tokens(input_ids)  # (batch, n, width)
        cos, sin = body.rotary_emb(hidden, positions)  # (batch, n, head_dim) each
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
        for layer, block in enumerate(body.layers):
            attn = block.self_attn
            normed = block.input_layernorm(hidden)
            key = self.project(attn.k_proj, normed).view(batch, n, -1, attn.head_dim).transpose(1, 2)
            value = self.project(attn.v_proj, normed).view(batch, n, -1, attn.head_dim).transpose(1, 2)
            key = _rotate(key, cos, sin)
            q = n
            if n > 1 and layer == self.n_layers - 1:  # prefill reads the top layer at the last position only
                q, normed, hidden = 1, normed[:, -1:], hidden[:, -1:]
            query = self.project(attn.q_proj, normed).view(batch, q, -1, attn.head_dim).transpose(1, 2)
            query = _rotate(query, cos[:, :, -q:], sin[:, :, -q:])
            out = self.attend(layer, query, key, value, start=start, mask=mask, scale=attn.scaling)
            hidden = hidden + self.project(attn.o_proj, out)
            hidden = hidden + self.mlp(block.mlp, block.post_attention_layernorm(hidden))
        return self.logits(body.norm(hidden[:, -1]))  # logits at the last position only


def _is_silu(act) -> bool:
    """True for `nn.SiLU` and transformers' `SiLUActivation` (both F.silu: x * sigmoid(x))."""
    return type(act) is torch.nn.SiLU or (type(act).__name__ == "SiLUActivation" and isinstance(act, torch.nn.Module))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, RoFormer, eq. 34) in the half-split layout transformers uses."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


LLAMA_LIKE = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
"""Model classes `LlamaDecoder` runs (checked by class name, so transformers is imported only when needed)."""


def decoder_for(model, total_len: int) -> StaticKVDecoder | None:
    """Our decoder for `model` (possibly wrapped by peft with LoRA adapters), or None for an unknown architecture."""
    lm = model
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None:
        if getattr(peft_config, "is_prompt_learning", False):
            return None  # virtual prompt tokens live in the peft wrapper's forward
        lm = model.get_base_model()
    name = type(lm).__name__
    if name == "GPT2LMHeadModel" and Gpt2Decoder.supports(lm):
        return Gpt2Decoder(lm)
    if name in LLAMA_LIKE and LlamaDecoder.supports(lm, total_len):
        return LlamaDecoder(lm)
    return None


class HFCacheDecoder:
    """Any causal LM through its own forward, with a transformers `DynamicCache` and a preallocated attention mask."""

    def __init__(self, model) -> None:
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        params = inspect.signature(base.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"  # `cache` in recent transformers
        self.logits_arg = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def start(self, prompt_mask: torch.Tensor, total_len: int, compute_dtype: torch.dtype | None = None) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache()
        batch, prompt_len = prompt_mask.shape
        self.mask = torch.ones(batch, total_len, dtype=torch.long, device=prompt_mask.device)
        self.mask[:, :prompt_len] = prompt_mask

    def prefill(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self._forward(input_ids, positions, input_ids.shape[1])

    def step(self, token: torch.Tensor, position: torch.Tensor, start: int) -> torch.Tensor:
        return self._forward(token.unsqueeze(-1), position.unsqueeze(-1), start + 1)

    def _forward(self, input_ids, positions, seen: int) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids, attention_mask=self.mask[:, :seen], position_ids=positions, use_cache=True,
            **self.logits_arg, **{self.cache_arg: self.cache},  # the cache object is updated in place
        )
        return out.logits[:, -1, :]


# ---------------------------------------------------------------------------------------------------------------------
# Text in, text out


def encode_prompts(tokenizer, prompts: list[list[dict[str, str]]] | list[str], *, chat: bool = True):
    """Token ids for prompts: chat message lists go through the chat template with the assistant header appended."""
    texts = []
    for prompt in prompts:
        if chat:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        else:
            texts.append(prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt))
    return texts


def generate(
    model,
    tokenizer,
    prompts: list,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_p: float = 0.95,
    batch_size: int = 16,
    seed: int = 0,
    chat: bool = True,
    progress=None,
    min_new_tokens: int = 0,
) -> list[Generation]:
    """Sample one answer for each prompt (a string, or a list of chat messages), `batch_size` prompts at a time."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    stop_ids = stop_token_ids(tokenizer)
    texts = encode_prompts(tokenizer, prompts, chat=chat)
    results: list[Generation] = []
    tokenizer.padding_side = "left"
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        new_ids, finished = generate_ids(
            model,
            enc["input_ids"].to(device),
            enc["attention_mask"].to(device),
            max_new_tokens=max_new_tokens,
            stop_ids=stop_ids,
            pad_id=tokenizer.pad_token_id,
            temperature=temperature,
            top_p=top_p,
            generator=generator,
            min_new_tokens=min_new_tokens,
        )
        for row, prompt_text in enumerate(chunk):
            ids = [t for t in new_ids[row].tolist() if t != tokenizer.pad_token_id]
            body = [t for t in ids if t not in stop_ids]
            results.append(
                Generation(
                    prompt=prompt_text,
                    text=tokenizer.decode(body, skip_special_tokens=True).strip(),
                    token_ids=ids,
                    finished=bool(finished[row]),
                )
            )
        if progress is not None:
            progress(len(chunk))
    return results
