"""Building, loading and saving transformers causal language models.

A new model is a Llama built from `ModelConfig`; any local Hugging Face checkpoint directory loads as it is. The
tokenizer travels with the checkpoint (`save_checkpoint` writes both), so a checkpoint directory is self-contained.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from alinea.config import ModelConfig
from alinea.errors import UserError
from alinea.model.attention import use_cpu_attention
from alinea.model.tokenizer import load_tokenizer, stop_token_ids


def build_model_for_tokenizer(cfg: ModelConfig, tokenizer, *, seed: int = 0) -> PreTrainedModel:
    """A new Llama causal LM sized by `cfg`, its vocabulary and special ids taken from `tokenizer`."""
    return build_model(
        cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, stop_ids=stop_token_ids(tokenizer),
        seed=seed,
    )


def build_model(
    cfg: ModelConfig, *, vocab_size: int, pad_token_id: int, stop_ids: list[int], seed: int = 0
) -> PreTrainedModel:
    """A new Llama causal LM sized by `cfg` (weights drawn with `seed`, global RNG untouched)."""
    if cfg.hidden_size % cfg.num_heads:
        raise UserError(
            f"model.hidden_size ({cfg.hidden_size}) must be divisible by model.num_heads ({cfg.num_heads})."
        )
    if cfg.num_heads % cfg.num_kv_heads:
        raise UserError(
            f"model.num_heads ({cfg.num_heads}) must be divisible by model.num_kv_heads ({cfg.num_kv_heads})."
        )
    stops = list(stop_ids)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_word_embeddings,
        initializer_range=cfg.initializer_range,
        pad_token_id=pad_token_id,
        eos_token_id=stops if len(stops) > 1 else stops[0],
        bos_token_id=None,
        attention_dropout=0.0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.eos_token_id = stops
    use_cpu_attention(model)
    return model


def is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_model(path: str | Path, *, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Load a causal LM from a local checkpoint directory; anything else is a `UserError`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: model directory not found.")
    if not is_checkpoint_dir(path):
        raise UserError(
            f"{path}: not a model checkpoint directory (no config.json). Point at a pretrain or SFT run's "
            "final/ folder, a checkpoints/step-N folder, or any local Hugging Face causal-LM directory."
        )
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")]
    if not weights:
        raise UserError(f"{path}: config.json is there but no weights (*.safetensors or *.bin).")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a broken folder
        raise UserError(f"{path}: could not load a causal LM from this directory: {err}") from None
    use_cpu_attention(model)  # bf16 attention on a CPU as two products (alinea.model.attention)
    return model


def load_model_and_tokenizer(path: str | Path, tokenizer_path: str | Path | None = None):
    """Load a model and its tokenizer, and check that the two agree on the vocabulary."""
    model = load_model(path)
    tokenizer = load_tokenizer(tokenizer_path or path)
    check_vocab(model, tokenizer, model_path=path, tokenizer_path=tokenizer_path or path)
    return model, tokenizer


def check_vocab(model: PreTrainedModel, tokenizer, *, model_path, tokenizer_path) -> None:
    """A tokenizer with ids the model's embedding cannot hold is a `UserError`."""
    n_embeddings = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > n_embeddings:
        raise UserError(
            f"{tokenizer_path}: tokenizer has {len(tokenizer)} tokens but the model in {model_path} embeds only "
            f"{n_embeddings} (model.config.vocab_size). Use the tokenizer the model was trained with."
        )


def save_checkpoint(model: PreTrainedModel, tokenizer, out_dir: str | Path) -> Path:
    """Write model (safetensors) and tokenizer to `out_dir` through a temporary folder, then rename."""
    import shutil

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
