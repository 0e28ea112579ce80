"""KV-cached sampling from a causal LM: batched, left-padded, temperature and nucleus (top-p).

One forward pass over the prompts fills the cache; each later step feeds one token per sequence. A sequence that
emits a stop token is finished: it keeps receiving pad tokens (masked out) until the whole batch is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alinea.model.tokenizer import stop_token_ids


@dataclass
class Generation:
    """One sampled answer."""

    prompt: str
    text: str
    token_ids: list[int]
    finished: bool  # True when a stop token ended it, False when it hit max_new_tokens


def sample_next(logits: torch.Tensor, *, temperature: float, top_p: float, generator: torch.Generator | None):
    """Draw one token per row from `logits` (batch, vocab): greedy at temperature 0, else top-p sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (batch, vocab)
    if top_p < 1.0:
        sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        cumulative = sorted_probs.cumsum(dim=-1)
        # Keep a token when the mass before it is below top_p: the smallest set reaching top_p (at least one token).
        keep = (cumulative - sorted_probs) < top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs, 1, generator=generator).squeeze(-1)
        return sorted_ids.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample continuations of left-padded prompts (batch, prompt_len).

    Returns (new_ids, finished): new_ids (batch, n_new) padded with `pad_id` after a sequence stops (the stop token
    itself is kept), finished (batch,) True where a stop token was emitted.
    """
    from transformers import DynamicCache

    device = input_ids.device
    batch = input_ids.shape[0]
    stops = torch.tensor(stop_ids, device=device)
    mask = attention_mask.clone()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (batch, prompt_len): left padding shifts positions
    cache = DynamicCache()
    cache_arg = _cache_argument(model)
    # Prefill: one pass over the prompts fills the cache; logits only at the last position.
    out = model(
        input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
        **{cache_arg: cache},
    )
    next_logits = out.logits[:, -1, :]
    next_position = positions[:, -1:] + 1
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    new_tokens = []
    for _ in range(max_new_tokens):
        token = sample_next(next_logits, temperature=temperature, top_p=top_p, generator=generator)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        new_tokens.append(token)
        finished = finished | torch.isin(token, stops)
        if bool(finished.all()):
            break
        mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=-1)  # finished rows read pads; harmless
        out = model(
            input_ids=token.unsqueeze(-1),
            attention_mask=mask,
            position_ids=next_position,
            use_cache=True,
            **{cache_arg: cache},  # the cache object is updated in place
        )
        next_logits = out.logits[:, -1, :]
        next_position = next_position + 1
    if not new_tokens:
        return torch.empty(batch, 0, dtype=torch.long, device=device), finished
    return torch.stack(new_tokens, dim=1), finished


def _cache_argument(model) -> str:
    """Name of the KV-cache keyword of `model.forward`: `cache` in recent transformers, `past_key_values` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


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
