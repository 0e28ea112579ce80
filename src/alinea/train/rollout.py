"""Episodes for the online RL stages: prompts in, a typed `Rollout` out.

A rollout is one step's batch of episodes (prompt, sampled answer) with everything the update needs: the policy's
log-probs at sampling time, the reference's, the critic's values (PPO), the reward and its components. The phases that
fill it (`generate`, `score`, `reference`, `values`) are separate functions so the trainers can time each.

Layout: prompts are left-padded (N+ detail: generation needs the last prompt token of every row at the same column),
answers right-padded; position ids are counted from the first real token, so padding changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch

from alinea.errors import UserError
from alinea.losses import token_logprobs, token_logprobs_and_entropy


@dataclass
class PromptSet:
    """Prompts tokenised once: chat-formatted ids (cut from the left to the limit) and the user's text for judges."""

    ids: list[list[int]]
    texts: list[str]  # the last user turn, as written (what judges and Python rewards read)
    languages: list[str]
    cut: int = 0  # prompts cut from the left to max_prompt_len

    def __len__(self) -> int:
        return len(self.ids)


def load_prompts(path: str | Path, tokenizer, *, max_prompt_len: int) -> PromptSet:
    """Read prompt records (any record type with a prompt) and tokenise them with the chat template."""
    from alinea.data.jsonl import read_records

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prompt file not found.")
    records = read_records(path)
    return encode_prompt_records(records, tokenizer, max_prompt_len=max_prompt_len, source=str(path))


def encode_prompt_records(records, tokenizer, *, max_prompt_len: int, source: str = "prompts") -> PromptSet:
    if not records:
        raise UserError(f"{source}: no prompts (the RL stages need at least one prompt record).")
    ids, texts, languages, cut = [], [], [], 0
    for record in records:
        messages = record.prompt_messages()
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) > max_prompt_len:
            encoded = encoded[-max_prompt_len:]
            cut += 1
        ids.append(encoded)
        texts.append(next(m["content"] for m in reversed(messages) if m["role"] == "user"))
        languages.append(record.language)
    return PromptSet(ids=ids, texts=texts, languages=languages, cut=cut)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (batch, longest), padded on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def response_mask_from(new_ids: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """(batch, T) 1 on answer tokens up to and including the first stop token, 0 after it."""
    is_stop = torch.isin(new_ids, torch.tensor(stop_ids, device=new_ids.device)).long()
    stops_before = is_stop.cumsum(-1) - is_stop
    return (stops_before == 0).long()


@dataclass
class Rollout:
    """One step's episodes. Shapes: B episodes, P prompt columns (left-padded), T answer columns (right-padded)."""

    prompt_ids: torch.Tensor  # (B, P)
    prompt_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, T)
    response_mask: torch.Tensor  # (B, T) 1 on answer tokens (through the stop token)
    finished: torch.Tensor  # (B,) True where a stop token ended the answer
    prompt_index: torch.Tensor  # (B,) index into the prompt set
    prompt_texts: list[str]
    response_texts: list[str]
    logprobs: torch.Tensor | None = None  # (B, T) policy log-probs at sampling time (temperature applied)
    ref_logprobs: torch.Tensor | None = None  # (B, T)
    values: torch.Tensor | None = None  # (B, T) critic values V(s_t) (PPO)
    scores: torch.Tensor | None = None  # (B,) total reward after the missing-EOS rule
    components: dict[str, torch.Tensor] = field(default_factory=dict)  # (B,) each reward source, unweighted
    advantages: torch.Tensor | None = None  # (B, T), or (B,) for sequence-level methods
    returns: torch.Tensor | None = None  # (B, T) (PPO)

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]

    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    def select(self, rows: torch.Tensor) -> Rollout:
        """The episodes at `rows` (a minibatch); tensors indexed, lists picked."""
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                picked[f.name] = value[rows]
            elif isinstance(value, list):
                picked[f.name] = [value[i] for i in rows.tolist()]
            elif isinstance(value, dict):
                picked[f.name] = {k: v[rows] for k, v in value.items()}
        return replace(self, **picked)

    def sequences(self) -> list[list[int]]:
        """Per episode: real prompt tokens + answer through its stop token (what a reward model reads)."""
        out = []
        for row in range(len(self)):
            prompt = self.prompt_ids[row][self.prompt_mask[row].bool()].tolist()
            answer = self.response_ids[row][self.response_mask[row].bool()].tolist()
            out.append(prompt + answer)
        return out


