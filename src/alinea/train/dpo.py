"""Direct preference optimisation (Rafailov et al. 2023) and its IPO and label-smoothed variants.

The policy is trained straight from preference pairs, with no reward model and no sampling: the loss pushes up
`beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))]` (see `alinea.losses.dpo_loss`).

Details:
- Pairs come from comparison records (ties skipped, counted) and ranking records (every ordered pair of distinct
  ranks). A prompt + answer longer than `max_len` loses the start of its prompt; the answer is kept.
- The reference's log-probs are computed once, before training, for every pair (the reference is frozen, so
  recomputing them each step, as a naive implementation does, doubles the forward work for nothing).
- Chosen and rejected go through one forward pass (one padded batch of 2B rows); the vocabulary projection runs only
  at answer positions.
- IPO uses length-normalised log-probs (mean over answer tokens), as Azar et al. define the loss per token average.

Metrics: `loss`; eval split: `loss`, `reward_accuracy` (share of held-out pairs where the implicit reward
`beta * (log pi - log pi_ref)` ranks the chosen answer higher; 0.5 at step 0), `reward_margin` (mean chosen minus
rejected implicit reward; grows during training).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alinea.config import AlineaConfig, DPOConfig
from alinea.data.split import held_out_split, prompt_group_key
from alinea.errors import UserError
from alinea.losses import IGNORE_INDEX, dpo_loss, shift_for_next_token, target_logprobs
from alinea.model.causal_lm import load_model, load_model_and_tokenizer
from alinea.model.fast import fuse_activations
from alinea.train.loop import CausalLMLoss, TrainResult, num_processes, train_loop
from alinea.train.padding import right_pad
from alinea.train.sft import EncodedConversation, encode_conversation, save_trained, truncate


@dataclass
class PreferencePair:
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str


@dataclass
class EncodedPair:
    chosen: EncodedConversation
    rejected: EncodedConversation
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0
    group: int = -1  # the prompt's index among the distinct prompts: held-out pairs are whole prompts


@dataclass
class DPOBatch:
    """B pairs as one padded batch of 2B rows: chosen rows first, then rejected."""

    input_ids: torch.Tensor  # (2B, L)
    attention_mask: torch.Tensor  # (2B, L)
    labels: torch.Tensor  # (2B, L), IGNORE_INDEX outside the answers
    ref_logps: torch.Tensor  # (2B,)

    def to(self, device) -> DPOBatch:
        return DPOBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels, self.ref_logps)))


def pairs_from_records(records) -> tuple[list[PreferencePair], dict[str, int]]:
    """Preference pairs from comparison and ranking records; what was skipped is counted, never dropped silently."""
    from alinea.data.records import Comparison, Ranking

    pairs: list[PreferencePair] = []
    skipped: dict[str, int] = {}
    for record in records:
        prompt = record.prompt_messages()
        if isinstance(record, Comparison):
            if record.chosen is None:
                skipped["ties"] = skipped.get("ties", 0) + 1
            elif record.response_a == record.response_b:
                skipped["identical answers"] = skipped.get("identical answers", 0) + 1
            else:
                pairs.append(PreferencePair(prompt, record.chosen, record.rejected))
        elif isinstance(record, Ranking):
            for better, worse in record.winning_pairs():
                if record.responses[better] != record.responses[worse]:
                    pairs.append(PreferencePair(prompt, record.responses[better], record.responses[worse]))
        else:
            skipped[f"{record.record_type} records"] = skipped.get(f"{record.record_type} records", 0) + 1
    return pairs, skipped


def encode_pairs(pairs: list[PreferencePair], tokenizer, max_len: int) -> tuple[list[EncodedPair], int]:
    encoded, dropped = [], 0
    prompts: dict[str, int] = {}
    for pair in pairs:
        chosen = truncate(encode_conversation(tokenizer, pair.prompt + [{"role": "assistant", "content": pair.chosen}]), max_len)
        rejected = truncate(
            encode_conversation(tokenizer, pair.prompt + [{"role": "assistant", "content": pair.rejected}]), max_len
        )
        if chosen is None or rejected is None:
            dropped += 1
            continue
        group = prompts.setdefault(prompt_group_key(pair.prompt), len(prompts))
        encoded.append(EncodedPair(chosen, rejected, group=group))
    return encoded, dropped


def collate_pairs(pairs: list[EncodedPair], pad_id: int) -> DPOBatch:
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    input_ids, attention = right_pad([r.input_ids for r in rows], pad_id)
    labels, _ = right_pad([r.labels for r in rows], IGNORE_INDEX)
    ref = torch.tensor([p.ref_chosen for p in pairs] + [p.ref_rejected for p in pairs], dtype=torch.float32)
    return DPOBatch(input_ids, attention, labels, ref)


def sequence_logps(model: nn.Module, input_ids, attention_mask, labels, *, average: bool = False) -> torch.Tensor:
    """(rows,) summed (or, with `average`, mean) log-probs of the labelled tokens; logits only at those positions.

    When the rows are the two halves of a DPO batch (row i and row i + R/2 are the chosen and rejected answers of one
    pair), the prefix the two rows share (the prompt) runs once: see `_pair_prefix_hidden`.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    targets = shift_for_next_token(labels)  # (R, L)
    keep = targets != IGNORE_INDEX
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(keep)[keep]  # (N,)
    prefix_len = _pair_prefix_lengths(input_ids, attention_mask)
    if prefix_len is None:
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (R, L, H)
        picked = hidden[keep]  # (N, H)
    else:
        picked = _pair_prefix_hidden(base.get_decoder(), input_ids, attention_mask, prefix_len, keep)  # (N, H)
    logits = base.get_output_embeddings()(picked)  # (N, V)
    token_logps = target_logprobs(logits, targets[keep])  # (N,) float32
    total = torch.zeros(labels.shape[0], device=labels.device).index_add(0, rows, token_logps)
    if average:
        total = total / keep.sum(-1).clamp(min=1)
    return total


