"""Held-out perplexity of a causal LM on raw text: exp of the mean next-token cross-entropy over every token."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from alinea.data.corpus import pack_documents, read_documents
from alinea.losses import causal_lm_loss


@dataclass
class PerplexityResult:
    loss: float  # mean next-token cross-entropy, nats per token
    ppl: float  # exp(loss)
    tokens: int  # tokens scored
    sequences: int


@torch.no_grad()
def perplexity(
    model, tokenizer, text_path: str | Path, *, seq_len: int = 128, batch_size: int = 16, max_sequences: int = 0,
    progress=None,
) -> PerplexityResult:
    """Pack the documents of `text_path` into `seq_len` rows and score every next-token prediction."""
    rows = pack_documents(read_documents(text_path), tokenizer, seq_len)
    if max_sequences:
        rows = rows[:max_sequences]
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size].to(device)
        logits = model(input_ids=batch).logits  # (B, T, V)
        n_tokens = batch.shape[0] * (batch.shape[1] - 1)
        total_nll += float(causal_lm_loss(logits, batch)) * n_tokens
        total_tokens += n_tokens
        if progress is not None:
            progress(len(batch))
    loss = total_nll / max(total_tokens, 1)
    return PerplexityResult(loss=loss, ppl=math.exp(min(loss, 50.0)), tokens=total_tokens, sequences=len(rows))