@torch.no_grad()
def sample_episodes(
    model,
    tokenizer,
    prompts: PromptSet,
    indices: list[int],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    chunk_size: int,
    compute_dtype: torch.dtype | None = None,
) -> Rollout:
    """Sample one answer per prompt index. Each chunk of `chunk_size` episodes has its own generator seeded by
    (seed, chunk id), so the same episodes come out however the batch is split over processes. `compute_dtype`:
    see `generate_ids` (bf16 products in a bf16 run on a CPU)."""
    from alinea.model.generation import generate_ids
    from alinea.model.tokenizer import stop_token_ids

    device = next(model.parameters()).device
    stop_ids = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    pieces = []
    for chunk_start in range(0, len(indices), chunk_size):
        chunk = indices[chunk_start : chunk_start + chunk_size]
        ids, mask = left_pad([prompts.ids[i] for i in chunk], pad_id)
        generator = torch.Generator(device=device).manual_seed(seed + chunk_start)
        new_ids, finished = generate_ids(
            model, ids.to(device), mask.to(device), max_new_tokens=max_new_tokens, stop_ids=stop_ids,
            pad_id=pad_id, temperature=temperature, top_p=top_p, generator=generator, compute_dtype=compute_dtype,
        )
        pieces.append((ids, mask, new_ids.cpu(), finished.cpu()))
    if was_training:
        model.train()
    prompt_width = max(p[0].shape[1] for p in pieces)
    answer_width = max(max(p[2].shape[1] for p in pieces), 1)
    prompt_ids, prompt_mask, response_ids, finished = [], [], [], []
    for ids, mask, new_ids, done in pieces:
        grow = prompt_width - ids.shape[1]
        prompt_ids.append(torch.nn.functional.pad(ids, (grow, 0), value=pad_id))
        prompt_mask.append(torch.nn.functional.pad(mask, (grow, 0), value=0))
        response_ids.append(torch.nn.functional.pad(new_ids, (0, answer_width - new_ids.shape[1]), value=pad_id))
        finished.append(done)
    response_ids = torch.cat(response_ids)
    response_mask = response_mask_from(response_ids, stop_ids)
    # Columns past the longest generation were padding; rows that stopped early have mask 0 after the stop token.
    has_token = torch.cat([torch.nn.functional.pad(torch.ones_like(p[2]), (0, answer_width - p[2].shape[1])) for p in pieces])
    response_mask = response_mask * has_token
    texts = []
    for row in range(response_ids.shape[0]):
        body = [t for t, m in zip(response_ids[row].tolist(), response_mask[row].tolist(), strict=True) if m and t not in stop_ids]
        texts.append(tokenizer.decode(body, skip_special_tokens=True).strip())
    return Rollout(
        prompt_ids=torch.cat(prompt_ids),
        prompt_mask=torch.cat(prompt_mask),
        response_ids=response_ids,
        response_mask=response_mask,
        finished=torch.cat(finished),
        prompt_index=torch.tensor(indices, dtype=torch.long),
        prompt_texts=[prompts.texts[i] for i in indices],
        response_texts=texts,
    )


