"""Reward models: a transformers sequence-classification model whose logits are rewards.

`AutoModelForSequenceClassification` with `num_labels` = number of ensemble heads, loaded from any causal-LM or
reward checkpoint directory. Transformers reads the logits at the last non-padding token (the `<|end|>` that closes
the answer). The head is initialised N(0, 1/sqrt(d_model + 1)) and dropout is off (Huang et al. 2024, "The N+
Implementation Details of RLHF with PPO", details on the reward model). After training, the shift and scale that give
reference responses mean 0 and std 1 are stored in `config.json` under `alinea_reward`; plain transformers returns
the raw logits, and `normalise` applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from alinea.errors import UserError
from alinea.model.causal_lm import check_vocab, is_checkpoint_dir
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
