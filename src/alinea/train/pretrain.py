"""Pretraining a causal LM on raw text: clean, split documents, tokenize, pack, train, measure held-out perplexity.

The corpus is plain UTF-8 text with documents separated by blank lines. A seeded shuffle puts
`heldout_fraction` of the documents aside; the rest are joined with `<|endoftext|>` and cut into sequences of
`seq_len` tokens (packing: no padding, every token is a target).
"""

from __future__ import annotations

from pathlib import Path

import torch

from alinea.config import AlineaConfig
from alinea.data.corpus import pack_documents, read_documents, split_documents
from alinea.errors import UserError
from alinea.model.causal_lm import build_model_for_tokenizer, check_vocab, load_model
from alinea.model.tokenizer import load_tokenizer
from alinea.train.loop import TokenBatch, TrainResult, num_processes, train_loop


def packed_batch(rows: torch.Tensor) -> TokenBatch:
    return TokenBatch(input_ids=rows, attention_mask=torch.ones_like(rows), labels=rows, dense=True)


def prepare_model(cfg: AlineaConfig, tokenizer):
    if cfg.model.init_from:
        model = load_model(cfg.model.init_from)
        check_vocab(model, tokenizer, model_path=cfg.model.init_from, tokenizer_path=cfg.pretrain.tokenizer)
        return model
    return build_model_for_tokenizer(cfg.model, tokenizer, seed=cfg.pretrain.seed)


def run(cfg: AlineaConfig, *, resume: str | Path | None = None) -> TrainResult:
    """Pretrain per `cfg.pretrain` and `cfg.model`; with `resume`, continue that run directory instead."""
    if resume:
        from alinea.train.runs import RunDir

        cfg = RunDir.open(resume, stage="pretrain").config()
    pcfg = cfg.pretrain
    tokenizer_path = pcfg.tokenizer or cfg.model.init_from
    if not tokenizer_path:
        raise UserError("pretrain.tokenizer: expected a tokenizer directory (train one with `alinea tokenizer train`).")
    tokenizer = load_tokenizer(tokenizer_path)
    if pcfg.seq_len > cfg.model.max_position_embeddings and not cfg.model.init_from:
        raise UserError(
            f"pretrain.seq_len ({pcfg.seq_len}) exceeds model.max_position_embeddings "
            f"({cfg.model.max_position_embeddings})."
        )
    documents = read_documents(pcfg.corpus)
    train_docs, heldout_docs = split_documents(documents, heldout_fraction=pcfg.heldout_fraction, seed=pcfg.seed)
    train_rows = pack_documents(train_docs, tokenizer, pcfg.seq_len)
    eval_batches = []
    if heldout_docs:
        heldout_rows = pack_documents(heldout_docs, tokenizer, pcfg.seq_len)
        # eval_batches counts global batches, so 1 process x batch 2B scores the same rows as 2 processes x batch B.
        limit = pcfg.eval_batches * pcfg.batch_size * num_processes() if pcfg.eval_batches else len(heldout_rows)
        heldout_rows = heldout_rows[:limit]
        eval_batches = [packed_batch(heldout_rows[i : i + pcfg.batch_size]) for i in range(0, len(heldout_rows), pcfg.batch_size)]
    model = prepare_model(cfg, tokenizer)
    return train_loop(
        stage="pretrain",
        cfg=pcfg,
        full_cfg=cfg,
        model=model,
        tokenizer=tokenizer,
        n_examples=len(train_rows),
        collate=lambda indices: packed_batch(train_rows[indices]),
        eval_batches=eval_batches,
        resume=resume,
        extra_meta={
            "train_documents": len(train_docs),
            "heldout_documents": len(heldout_docs),
            "train_sequences": len(train_rows),
            "train_tokens": int(train_rows.numel()),
        },
    )
