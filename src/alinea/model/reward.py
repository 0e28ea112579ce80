"""Reward models: a transformers sequence-classification model whose logits are rewards.

`AutoModelForSequenceClassification` with `num_labels` = number of ensemble heads, loaded from any causal-LM or
reward checkpoint directory. Transformers reads the logits at the last non-padding token (the `<|end|>` that closes
the answer). The head is initialised N(0, 1/sqrt(d_model + 1)) and dropout is off (Huang et al. 2024, "The N+
Implementation Details of RLHF with PPO", details on the reward model). After training, the shift and scale that give
reference responses mean 0 and std 1 are stored in `config.json` under `alinea_reward`; plain transformers returns
the raw logits, and `normalise` applies them.

Training does not have to run whole sequences: `shared_prefix_rewards` computes the same rewards for GPT-2 and Llama
with each prompt run once for all of its answers and the last block run only at the read-out token
(`pack_shared_prefixes` builds its input; docs/reward.md, "Performance").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from alinea.errors import UserError
from alinea.model.attention import attend, use_cpu_attention
from alinea.model.causal_lm import check_vocab, is_checkpoint_dir
from alinea.model.onednn import onednn_linear_works
from alinea.model.tokenizer import load_tokenizer

NORMALISATION_KEY = "alinea_reward"


def _without_dropout(config) -> None:
    for name, value in list(config.to_dict().items()):
        if isinstance(value, float) and ("dropout" in name or name.endswith("pdrop")):
            setattr(config, name, 0.0)


def build_reward_model(init_from: str | Path, *, ensemble: int = 1, seed: int = 0):
    """A reward model (and tokenizer) from a causal-LM or reward checkpoint; a new head when the sizes differ."""
    path = Path(init_from)
    if not is_checkpoint_dir(path):
        raise UserError(f"{path}: not a model checkpoint directory (no config.json).")
    tokenizer = load_tokenizer(path)
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    _without_dropout(config)
    previous_heads = getattr(config, "num_labels", None) if getattr(config, NORMALISATION_KEY, None) else None
    config.num_labels = ensemble
    config.pad_token_id = tokenizer.pad_token_id
    config.problem_type = "regression"
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), config=config, local_files_only=True, ignore_mismatched_sizes=True
            )
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a broken folder
        raise UserError(f"{path}: could not load a sequence-classification model from it: {err}") from None
    check_vocab(model, tokenizer, model_path=path, tokenizer_path=path)
    if previous_heads != ensemble:
        init_head(model, seed=seed)
    if hasattr(model.config, NORMALISATION_KEY):
        delattr(model.config, NORMALISATION_KEY)  # normalisation is measured again after training
    use_cpu_attention(model)
    return model, tokenizer


def score_head(model: PreTrainedModel) -> torch.nn.Linear:
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear):
            return head
    raise UserError(f"{type(model).__name__}: no linear score head found (expected .score or .classifier).")


def init_head(model: PreTrainedModel, *, seed: int) -> None:
    """N(0, 1/sqrt(d_model + 1)) weights and zero bias (N+ implementation details)."""
    head = score_head(model)
    generator = torch.Generator().manual_seed(seed)
    std = 1.0 / math.sqrt(head.in_features + 1)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
        if head.bias is not None:
            head.bias.zero_()


def load_reward_model(path: str | Path):
    """Load a trained reward model directory (a run directory's final/ or the run directory itself)."""
    path = Path(path)
    if (path / "final").is_dir() and not is_checkpoint_dir(path):
        path = path / "final"
    if not is_checkpoint_dir(path):
        raise UserError(f"{path}: not a reward model directory (no config.json; give a reward run or its final/).")
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    if not getattr(config, NORMALISATION_KEY, None):
        raise UserError(f"{path}: not an alinea reward model (config.json has no '{NORMALISATION_KEY}').")
    model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
    use_cpu_attention(model)
    tokenizer = load_tokenizer(path)
    return model.eval(), tokenizer


@dataclass
class Normalisation:
    """reward = (raw - shift) / scale, per head (the ensemble mean uses the mean shift and scale)."""

    shift: list[float]
    scale: list[float]

    def apply(self, raw: torch.Tensor) -> torch.Tensor:  # (N, heads) -> (N, heads)
        shift = torch.tensor(self.shift, dtype=raw.dtype, device=raw.device)
        scale = torch.tensor(self.scale, dtype=raw.dtype, device=raw.device)
        return (raw - shift) / scale


def normalisation_of(model: PreTrainedModel) -> Normalisation:
    stored = getattr(model.config, NORMALISATION_KEY, None) or {}
    heads = model.config.num_labels
    return Normalisation(shift=stored.get("shift", [0.0] * heads), scale=stored.get("scale", [1.0] * heads))


def fit_normalisation(raw: torch.Tensor) -> Normalisation:
    """Shift and scale that give `raw` (N, heads), the rewards of reference responses, mean 0 and std 1 per head."""
    shift = raw.mean(dim=0)
    scale = raw.std(dim=0, unbiased=False).clamp(min=1e-6) if raw.shape[0] > 1 else torch.ones_like(shift)
    return Normalisation(shift=shift.tolist(), scale=scale.tolist())


def set_normalisation(model: PreTrainedModel, norm: Normalisation, **extra) -> None:
    setattr(model.config, NORMALISATION_KEY, {"shift": norm.shift, "scale": norm.scale, **extra})


@torch.no_grad()
def raw_rewards(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(N, T) right-padded sequences -> (N, heads) raw rewards at each sequence's last real token."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits.float()


# ---------------------------------------------------------------------------------------------------------------------
# Shared-prefix forward: the prompt once for all of its answers, the last block only where the reward is read


@dataclass
class PrefixSharing:
    """Sequences grouped by a shared prefix (the prompt of a comparison's two answers, of a ranking's K), packed.

    Every real token appears once in `tokens`: first each group's prefix, then each sequence's suffix (the rest of the
    sequence after its group's prefix). Attention reads them in padded layouts through row indices: prefixes as
    (G, P) slots, suffixes as (S, A) slots; a padded slot points at any row (row 0) and masks keep it out. Indices
    are None where no row is padded (the packed order is then the padded order). Build it with
    `pack_shared_prefixes`.
    """

    tokens: torch.Tensor  # (N,) token ids: prefix tokens, then suffix tokens
    positions: torch.Tensor  # (N,) position of each token in its whole sequence
    prefix_lengths: torch.Tensor  # (G,)
    suffix_lengths: torch.Tensor  # (S,) at least 1: the reward is read at a suffix's last token
    group: torch.Tensor  # (S,) the prefix (group) of each sequence
    group_size: int  # K when every group has K sequences (then group = [0]*K + [1]*K + ...), else 0
    readout: torch.Tensor  # (S,) row in `tokens` of each sequence's last token
    prefix_rows: torch.Tensor | None  # (G * P,) row among the prefix tokens of each prefix slot; None: no padding
    suffix_rows: torch.Tensor | None  # (S * A,) row among the suffix tokens of each suffix slot; None: no padding
    prefix_slots: torch.Tensor | None  # (prefix tokens,) slot of each prefix token (the inverse of prefix_rows)
    suffix_slots: torch.Tensor | None  # (suffix tokens,) slot of each suffix token
    prefix_width: int  # P = longest prefix (0 when no group shares anything)
    suffix_width: int  # A = longest suffix
    n_prefix_tokens: int  # tokens[:n_prefix_tokens] are the prefixes'

    def to(self, device) -> PrefixSharing:
        moved = {name: (value.to(device) if isinstance(value, torch.Tensor) else value)
                 for name, value in self.__dict__.items()}
        return PrefixSharing(**moved)


def _common_prefix_length(sequences: list[list[int]]) -> int:
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for other in sequences[1:]:
        n = 0
        while n < length and other[n] == first[n]:
            n += 1
        length = n
    return length


def pack_shared_prefixes(groups: list[list[list[int]]], pad_id: int | None) -> PrefixSharing | None:
    """Pack groups of token sequences (in order: group 0's sequences, then group 1's, ...) around shared prefixes.

    A group's prefix is the longest prefix its sequences share, shortened so that every sequence keeps at least its
    last token as suffix (a single sequence: everything but its last token). Returns None for no groups and where the
    shared-prefix forward would read the reward elsewhere than a plain forward: an empty sequence, or one that ends
    with the pad id (transformers reads the last token that is not the pad id).
    """
    if not groups:
        return None
    prefixes, suffixes, group_of = [], [], []
    for g, sequences in enumerate(groups):
        if not sequences or any(not s or s[-1] == pad_id for s in sequences):
            return None
        n = min(_common_prefix_length(sequences), min(len(s) for s in sequences) - 1)
        prefixes.append(sequences[0][:n])
        suffixes.extend(s[n:] for s in sequences)
        group_of.extend([g] * len(sequences))
    prefix_lengths = [len(p) for p in prefixes]
    suffix_lengths = [len(s) for s in suffixes]
    width_p, width_a = max(prefix_lengths), max(suffix_lengths)
    prefix_starts = [0, *itertools.accumulate(prefix_lengths)][:-1]  # row of each prefix's first token
    suffix_starts = [0, *itertools.accumulate(suffix_lengths)][:-1]  # among the suffix tokens
    n_prefix = sum(prefix_lengths)

    def rows(starts: list[int], lengths: list[int], width: int) -> list[int]:
        return [start + j if j < n else 0 for start, n in zip(starts, lengths, strict=True) for j in range(width)]

    def slots(lengths: list[int], width: int) -> list[int]:
        return [row * width + j for row, n in enumerate(lengths) for j in range(n)]

    def index(values: list[int], padded: bool) -> torch.Tensor | None:
        return torch.tensor(values, dtype=torch.long) if padded else None

    prefix_padded = any(n != width_p for n in prefix_lengths)
    suffix_padded = any(n != width_a for n in suffix_lengths)
    positions = [j for n in prefix_lengths for j in range(n)]
    positions += [prefix_lengths[g] + j for g, n in zip(group_of, suffix_lengths, strict=True) for j in range(n)]
    return PrefixSharing(
        tokens=torch.tensor([t for p in prefixes for t in p] + [t for s in suffixes for t in s], dtype=torch.long),
        positions=torch.tensor(positions, dtype=torch.long),
        prefix_lengths=torch.tensor(prefix_lengths, dtype=torch.long),
        suffix_lengths=torch.tensor(suffix_lengths, dtype=torch.long),
        group=torch.tensor(group_of, dtype=torch.long),
        group_size=len(groups[0]) if all(len(g) == len(groups[0]) for g in groups) else 0,
        readout=torch.tensor([n_prefix + start + n - 1 for start, n in zip(suffix_starts, suffix_lengths, strict=True)]),
        prefix_rows=index(rows(prefix_starts, prefix_lengths, width_p), prefix_padded),
        suffix_rows=index(rows(suffix_starts, suffix_lengths, width_a), suffix_padded),
        prefix_slots=index(slots(prefix_lengths, width_p), prefix_padded),
        suffix_slots=index(slots(suffix_lengths, width_a), suffix_padded),
        prefix_width=width_p, suffix_width=width_a, n_prefix_tokens=n_prefix,
    )


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b, the forward and the input gradient with oneDNN's fp32 GEMM, the weight gradient with torch's.

    On the AMD EPYC CPUs we measured, oneDNN's kernel ran a (3072 x 256) @ (256 x 1024) product about 15% faster
    than the MKL sgemm behind `torch.addmm` (same fp32 arithmetic, summed in another order); for the weight
    gradient (a long reduction) MKL was as fast. `in_out` says the weight is stored (in, out) (GPT-2's Conv1D).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, in_out: bool):
        ctx.save_for_backward(x, weight)
        ctx.in_out, ctx.has_bias = in_out, bias is not None
        out_in = weight.t() if in_out else weight  # the kernel reads (out, in); a transposed view is as fast
        return torch.ops.mkldnn._linear_pointwise(x, out_in, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            in_out = weight if ctx.in_out else weight.t()  # grad @ W: the kernel's "weight" is (in, out)
            grad_x = torch.ops.mkldnn._linear_pointwise(grad, in_out, None, "none", [], "")
        if ctx.needs_input_grad[1]:  # (out, in) = grad^T x; MKL ran this form faster on 2 threads than x^T grad
            grad_weight = grad.t() @ x
            grad_weight = grad_weight.t() if ctx.in_out else grad_weight
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias, None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, in_out: bool = False):
    """x (n, in) -> (n, out): a `nn.Linear` (weight (out, in)), or GPT-2's Conv1D with `in_out=True` (weight
    (in, out)). fp32 on the CPU without autocast goes through oneDNN's GEMM where it works; else plain torch."""
    if (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and onednn_linear_works()):
        return _OneDNNLinear.apply(x, weight, bias, in_out)
    return torch.nn.functional.linear(x, weight.t() if in_out else weight, bias)


class _GPT2Parts:
    """The pieces of a `GPT2ForSequenceClassification` the shared-prefix forward calls (same modules, same maths)."""

    def __init__(self, model) -> None:
        self.body = model.transformer
        self.layers = list(self.body.h)
        self.width = model.config.n_embd
        self.heads = self.kv_heads = model.config.n_head

    def embed(self, tokens: torch.Tensor, positions: torch.Tensor):  # (N,) -> (N, D), no rotary tables
        return self.body.drop(self.body.wte(tokens) + self.body.wpe(positions)), None

    def norm_in(self, i: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.layers[i].ln_1(hidden)

    def qkv(self, i: int, x: torch.Tensor, rope):
        """Queries, keys and values of every token, each (N, heads, head_dim)."""
        c_attn = self.layers[i].attn.c_attn
        q, k, v = linear(x, c_attn.weight, c_attn.bias, in_out=True).split(self.width, dim=-1)
        return (t.unflatten(-1, (self.heads, -1)) for t in (q, k, v))

    def read_attention(self, i: int, x: torch.Tensor, rope, rows: torch.Tensor, per_sequence, mask: torch.Tensor):
        """Attention output (S, D) at the read-out tokens `rows` of the normed inputs x (N, D); `per_sequence` turns
        packed (N, ...) into each sequence's (S, P + A, ...), `mask` (S, 1, P + A) says which of those it sees.
        No keys and values for every token: with K = x W_k + b_k and V = x W_v + b_v (learned positions are already in x),
        q . k_j = (q W_k^T) . x_j + q . b_k, and the last term is the same for every key, which softmax ignores;
        sum_j p_j v_j = (sum_j p_j x_j) W_v + b_v since the p_j sum to 1. So each read-out query is turned into
        the model's width once (S x D x D) instead of projecting N keys and values (2 x N x D x D)."""
        attn, d = self.layers[i].attn, self.width
        weight, bias = attn.c_attn.weight, attn.c_attn.bias  # (D, 3D): queries, keys, values
        q = torch.addmm(bias[:d], x[rows], weight[:, :d]).unflatten(-1, (self.heads, -1))  # (S, heads, hd)
        w_k, w_v = (weight[:, start : start + d].unflatten(-1, (self.heads, -1)) for start in (d, 2 * d))  # (D, h, hd)
        q_x = torch.einsum("shc,dhc->shd", q, w_k) * attn.scaling  # (S, heads, D)
        tokens = per_sequence(x)  # (S, P + A, D)
        scores = (q_x @ tokens.transpose(1, 2)).masked_fill(~mask, float("-inf"))  # (S, heads, P + A)
        mixed = scores.softmax(dim=-1) @ tokens  # (S, heads, D)
        values = torch.einsum("shd,dhc->shc", mixed, w_v) + bias[2 * d :].unflatten(-1, (self.heads, -1))
        return values.flatten(1)  # (S, heads * hd)

    def scaling(self, i: int) -> float:
        return self.layers[i].attn.scaling

    def attn_out(self, i: int, attended: torch.Tensor) -> torch.Tensor:
        attn = self.layers[i].attn
        return attn.resid_dropout(linear(attended, attn.c_proj.weight, attn.c_proj.bias, in_out=True))

    def mlp(self, i: int, hidden: torch.Tensor) -> torch.Tensor:
        mlp = self.layers[i].mlp
        x = mlp.act(linear(self.layers[i].ln_2(hidden), mlp.c_fc.weight, mlp.c_fc.bias, in_out=True))
        return mlp.dropout(linear(x, mlp.c_proj.weight, mlp.c_proj.bias, in_out=True))

    def norm_out(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.body.ln_f(hidden)


def _project(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, layer.weight, layer.bias)


class _LlamaParts:
    """The pieces of a `LlamaForSequenceClassification` the shared-prefix forward calls (same modules, same maths)."""

    def __init__(self, model) -> None:
        from transformers.models.llama.modeling_llama import rotate_half

        self.rotate_half = rotate_half
        self.body = model.model
        self.layers = list(self.body.layers[: model.config.num_hidden_layers])
        self.heads = model.config.num_attention_heads
        self.kv_heads = model.config.num_key_value_heads

    def embed(self, tokens: torch.Tensor, positions: torch.Tensor):
        hidden = self.body.embed_tokens(tokens)  # (N, D)
        cos, sin = self.body.rotary_emb(hidden.unsqueeze(0), positions.unsqueeze(0))  # (1, N, head_dim) each
        return hidden, (cos[0].unsqueeze(1), sin[0].unsqueeze(1))  # (N, 1, head_dim): broadcast over heads

    def norm_in(self, i: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.layers[i].input_layernorm(hidden)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return x * cos + self.rotate_half(x) * sin  # RoPE (Su et al. 2021), as transformers' apply_rotary_pos_emb

    def qkv(self, i: int, x: torch.Tensor, rope):
        """Queries (N, heads, head_dim), keys and values (N, kv_heads, head_dim); queries and keys rotated."""
        attn, (cos, sin) = self.layers[i].self_attn, rope
        q = self._rotate(_project(attn.q_proj, x).unflatten(-1, (self.heads, -1)), cos, sin)
        k = self._rotate(_project(attn.k_proj, x).unflatten(-1, (self.kv_heads, -1)), cos, sin)
        return q, k, _project(attn.v_proj, x).unflatten(-1, (self.kv_heads, -1))

    def read_attention(self, i: int, x: torch.Tensor, rope, rows: torch.Tensor, per_sequence, mask: torch.Tensor):
        """Attention output (S, D) at the read-out tokens `rows`: keys and values everywhere, queries there only."""
        attn, (cos, sin) = self.layers[i].self_attn, rope
        q = self._rotate(_project(attn.q_proj, x[rows]).unflatten(-1, (self.heads, -1)), cos[rows], sin[rows])
        k = self._rotate(_project(attn.k_proj, x).unflatten(-1, (self.kv_heads, -1)), cos, sin)  # (N, kv, hd)
        v = _project(attn.v_proj, x).unflatten(-1, (self.kv_heads, -1))
        repeat = self.heads // self.kv_heads
        k, v = (per_sequence(t).transpose(1, 2).repeat_interleave(repeat, dim=1) for t in (k, v))  # (S, h, P+A, hd)
        attended = attend(q.unsqueeze(2), k, v, attn_mask=mask.unsqueeze(1), scale=attn.scaling)
        return attended.flatten(1)  # (S, heads * hd)

    def scaling(self, i: int) -> float:
        return self.layers[i].self_attn.scaling

    def attn_out(self, i: int, attended: torch.Tensor) -> torch.Tensor:
        return _project(self.layers[i].self_attn.o_proj, attended)

    def mlp(self, i: int, hidden: torch.Tensor) -> torch.Tensor:
        mlp, x = self.layers[i].mlp, self.layers[i].post_attention_layernorm(hidden)
        return _project(mlp.down_proj, mlp.act_fn(_project(mlp.gate_proj, x)) * _project(mlp.up_proj, x))

    def norm_out(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.body.norm(hidden)


def _parts_of(model):
    """The architecture's pieces, or None where the shared-prefix forward would not compute what `model()` does."""
    from transformers import GPT2ForSequenceClassification, LlamaForSequenceClassification

    checkpointing = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else (
        "is_gradient_checkpointing")  # renamed in transformers 5
    if getattr(model, checkpointing, False):
        return None  # the user asked for recomputation to save memory: keep the model's own forward
    if model.training and any(m.p > 0 for m in model.modules() if isinstance(m, torch.nn.Dropout)):
        return None
    config = model.config
    if type(model) is GPT2ForSequenceClassification:
        if config.add_cross_attention or config.reorder_and_upcast_attn:
            return None
        return _GPT2Parts(model)
    if type(model) is LlamaForSequenceClassification:
        if model.training and config.attention_dropout > 0:
            return None
        return _LlamaParts(model)
    return None


def supports_shared_prefix(model) -> bool:
    """True when `shared_prefix_rewards` gives this model's rewards (GPT-2 and Llama, without dropout in training)."""
    return _parts_of(model) is not None


def _padded(x: torch.Tensor, rows: torch.Tensor | None, n_rows: int, width: int) -> torch.Tensor:
    """Packed (n, heads, d) -> padded (n_rows, width, heads, d): slot r * width + j holds x[rows[r * width + j]]."""
    return (x if rows is None else x.index_select(0, rows)).unflatten(0, (n_rows, width))


def _packed(x: torch.Tensor, slots: torch.Tensor | None) -> torch.Tensor:
    """Attention output (n_rows, heads, width, d) -> packed (n, heads * d): the real slots' rows, in packed order."""
    x = x.transpose(1, 2).flatten(2).flatten(0, 1)
    return x if slots is None else x.index_select(0, slots)


def shared_prefix_rewards(model, packed: PrefixSharing) -> torch.Tensor:
    """(S, heads) rewards of the packed sequences: the same numbers as `model(input_ids, attention_mask).logits` on
    the right-padded whole sequences, with less work.

    1. Each group's prefix goes through the model once. At every layer its keys and values are copied into each of
       the group's sequences (not recomputed), and each suffix token attends over its prefix's tokens and its own
       earlier tokens, at the positions it has in the whole sequence. The backward pass sums the gradients a prefix
       gets from each of its sequences. 64 prompt + 2 x 64 answer tokens are 192 token positions through the
       model, not 256.
    2. The last block runs only at each sequence's last token, where the reward is read (in a causal model no
       position depends on a later one): its query, attention, output projection, MLP, the final norm and the score
       head. It still attends over every token; for GPT-2 without projecting their keys and values (see
       `_GPT2Parts.read_attention`), for Llama (rotary positions) with them.
    Raises ValueError for a model `supports_shared_prefix` rejects.
    """
    parts = _parts_of(model)
    if parts is None:
        raise ValueError(f"{type(model).__name__}: no shared-prefix forward for this model (see supports_shared_prefix)")
    n_groups, n_seqs = packed.prefix_lengths.shape[0], packed.group.shape[0]
    width_p, width_a = packed.prefix_width, packed.suffix_width
    split = [packed.n_prefix_tokens, packed.tokens.shape[0] - packed.n_prefix_tokens]  # prefix rows, suffix rows
    device = packed.tokens.device
    repeat = parts.heads // parts.kv_heads  # grouped-query attention: each key/value head serves `repeat` queries

    # Which keys each query sees, as (S, 1, queries, P + A) booleans: its group's real prefix tokens, then its own
    # suffix's tokens up to itself. A padded query sees at least itself, so no row is all masked (no NaN).
    prefix_keys = torch.arange(width_p, device=device) < packed.prefix_lengths[packed.group].unsqueeze(1)  # (S, P)
    causal = torch.ones(width_a, width_a, dtype=torch.bool, device=device).tril()  # (A, A)
    suffix_mask = torch.cat([prefix_keys.unsqueeze(1).expand(-1, width_a, -1),
                             causal.expand(n_seqs, -1, -1)], dim=-1).unsqueeze(1)  # (S, 1, A, P + A)
    real_suffix = torch.arange(width_a, device=device) < packed.suffix_lengths.unsqueeze(1)  # (S, A)
    readout_mask = torch.cat([prefix_keys, real_suffix], dim=-1).unsqueeze(1)  # (S, 1, P + A): the last token's row

    def heads_first(x: torch.Tensor) -> torch.Tensor:  # (rows, width, kv_heads, d) -> (rows, heads, width, d)
        x = x.transpose(1, 2)
        return x.repeat_interleave(repeat, dim=1) if repeat > 1 else x

    def split_padded(x: torch.Tensor):
        """Packed (N, ...) -> prefixes (G, P, ...) and suffixes (S, A, ...)."""
        prefix, suffix = x.split(split)
        return (_padded(prefix, packed.prefix_rows, n_groups, width_p),
                _padded(suffix, packed.suffix_rows, n_seqs, width_a))

    def join(prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        """Each sequence's tokens: its group's prefix (G, P, ...), then its suffix (S, A, ...) -> (S, P + A, ...)."""
        if not width_p:
            return suffix
        k = packed.group_size
        if k:  # groups of equal size: copy each prefix K times straight from a broadcast view (backward: a sum)
            prefix = prefix.unsqueeze(1).expand(-1, k, *prefix.shape[1:])
            return torch.cat([prefix, suffix.unflatten(0, (n_groups, k))], dim=2).flatten(0, 1)
        return torch.cat([prefix[packed.group], suffix], dim=1)

    attention = attend  # scaled_dot_product_attention, or two products in bf16 on a CPU
    hidden, rope = parts.embed(packed.tokens, packed.positions)  # (N, D)
    last = len(parts.layers) - 1
    for i in range(last):
        (q_p, q_s), (k_p, k_s), (v_p, v_s) = (split_padded(x) for x in parts.qkv(i, parts.norm_in(i, hidden), rope))
        scale = parts.scaling(i)
        suffix_out = attention(q_s.transpose(1, 2), heads_first(join(k_p, k_s)), heads_first(join(v_p, v_s)),
                               attn_mask=suffix_mask, scale=scale)  # (S, heads, A, d)
        attended = _packed(suffix_out, packed.suffix_slots)
        if width_p:  # the prefixes attend among themselves, causally; their rows come first in the packed order
            prefix_out = attention(q_p.transpose(1, 2), heads_first(k_p), heads_first(v_p), is_causal=True, scale=scale)
            attended = torch.cat([_packed(prefix_out, packed.prefix_slots), attended])
        hidden = hidden + parts.attn_out(i, attended)
        hidden = hidden + parts.mlp(i, hidden)
    attended = parts.read_attention(last, parts.norm_in(last, hidden), rope, packed.readout,
                                    lambda x: join(*split_padded(x)), readout_mask)  # (S, D)
    read = hidden[packed.readout] + parts.attn_out(last, attended)  # (S, D)
    read = read + parts.mlp(last, read)
    return model.score(parts.norm_out(read))  # (S, heads)