def position_ids_for(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def policy_forward(
    model, rollout: Rollout, *, temperature: float, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, T) of the rollout's answer tokens under `model` with logits / temperature (N+ detail), and
    optionally the entropy (B, T). Logits are computed only at the T positions that predict answer tokens.

    Episodes that share a prompt (RLOO/GRPO sample k answers per prompt) run that prompt once: see `answer_logits`."""
    logits = answer_logits(model, rollout)  # (B, T, V)
    targets = rollout.response_ids.to(logits.device)
    if not with_entropy:
        return token_logprobs(logits, targets, temperature=temperature), None
    if not torch.is_grad_enabled():  # the rollout's log-probs: both from one pass over the logits
        return token_logprobs_and_entropy(logits, targets, temperature=temperature)
    _, entropy = token_logprobs_and_entropy(logits.detach(), targets, temperature=temperature)
    return token_logprobs(logits, targets, temperature=temperature), entropy


def answer_logits(model, rollout: Rollout) -> torch.Tensor:
    """(B, T, V) logits of `model` at the positions that predict the T answer tokens (position P-1+t predicts t).

    When every episode has a prompt of its own, one forward over prompt + answer. When some episodes share a prompt,
    the distinct prompts run once with a KV cache, the cache is copied to every episode of the prompt, and the answers
    run on top of it: the same function (causal attention: a prompt's states do not depend on what follows it), with
    the prompt part of the work divided by the number of episodes per prompt (k in the rollout's `reference` phase,
    about 1.4 in a minibatch of 8 episodes out of 8 prompts x 4). With gradients they flow through the cache into the
    prompt pass; a data-parallel wrapper (whose hooks expect one forward per backward) gets the single forward. The
    answer's last token predicts nothing we need, so it is not fed.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    answer_len = rollout.response_ids.shape[1]
    groups = None if torch.is_grad_enabled() and _is_wrapped(model) else _shared_prompts(rollout)
    if groups is None or answer_len == 0:
        return _full_answer_logits(model, rollout, device)
    first_rows, inverse = groups
    prompt_ids = rollout.prompt_ids[first_rows].to(device)  # (U, P)
    prompt_mask = rollout.prompt_mask[first_rows].to(device)  # (U, P)
    inverse = inverse.to(device)
    cache = DynamicCache()  # filled in place by the prompt forward
    cache_arg = {kv_cache_argument(model): cache}
    prompt_out = model(
        input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids_for(prompt_mask), use_cache=True,
        logits_to_keep=1, **cache_arg,
    )
    first_logits = prompt_out.logits[:, -1:, :].index_select(0, inverse)  # (B, 1, V): predicts answer token 0
    if answer_len == 1:
        return first_logits
    cache.reorder_cache(inverse)  # (U, ...) -> (B, ...): each episode's copy of its prompt's keys and values
    mask = rollout.attention_mask()[:, :-1].to(device)  # (B, P + T - 1)
    answer_out = model(
        input_ids=rollout.response_ids[:, :-1].to(device), attention_mask=mask,
        position_ids=position_ids_for(mask)[:, rollout.prompt_ids.shape[1]:], use_cache=True, **cache_arg,
    )
    return torch.cat([first_logits, answer_out.logits], dim=1)  # (B, T, V)


def kv_cache_argument(model) -> str:
    """The name of the KV-cache argument of the model's forward: `cache` in recent transformers, else `past_key_values`."""
    import inspect

    base = model
    while True:  # through data-parallel and peft wrappers to the transformers model
        inner = getattr(base, "module", None)
        if inner is None and hasattr(base, "get_base_model"):
            inner = base.get_base_model()
        if inner is None or inner is base:
            break
        base = inner
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _full_answer_logits(model, rollout: Rollout, device) -> torch.Tensor:
    """`answer_logits` with one forward over every episode's prompt + answer."""
    input_ids = rollout.input_ids().to(device)
    mask = rollout.attention_mask().to(device)
    length, answer_len = input_ids.shape[1], rollout.response_ids.shape[1]
    # The T positions P-1 .. P+T-2, by index: keeping T+1 and slicing off the last would add, in the backward pass,
    # a zero-filled (B, T+1, V) gradient and a copy into it (no faster overall when measured: the memory's first
    # touch then happens in another operation; less memory all the same).
    keep = torch.arange(length - answer_len - 1, length - 1, device=device)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids_for(mask), use_cache=False,
                logits_to_keep=keep)
    return out.logits  # (B, T, V): position P-1+t predicts answer token t


def _is_wrapped(model) -> bool:
    """True for a data-parallel wrapper (DDP, FSDP, DeepSpeed: they hold the model as `.module`), whose gradient
    hooks expect one forward per backward."""
    return hasattr(model, "module")


def _shared_prompts(rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first row of each distinct prompt (U,), prompt of each row (B,)) when some rows share a prompt, else None.

    Rows share a prompt when their prompt ids and prompt masks are equal (the mask too: a pad id may also be a real
    token of the prompt)."""
    keys = torch.cat([rollout.prompt_ids, rollout.prompt_mask], dim=1)  # (B, 2P)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)  # (B,) index of each row's distinct prompt
    n_unique = int(inverse.max()) + 1 if inverse.numel() else 0
    if n_unique >= len(rollout):
        return None
    first_rows = torch.full((n_unique,), len(rollout), dtype=torch.long)
    first_rows.scatter_reduce_(0, inverse, torch.arange(len(rollout)), reduce="amin")
    return first_rows, inverse



class ValueModel(torch.nn.Module):
    """The critic: a sequence-classification model (trunk + scalar `score` head) read at every answer position.

    Wrapping it in one module keeps its forward a single call, so data-parallel wrappers see (and sync) it."""

    def __init__(self, critic) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
        model = self.critic.get_base_model() if hasattr(self.critic, "get_base_model") else self.critic
        hidden = model.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_for(attention_mask),
            use_cache=False,
        ).last_hidden_state
        hidden = hidden[:, prompt_len - 1 : input_ids.shape[1] - 1]  # (B, T, d): the state before each answer token
        return model.score(hidden).float().mean(dim=-1)  # (B, T); ensemble heads: their mean


def critic_forward(value_model, rollout: Rollout) -> torch.Tensor:
    """Values V(s_t) (B, T) of the rollout's answer positions."""
    device = next(value_model.parameters()).device
    return value_model(
        rollout.input_ids().to(device), rollout.attention_mask().to(device), rollout.prompt_ids.shape[1]
    )