MIN_SHARED_PREFIX = 8
"""Shortest mean shared prefix (tokens) for which a DPO batch runs its prompts once (below it, one plain forward)."""


def _pair_prefix_lengths(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
    """(R/2,) tokens that row i and row i + R/2 share from the start (both real tokens, equal ids), or None when the
    batch has an odd number of rows, a pair shares nothing (its prefix pass would have no token to attend to) or the
    shared prefixes are too short to be worth a second pass."""
    n_rows, width = input_ids.shape
    if n_rows < 2 or n_rows % 2:
        return None
    half = n_rows // 2
    same = (input_ids[:half] == input_ids[half:]) & attention_mask[:half].bool() & attention_mask[half:].bool()
    prefix_len = same.long().cumprod(dim=1).sum(dim=1)  # (R/2,) length of the run of equal tokens from column 0
    prefix_len = prefix_len.clamp(max=width - 1)  # at least one token of each row runs in the second pass
    if int(prefix_len.min()) == 0 or float(prefix_len.float().mean()) < MIN_SHARED_PREFIX:
        return None
    return prefix_len


def _pair_prefix_hidden(decoder, input_ids, attention_mask, prefix_len, keep) -> torch.Tensor:
    """Hidden states (N, H) at the `keep` positions of every row (row-major, as `hidden[keep]`), computed with each
    pair's shared prefix run once.

    Pass 1 runs the prefixes (R/2 rows, right-padded to the longest) with a KV cache; the cache is copied to both
    rows of each pair; pass 2 runs each row's remaining tokens (shifted left to column 0) on top of it, at their
    original positions, with the prefix padding masked. Causal attention makes this the same function as one forward
    over the whole rows (a prefix's states do not depend on what follows it), with the prompt work halved; gradients
    flow through the cache into the prefix pass. Right-padded rows are assumed (as `collate_pairs` makes them).
    """
    from transformers import DynamicCache

    from alinea.train.rollout import kv_cache_argument

    n_rows, width = input_ids.shape
    half = n_rows // 2
    device = input_ids.device
    columns = torch.arange(width, device=device)
    prefix_width = int(prefix_len.max())
    pair_of_row = torch.arange(n_rows, device=device) % half  # (R,)
    row_prefix = prefix_len[pair_of_row]  # (R,)
    prefix_mask = (columns[:prefix_width].unsqueeze(0) < prefix_len.unsqueeze(1)).long()  # (R/2, C)
    cache = DynamicCache()
    cache_arg = {kv_cache_argument(decoder): cache}
    prefix_hidden = decoder(
        input_ids=input_ids[:half, :prefix_width], attention_mask=prefix_mask,
        position_ids=columns[:prefix_width].unsqueeze(0).expand(half, -1), use_cache=True, **cache_arg,
    ).last_hidden_state  # (R/2, C, H)
    cache.reorder_cache(pair_of_row)  # (R/2, ...) -> (R, ...)
    rest_width = width - int(prefix_len.min())
    source = row_prefix.unsqueeze(1) + columns[:rest_width].unsqueeze(0)  # (R, S) original column of each token
    inside = source < width
    source = source.clamp(max=width - 1)
    rest_ids = input_ids.gather(1, source)  # (R, S)
    rest_mask = attention_mask.gather(1, source) * inside  # (R, S)
    rest_hidden = decoder(
        input_ids=rest_ids, attention_mask=torch.cat([prefix_mask[pair_of_row], rest_mask], dim=1),
        position_ids=source, use_cache=True, **cache_arg,
    ).last_hidden_state  # (R, S, H)
    # Row r's states: its pair's prefix (pass 1, columns 0..C-1) then its own tokens (pass 2, from column C); the
    # state of original column t is at t when t < the row's prefix length, else at C + t - prefix length.
    states = torch.cat([prefix_hidden[pair_of_row], rest_hidden], dim=1)  # (R, C + S, H)
    row_index, column = keep.nonzero(as_tuple=True)  # row-major, the order of hidden[keep]
    shared = row_prefix[row_index]
    picked = states[row_index, torch.where(column < shared, column, prefix_width + column - shared)]  # (N, H)
    return picked


class DPOLoss(CausalLMLoss):
    """forward(DPOBatch) -> (mean DPO/IPO loss over the pairs, number of pairs)."""

    def __init__(self, model: nn.Module, cfg: DPOConfig) -> None:
        super().__init__(model)
        self.cfg = cfg

    def margins(self, batch: DPOBatch):
        logps = sequence_logps(
            self.model, batch.input_ids, batch.attention_mask, batch.labels, average=self.cfg.loss == "ipo"
        )
        half = logps.shape[0] // 2
        return dpo_loss(
            logps[:half], logps[half:], batch.ref_logps[:half], batch.ref_logps[half:], beta=self.cfg.beta,
            label_smoothing=self.cfg.label_smoothing, kind=self.cfg.loss,
        )

    def forward(self, batch: DPOBatch):
        losses, _, _ = self.margins(batch)
        return losses.mean(), torch.tensor(losses.shape[0], device=losses.device)


@torch.no_grad()
def fill_reference_logps(reference: nn.Module, pairs: list[EncodedPair], pad_id: int, *, batch_size: int, average: bool) -> None:
    """The frozen reference's log-probs of every pair, computed once."""
    reference.eval()
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = collate_pairs(chunk, pad_id)
        logps = sequence_logps(reference, batch.input_ids, batch.attention_mask, batch.labels, average=average)
        half = len(chunk)
        for pair, chosen, rejected in zip(chunk, logps[:half].tolist(), logps[half:].tolist(), strict=True):
            pair.ref_chosen, pair.ref_rejected = chosen, rejected


def load_pairs(cfg: DPOConfig) -> tuple[list[PreferencePair], dict[str, int]]:
    from alinea.data.jsonl import read_records

    records = []
    for path in cfg.data:
        if not Path(path).is_file():
            raise UserError(f"{path}: preference data not found (dpo.data).")
        records.extend(read_records(path))
    pairs, skipped = pairs_from_records(records)
    if len(pairs) < 2:
        raise UserError(
            f"{', '.join(cfg.data)}: need at least 2 preference pairs (comparison or ranking records), found {len(pairs)}."
        )
    return pairs, skipped


def run(cfg: AlineaConfig, *, resume: str | Path | None = None, out: str | Path | None = None) -> TrainResult:
    """Train `cfg.dpo.model` on the preference pairs of `cfg.dpo.data`."""
    if resume:
        from alinea.train.runs import RunDir

        cfg = RunDir.open(resume, stage="dpo").config()
    dcfg = cfg.dpo
    if not dcfg.model:
        raise UserError("dpo.model: expected a checkpoint directory (an SFT run's final/ or a local HF model).")
    if dcfg.loss not in ("sigmoid", "ipo"):
        raise UserError(f"dpo.loss: expected sigmoid or ipo, found {dcfg.loss!r}.")
    if not 0.0 <= dcfg.label_smoothing < 0.5:
        raise UserError(f"dpo.label_smoothing: expected a value in [0, 0.5), found {dcfg.label_smoothing}.")
    model, tokenizer = load_model_and_tokenizer(dcfg.model)
    pairs, skipped = load_pairs(dcfg)
    encoded, dropped = encode_pairs(pairs, tokenizer, dcfg.max_len)
    if len(encoded) < 2:
        raise UserError(f"dpo: fewer than 2 pairs fit max_len {dcfg.max_len}.")
    reference = load_model(dcfg.reference) if dcfg.reference else copy.deepcopy(model)
    fuse_activations(reference)  # same function, one kernel (model/fast.py), as TrainStep does for the policy
    pad_id = tokenizer.pad_token_id
    fill_reference_logps(reference, encoded, pad_id, batch_size=max(dcfg.batch_size, 8), average=dcfg.loss == "ipo")
    del reference
    held, kept = held_out_split([pair.group for pair in encoded], max(dcfg.eval_fraction, 0.0), dcfg.seed, min_train=1)
    eval_pairs = [encoded[i] for i in held]
    train_pairs = [encoded[i] for i in kept]
    eval_batches = [collate_pairs(eval_pairs[i : i + dcfg.batch_size], pad_id) for i in range(0, len(eval_pairs), dcfg.batch_size)]
    if dcfg.eval_batches:
        eval_batches = eval_batches[: dcfg.eval_batches * num_processes()]
    if dcfg.lora:
        from alinea.train.sft import add_lora

        model = add_lora(model, dcfg)
    loss_module = DPOLoss(model, dcfg)

    def eval_fn(trainer) -> dict[str, float]:
        loss = trainer.evaluate(eval_batches)
        correct, margin, n = 0.0, 0.0, 0
        with torch.no_grad():
            for batch in eval_batches:
                _, chosen, rejected = loss_module.margins(batch.to(trainer.accelerator.device))
                correct += float((chosen > rejected).float().sum())
                margin += float((chosen - rejected).sum())
                n += chosen.shape[0]
        return {"loss": loss, "reward_accuracy": correct / max(n, 1), "reward_margin": margin / max(n, 1)}

    return train_loop(
        stage="dpo",
        cfg=dcfg,
        full_cfg=cfg,
        model=model,
        tokenizer=tokenizer,
        n_examples=len(train_pairs),
        collate=lambda indices: collate_pairs([train_pairs[i] for i in indices], pad_id),
        eval_batches=eval_batches,
        resume=resume,
        save_model=lambda trained, out_dir: save_trained(trained, tokenizer, out_dir, lora=dcfg.lora),
        loss_module=loss_module,
        eval_fn=eval_fn if eval_batches else None,
        run_dir=out,
        count_unit="pairs",
        extra_meta={"pairs": len(encoded), "train_pairs": len(train_pairs), "eval_pairs": len(eval_pairs),
                    "skipped": skipped, "dropped_too_long": dropped},
    )
