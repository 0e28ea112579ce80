"""Losses as pure functions over tensors. Imports only torch.

Shape comments: B batch, T sequence, V vocabulary, N selected tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shift_for_next_token(labels: torch.Tensor) -> torch.Tensor:
    """Targets for next-token prediction: position t predicts labels[t + 1]; the last position predicts nothing.

    labels (B, T) -> targets (B, T), with IGNORE_INDEX in the last column.
    """
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    return targets


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each target token: logits (N, V), targets (N,) -> (N,), in float32."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is true (same shapes); 0 when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions.

    logits (B, T, V) are the model's outputs at every position; labels (B, T) are the input ids with IGNORE_INDEX
    where no loss is wanted (padding, prompt tokens in SFT). Position t is scored on labels[t + 1].
    """
    targets = shift_for_next_token(labels)  # (B, T)
    keep = targets != IGNORE_INDEX
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return token_nll(logits[keep], targets[keep]).mean()
