"""Reward-model training from every kind of human judgment in one run.

Records (docs/data.md) become examples:
- comparison: two sequences. A win is scored with Bradley-Terry, `-log sigmoid(r_w - r_l - m)`, where
  m = tie threshold (Rao-Kupper: a win must clear the tie band) + the Llama-2 margin of the annotator's strength.
  A tie is `-log P(tie)` under Rao-Kupper. With `tie_model = "davidson"` every outcome uses Davidson's model (no
  strength margin); with "skip" ties are left out (counted).
- ranking: K sequences, one example: InstructGPT's mean over all C(K,2) ordered pairs, or Plackett-Luce.
- rating: one sequence; regression to the mean rating scaled to [-2, 2], or an ordered logit over the levels.
- thumb: one sequence; logistic on up/down with a learned bias.
All sequences of a batch go through one forward pass; for GPT-2 and Llama it runs each example's shared prompt once
and the last block only at the read-out tokens (`alinea.model.reward.shared_prefix_rewards`). Per-example losses are
multiplied by the type's weight and, for ensembles, by the example's bootstrap count for each head (Poisson(1),
seeded: each head sees its own bootstrap).
With `annotator_reliability`, each annotator's decided comparisons, rankings and thumbs are scored on rewards
multiplied by exp(t_a - mean(t)): annotators whose judgments the rewards cannot explain (random or adversarial ones)
get a small factor and count less. Ties are scored on unscaled rewards.

With `invert = true` the run trains a **cost model** (higher = more harmful) from harmlessness judgments: every
judgment is read upside down (`encode_records`), and config.json's `alinea_reward` says `kind: "cost"` (meta.json:
`alinea_kind`), so the RL costs and `alinea eval safety --cost` can tell it from a reward model (docs/reward.md).

Bad input is counted and reported in meta.json (`skipped`): identical responses, ties under "skip", prompts cut from
the left to fit `max_len` (the response is kept), responses cut from the right when they alone exceed it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alinea.config import AlineaConfig, RewardConfig
from alinea.data.jsonl import read_records, validate_file
from alinea.data.records import Comparison, Demonstration, Ranking, Rating, Thumb
from alinea.data.split import held_out_split, prompt_group_key
from alinea.errors import UserError
from alinea.losses import (
    bradley_terry_loss,
    calibration_bins,
    davidson_nll,
    expected_calibration_error,
    kwise_ranking_loss,
    ordinal_rating_loss,
    plackett_luce_loss,
    rao_kupper_nll,
    rating_regression_loss,
    strength_margin,
    thumb_loss,
)
from alinea.model.causal_lm import save_checkpoint
from alinea.model.reward import (
    PrefixSharing,
    build_reward_model,
    fit_normalisation,
    pack_shared_prefixes,
    raw_rewards,
    set_normalisation,
    shared_prefix_rewards,
    supports_shared_prefix,
)
from alinea.train.loop import TrainResult, train_loop
from alinea.train.padding import right_pad
from alinea.train.sft import encode_conversation

KINDS = ("comparison", "ranking", "rating", "thumb")
RATING_RANGE = 2.0  # ratings are regressed to a target in [-RATING_RANGE, RATING_RANGE]


# ---------------------------------------------------------------------------------------------------------------------
# Encoding


@dataclass
class RewardExample:
    kind: str
    sequences: list[list[int]]
    annotator: int = -1  # index into the annotator list, -1 when unknown
    outcome: int = 0  # comparison: 0 = a preferred, 1 = b preferred, 2 = tie
    strength: int = 0
    ranks: list[int] = field(default_factory=list)
    target: float = 0.0  # rating: scaled mean rating; thumb: 1.0 up, 0.0 down
    level: int = 0  # rating: ordinal level (0-based)
    bootstrap: list[float] = field(default_factory=lambda: [1.0])
    group: int = -1  # the prompt's index among the distinct prompts: held-out examples are whole groups


class Encoder:
    """Turns records into token sequences `chat(prompt) + answer + <|end|>`, counting what it had to change."""

    def __init__(self, tokenizer, max_len: int) -> None:
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.counts: Counter[str] = Counter()
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
        self._tail = len(newline)

    def sequence(self, prompt_messages: list[dict[str, str]], response: str) -> list[int]:
        conversation = prompt_messages + [{"role": "assistant", "content": response}]
        encoded = encode_conversation(self.tokenizer, conversation)
        ids = encoded.input_ids[: len(encoded.input_ids) - self._tail]  # end at <|end|>: the reward is read there
        if len(ids) <= self.max_len:
            return ids
        answer = sum(1 for label in encoded.labels[: len(ids)] if label != -100)
        if answer <= self.max_len:  # the response and its <|end|> fit: cut the prompt only
            self.counts["prompt cut from the left"] += 1
            return ids[-self.max_len :]
        self.counts["response cut from the right"] += 1
        return ids[: self.max_len]


def encode_records(records, tokenizer, cfg: RewardConfig, annotators: dict[str, int]):
    """(examples, counts): every usable record as a `RewardExample`; `counts` says what was skipped or cut.

    With `cfg.invert` (a cost model) every judgment is read upside down: a comparison's a <-> b (ties stay), a
    ranking's ranks reversed (best <-> worst, ties kept), a rating mirrored on its scale, a thumb flipped."""
    invert = cfg.invert
    encoder = Encoder(tokenizer, cfg.max_len)
    examples: list[RewardExample] = []
    counts: Counter[str] = Counter()
    levels_seen = 0
    prompts: dict[str, int] = {}
    for record in records:
        prompt = record.prompt_messages()
        group = prompts.setdefault(prompt_group_key(prompt), len(prompts))
        first = len(examples)
        annotator = annotators.setdefault(record.annotator, len(annotators)) if record.annotator else -1
        if isinstance(record, Comparison):
            if record.response_a.strip() == record.response_b.strip():
                counts["comparison with identical responses"] += 1
                continue
            outcome = {"a": 0, "b": 1, "tie": 2}[record.preference]
            if invert:
                outcome = (1, 0, 2)[outcome]
            if outcome == 2 and cfg.tie_model == "skip":
                counts["tie (tie_model = skip)"] += 1
                continue
            sequences = [encoder.sequence(prompt, record.response_a), encoder.sequence(prompt, record.response_b)]
            examples.append(RewardExample("comparison", sequences, annotator, outcome, record.strength))
        elif isinstance(record, Ranking):
            if len(set(record.ranks)) < 2:
                counts["ranking with every response tied"] += 1
                continue
            sequences = [encoder.sequence(prompt, text) for text in record.responses]
            ranks = list(record.ranks)
            if invert:
                ranks = [max(ranks) + min(ranks) - rank for rank in ranks]
            examples.append(RewardExample("ranking", sequences, annotator, ranks=ranks))
        elif isinstance(record, Rating):
            low, high = record.scale
            mean = sum(record.ratings.values()) / len(record.ratings)
            target = RATING_RANGE * (2.0 * (mean - low) / (high - low) - 1.0)
            level = int(round(mean - low))
            levels = int(round(high - low)) + 1
            levels_seen = max(levels_seen, levels)
            if invert:
                target, level = -target, levels - 1 - level
            examples.append(
                RewardExample("rating", [encoder.sequence(prompt, record.response)], annotator, target=target, level=level)
            )
        elif isinstance(record, Thumb):
            up = 1.0 if (record.thumb == "up") != invert else 0.0
            examples.append(RewardExample("thumb", [encoder.sequence(prompt, record.response)], annotator, target=up))
        else:
            counts[f"{record.record_type} record (not feedback)"] += 1
        for example in examples[first:]:
            example.group = group
    counts.update(encoder.counts)
    return examples, counts, levels_seen


def assign_bootstrap(examples: list[RewardExample], heads: int, seed: int) -> None:
    """Per-head bootstrap counts, Poisson(1) (the online bootstrap); one head keeps weight 1."""
    if heads == 1:
        return
    rng = np.random.default_rng([seed, 7])
    counts = rng.poisson(1.0, size=(len(examples), heads)).astype(float)
    for example, row in zip(examples, counts, strict=True):
        example.bootstrap = row.tolist()


# ---------------------------------------------------------------------------------------------------------------------
# Batches


@dataclass
class RewardBatch:
    """All sequences of a batch of examples, right-padded, and index tensors per example kind.

    `shared` holds the same sequences packed around each example's shared prefix (its prompt), for the faster
    forward of `alinea.model.reward.shared_prefix_rewards`; None when they cannot be packed (see
    `pack_shared_prefixes`), and then every model gets the plain forward.
    """

    input_ids: torch.Tensor  # (S, T)
    attention_mask: torch.Tensor  # (S, T)
    parts: dict[str, dict[str, torch.Tensor]]  # kind -> tensors (see `collate`)
    n_examples: int
    shared: PrefixSharing | None = None

    def to(self, device) -> RewardBatch:
        parts = {k: {n: t.to(device) for n, t in v.items()} for k, v in self.parts.items()}
        shared = self.shared.to(device) if self.shared is not None else None
        return RewardBatch(self.input_ids.to(device), self.attention_mask.to(device), parts, self.n_examples, shared)


def collate(examples: list[RewardExample], pad_id: int) -> RewardBatch:
    sequences: list[list[int]] = []
    groups: dict[str, list] = {kind: [] for kind in KINDS}
    for example in examples:
        start = len(sequences)
        sequences.extend(example.sequences)
        groups[example.kind].append((example, list(range(start, start + len(example.sequences)))))
    input_ids, attention = right_pad(sequences, pad_id)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for kind, items in groups.items():
        if not items:
            continue
        common = {
            "annotator": torch.tensor([e.annotator for e, _ in items]),
            "weight": torch.tensor([e.bootstrap for e, _ in items], dtype=torch.float),  # (E, heads)
        }
        if kind == "comparison":
            common |= {
                "a": torch.tensor([i[0] for _, i in items]), "b": torch.tensor([i[1] for _, i in items]),
                "outcome": torch.tensor([e.outcome for e, _ in items]),
                "strength": torch.tensor([e.strength for e, _ in items]),
            }
        elif kind == "ranking":
            k = max(len(i) for _, i in items)
            index = torch.zeros((len(items), k), dtype=torch.long)
            ranks = torch.zeros((len(items), k), dtype=torch.long)
            valid = torch.zeros((len(items), k), dtype=torch.bool)
            for row, (example, idx) in enumerate(items):
                index[row, : len(idx)] = torch.tensor(idx)
                ranks[row, : len(idx)] = torch.tensor(example.ranks)
                valid[row, : len(idx)] = True
            common |= {"index": index, "ranks": ranks, "valid": valid}
        else:
            common |= {
                "index": torch.tensor([i[0] for _, i in items]),
                "target": torch.tensor([e.target for e, _ in items], dtype=torch.float),
                "level": torch.tensor([e.level for e, _ in items]),
            }
        parts[kind] = common
    shared = pack_shared_prefixes([example.sequences for example in examples], pad_id)
    return RewardBatch(input_ids, attention, parts, len(examples), shared)


# ---------------------------------------------------------------------------------------------------------------------
# The loss


class RewardLoss(nn.Module):
    """One forward over every sequence of the batch, then each kind's loss; see the module docstring."""

    def __init__(self, model: nn.Module, cfg: RewardConfig, *, n_annotators: int, n_levels: int) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.log_reliability = nn.Parameter(torch.zeros(max(n_annotators, 1)), requires_grad=cfg.annotator_reliability)
        self.thumb_bias = nn.Parameter(torch.zeros(()))
        self.n_levels = max(n_levels, 2)
        # Ordered-logit thresholds, increasing by construction: first + cumulative softplus of the gaps.
        self.threshold_first = nn.Parameter(torch.tensor(-RATING_RANGE))
        self.threshold_gaps = nn.Parameter(torch.zeros(self.n_levels - 2))
        # These few scalars move far from their start in a short run only with a larger step than the network's.
        for param in (self.log_reliability, self.thumb_bias, self.threshold_first, self.threshold_gaps):
            param.lr_scale = cfg.loss_params_lr_scale

    def thresholds(self) -> torch.Tensor:
        gaps = nn.functional.softplus(self.threshold_gaps) + 1e-3
        return torch.cat([self.threshold_first.view(1), self.threshold_first + torch.cumsum(gaps, 0)])

    def reliability(self, annotator: torch.Tensor) -> torch.Tensor:
        """(E,) annotator indices -> (E, 1) factors exp(t_a - mean t); 1 for unknown annotators or when off."""
        if not self.cfg.annotator_reliability:
            return torch.ones(annotator.shape[0], 1, device=annotator.device)
        centred = self.log_reliability - self.log_reliability.mean()
        factor = torch.exp(centred)[annotator.clamp(min=0)]
        return torch.where(annotator >= 0, factor, torch.ones_like(factor)).unsqueeze(-1)

    def rewards(self, batch: RewardBatch) -> torch.Tensor:
        """(S, H) rewards of the batch's sequences; each example's prompt runs once where the model allows it."""
        if batch.shared is not None and supports_shared_prefix(self.model):
            return shared_prefix_rewards(self.model, batch.shared).float()
        return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()

    def per_kind_losses(self, rewards: torch.Tensor, batch: RewardBatch) -> dict[str, torch.Tensor]:
        """kind -> (E, heads) losses of the batch's examples of that kind."""
        cfg = self.cfg
        out: dict[str, torch.Tensor] = {}
        if "comparison" in batch.parts:
            p = batch.parts["comparison"]
            s = self.reliability(p["annotator"])
            r_a, r_b = rewards[p["a"]] * s, rewards[p["b"]] * s  # (C, H)
            outcome = p["outcome"].unsqueeze(-1).expand_as(r_a)
            if cfg.tie_model == "davidson":
                out["comparison"] = davidson_nll(r_a, r_b, outcome, cfg.tie_param)
            else:
                threshold = cfg.tie_param if cfg.tie_model == "rao-kupper" else 0.0
                margin = threshold + (strength_margin(p["strength"]).unsqueeze(-1) if cfg.use_strength else 0.0)
                win_a = outcome == 0
                chosen, rejected = torch.where(win_a, r_a, r_b), torch.where(win_a, r_b, r_a)
                wins = bradley_terry_loss(chosen, rejected, margin)
                if cfg.tie_model == "rao-kupper":
                    # Ties are scored on unscaled rewards: scaling by a reliability would make every tie count
                    # against its annotator until the rewards of tied answers are close.
                    raw_a, raw_b = rewards[p["a"]], rewards[p["b"]]
                    ties = rao_kupper_nll(raw_a, raw_b, torch.full_like(outcome, 2), threshold)
                    out["comparison"] = torch.where(outcome == 2, ties, wins)
                else:
                    out["comparison"] = wins
        if "ranking" in batch.parts:
            p = batch.parts["ranking"]
            s = self.reliability(p["annotator"]).unsqueeze(-1)  # (R, 1, 1)
            grouped = rewards[p["index"]] * s  # (R, K, H)
            loss_fn = plackett_luce_loss if cfg.ranking_loss == "plackett-luce" else kwise_ranking_loss
            out["ranking"] = torch.stack(
                [loss_fn(grouped[..., h], p["ranks"], p["valid"]) for h in range(grouped.shape[-1])], dim=-1
            )
        if "rating" in batch.parts:
            p = batch.parts["rating"]
            r = rewards[p["index"]]  # (G, H)
            if cfg.rating_loss == "ordinal":
                thresholds = self.thresholds()
                out["rating"] = torch.stack(
                    [ordinal_rating_loss(r[:, h], p["level"], thresholds) for h in range(r.shape[-1])], dim=-1
                )
            else:
                out["rating"] = rating_regression_loss(r, p["target"].unsqueeze(-1).expand_as(r))
        if "thumb" in batch.parts:
            p = batch.parts["thumb"]
            r = rewards[p["index"]] * self.reliability(p["annotator"])
            up = p["target"].unsqueeze(-1).expand_as(r) > 0.5
            out["thumb"] = thumb_loss(r, up, self.thumb_bias)
        return out

    def forward(self, batch: RewardBatch):
        rewards = self.rewards(batch)
        weights = {
            "comparison": self.cfg.weight_comparison, "ranking": self.cfg.weight_ranking,
            "rating": self.cfg.weight_rating, "thumb": self.cfg.weight_thumb,
        }
        total = rewards.new_zeros(())
        mass = rewards.new_zeros(())
        for kind, losses in self.per_kind_losses(rewards, batch).items():
            if weights[kind] == 0:
                continue  # a kind switched off neither adds loss nor dilutes the others' mean
            # (E, H); examples without a bootstrap (held-out ones) carry (E, 1): one weight for every head, so
            # the loss is the mean over heads either way.
            bootstrap = batch.parts[kind]["weight"].expand_as(losses)
            total = total + weights[kind] * (losses * bootstrap).sum()
            mass = mass + bootstrap.sum()
        loss = total / mass.clamp(min=1.0)
        if self.cfg.annotator_reliability:
            loss = loss + self.cfg.reliability_l2 * (self.log_reliability**2).mean()
        return loss, torch.tensor(batch.n_examples, device=rewards.device)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate_examples(loss_module: RewardLoss, batches: list[RewardBatch], *, n_bins: int = 10) -> dict:
    """Accuracy, log-likelihood and calibration on held-out examples (ensemble mean reward, no reliabilities)."""
    device = next(loss_module.parameters()).device
    loss_module.eval()
    diffs, outcomes, tie_gaps = [], [], []
    rank_correct = rank_pairs = thumb_correct = thumb_n = 0
    loss_sum, n_sum = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        loss, n = loss_module(batch)
        loss_sum += float(loss) * int(n)
        n_sum += int(n)
        rewards = loss_module.rewards(batch).mean(dim=-1)  # (S,) ensemble mean
        if "comparison" in batch.parts:
            p = batch.parts["comparison"]
            d = rewards[p["a"]] - rewards[p["b"]]
            ties = p["outcome"] == 2
            tie_gaps.append(d[ties].abs())
            diffs.append(d[~ties])
            outcomes.append(p["outcome"][~ties])
        if "ranking" in batch.parts:
            p = batch.parts["ranking"]
            r = rewards[p["index"]]  # (R, K)
            better = (p["ranks"].unsqueeze(2) < p["ranks"].unsqueeze(1)) & p["valid"].unsqueeze(2) & p["valid"].unsqueeze(1)
            rank_pairs += int(better.sum())
            rank_correct += int(((r.unsqueeze(2) > r.unsqueeze(1)) & better).sum())
        if "thumb" in batch.parts:
            p = batch.parts["thumb"]
            predicted_up = rewards[p["index"]] > loss_module.thumb_bias
            thumb_correct += int((predicted_up == (p["target"] > 0.5)).sum())
            thumb_n += len(p["target"])
    metrics: dict = {"loss": loss_sum / max(n_sum, 1), "n_examples": n_sum}
    if diffs:
        d = torch.cat(diffs)
        winner_a = torch.cat(outcomes) == 0
        margin = torch.where(winner_a, d, -d)  # r_winner - r_loser
        p_first = torch.sigmoid(d)
        confidence = torch.maximum(p_first, 1 - p_first)
        correct = (d > 0) == winner_a
        metrics |= {
            "accuracy": float(correct.float().mean()) if len(d) else float("nan"),
            "n": int(len(d)),
            "log_likelihood": float(nn.functional.logsigmoid(margin).mean()) if len(d) else float("nan"),
            "ece": float(expected_calibration_error(confidence, correct, n_bins)),
        }
        conf, acc, count = calibration_bins(confidence, correct, n_bins)
        metrics["calibration"] = {"confidence": conf.tolist(), "accuracy": acc.tolist(), "count": count.tolist()}
        ties = torch.cat(tie_gaps)
        metrics["ties"] = int(len(ties))
        if len(ties):
            metrics["tie_mean_abs_gap"] = float(ties.mean())
            metrics["win_mean_abs_gap"] = float(d.abs().mean())
    if rank_pairs:
        metrics["ranking_pair_accuracy"] = rank_correct / rank_pairs
    if thumb_n:
        metrics["thumb_accuracy"] = thumb_correct / thumb_n
    return metrics


def reliability_diagram(calibration: dict, path: Path, *, title: str = "Reward model calibration") -> Path:
    """Write a PNG reliability diagram: accuracy against confidence per bin, with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.array(calibration["confidence"], dtype=float)
    acc = np.array(calibration["accuracy"], dtype=float)
    count = np.array(calibration["count"], dtype=float)
    n_bins = len(conf)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ok = count > 0
    ax.bar(edges[:-1][ok], acc[ok], width=1.0 / n_bins, align="edge", alpha=0.6, edgecolor="black", label="accuracy")
    ax.plot(conf[ok], acc[ok], "o-", color="tab:red", label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the predicted winner")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Training


def load_feedback(cfg: RewardConfig):
    """Records of every data file; invalid lines stop the run unless `skip_invalid` (then they are counted)."""
    records, counts = [], Counter()
    if not cfg.data:
        raise UserError("reward.data: expected at least one JSONL feedback file.")
    for path in cfg.data:
        if cfg.skip_invalid:
            report = validate_file(path)
            records.extend(report.records)
            if report.errors:
                counts[f"invalid line in {path}"] += len(report.errors)
        else:
            records.extend(read_records(path))
    return records, counts


def run(cfg: AlineaConfig, *, resume: str | Path | None = None, out: str | Path | None = None) -> TrainResult:
    """Train a reward model per `cfg.reward`; `out` is the run directory (default runs/reward-<timestamp>)."""
    if resume:
        from alinea.train.runs import RunDir

        cfg = RunDir.open(resume, stage="reward").config()
    rcfg = cfg.reward
    _check_options(rcfg)
    if not rcfg.model:
        raise UserError("reward.model: expected a checkpoint directory (an SFT run's final/ or a base model).")
    model, tokenizer = build_reward_model(rcfg.model, ensemble=rcfg.ensemble, seed=rcfg.seed)
    records, skipped = load_feedback(rcfg)
    annotators: dict[str, int] = {}
    examples, counts, n_levels = encode_records(records, tokenizer, rcfg, annotators)
    skipped.update(counts)
    if len(examples) < 4:
        raise UserError(f"reward.data: only {len(examples)} usable feedback examples; need at least 4.")
    held, kept = held_out_split([example.group for example in examples], rcfg.eval_fraction, rcfg.seed)
    eval_examples = [examples[i] for i in held]
    train_examples = [examples[i] for i in kept]
    n_eval = len(eval_examples)
    assign_bootstrap(train_examples, rcfg.ensemble, rcfg.seed)
    pad_id = tokenizer.pad_token_id
    eval_batches = [collate(eval_examples[i : i + rcfg.batch_size], pad_id) for i in range(0, n_eval, rcfg.batch_size)]
    loss_module = RewardLoss(model, rcfg, n_annotators=len(annotators), n_levels=n_levels)
    names = sorted(annotators, key=annotators.get)

    latest: dict = {}  # the last full evaluation (with calibration bins), for eval.json

    def eval_fn(trainer) -> dict:
        latest.clear()
        latest.update(evaluate_examples(trainer.loss_module, eval_batches, n_bins=rcfg.calibration_bins))
        return {k: v for k, v in latest.items() if isinstance(v, int | float)}

    def on_finish(trainer, run) -> None:
        # train_loop evaluates the final weights (restored best ones included) right before this: reuse that.
        report = dict(latest)
        reference = _reference_sequences(rcfg, tokenizer, train_examples)
        norm = fit_normalisation(_score_sequences(model, reference, pad_id, rcfg.batch_size))
        set_normalisation(model, norm, reference=rcfg.reference or "training responses", ensemble=rcfg.ensemble,
                          kind=model_kind_of(rcfg))
        reliabilities = {}
        if rcfg.annotator_reliability and names:
            centred = loss_module.log_reliability.detach() - loss_module.log_reliability.detach().mean()
            reliabilities = {name: float(torch.exp(centred[i])) for i, name in enumerate(names)}
        if run is not None and trainer.accelerator.is_main_process:
            report |= {"normalisation": {"shift": norm.shift, "scale": norm.scale}, "skipped": dict(skipped),
                       "annotator_reliability": reliabilities}
            (run.path / "eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            if "calibration" in report:
                reliability_diagram(report["calibration"], run.path / "reliability.png")

    return train_loop(
        stage="reward",
        cfg=rcfg,
        full_cfg=cfg,
        model=model,
        tokenizer=tokenizer,
        n_examples=len(train_examples),
        collate=lambda indices: collate([train_examples[i] for i in indices], pad_id),
        eval_batches=[],
        eval_fn=eval_fn if eval_batches else None,
        loss_module=loss_module,
        resume=resume,
        run_dir=None if resume else out,
        on_finish=on_finish,
        count_unit="examples",
        save_model=lambda m, d: save_checkpoint(m, tokenizer, d),
        extra_meta={
            "train_examples": len(train_examples), "eval_examples": n_eval,
            "kinds": dict(Counter(e.kind for e in examples)), "skipped": dict(skipped), "annotators": names,
            "alinea_kind": model_kind_of(rcfg),
        },
    )


def model_kind_of(cfg: RewardConfig) -> str:
    """What the trained model scores: "cost" (higher = more harmful, `reward.invert`) or "reward" (higher = better).
    Stored as `kind` in config.json's `alinea_reward` and as `alinea_kind` in meta.json (`train.rewards.model_kind`)."""
    return "cost" if cfg.invert else "reward"


def _check_options(cfg: RewardConfig) -> None:
    choices = {
        "tie_model": ("rao-kupper", "davidson", "skip"), "ranking_loss": ("pairwise", "plackett-luce"),
        "rating_loss": ("regression", "ordinal"),
    }
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise UserError(f"reward.{name}: expected one of {', '.join(allowed)}, got {getattr(cfg, name)!r}.")
    if cfg.ensemble < 1:
        raise UserError(f"reward.ensemble: expected 1 or more heads, got {cfg.ensemble}.")
    if cfg.tie_param < 0:
        raise UserError(f"reward.tie_param: expected a number >= 0, got {cfg.tie_param}.")


def _reference_sequences(cfg: RewardConfig, tokenizer, train_examples) -> list[list[int]]:
    if cfg.reference:
        encoder = Encoder(tokenizer, cfg.max_len)
        records = read_records(cfg.reference, expected_type="demonstration")
        return [encoder.sequence(r.prompt_messages(), r.response) for r in records if isinstance(r, Demonstration)]
    return [seq for example in train_examples for seq in example.sequences]


def _score_sequences(model, sequences: list[list[int]], pad_id: int, batch_size: int) -> torch.Tensor:
    """(N, heads) raw rewards of token sequences."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(sequences), batch_size):
        ids, mask = right_pad(sequences[start : start + batch_size], pad_id)
        out.append(raw_rewards(model, ids.to(device), mask.to(device)).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.num_labels)


def score_records(model, tokenizer, records, *, max_len: int = 256, batch_size: int = 16):
    """For each response of each record: (mean, std) over ensemble heads of the normalised reward."""
    from alinea.model.reward import normalisation_of

    encoder = Encoder(tokenizer, max_len)
    sequences, owners = [], []
    for i, record in enumerate(records):
        for text in record.response_texts():
            sequences.append(encoder.sequence(record.prompt_messages(), text))
            owners.append(i)
    raw = _score_sequences(model, sequences, tokenizer.pad_token_id, batch_size)
    rewards = normalisation_of(model).apply(raw)  # (N, heads)
    mean = rewards.mean(dim=-1)
    std = rewards.std(dim=-1, unbiased=False) if rewards.shape[-1] > 1 else torch.zeros_like(mean)
    scored: list[list[tuple[float, float]]] = [[] for _ in records]
    for owner, m, s in zip(owners, mean.tolist(), std.tolist(), strict=True):
        scored[owner].append((m, s))
    return scored


def pairwise_bench_step(model, *, lr: float):
    """One optimizer step of our reward trainer on a batch of chosen/rejected pairs, for `alinea bench reward`.

    The batch dict holds `chosen_input_ids`, `chosen_attention_mask`, `rejected_input_ids`, `rejected_attention_mask`
    (B, T), right-padded. It runs exactly what `alinea reward train` runs for comparisons: the pairs become
    comparison examples, `collate` batches them (packing each pair around its shared prompt), and `TrainStep` with
    `RewardLoss` does the forward (the shared-prefix one where the model allows it), Bradley-Terry without ties or
    margins, backward, clipping at norm 1 and fused AdamW, in a process that keeps freed memory (`TrainStep` calls
    `keep_freed_memory`). Settings as the baseline's (TRL's `RewardTrainer` with the transformers defaults): fp32,
    no weight decay, betas (0.9, 0.999); the learning rate stays at `lr` (TRL's decays linearly to 0 over the run,
    which costs nothing either way).
    """
    from alinea.train.loop import TrainStep

    cfg = RewardConfig(lr=lr, warmup_steps=0, max_steps=10**9, tie_model="skip", use_strength=False, grad_clip=1.0,
                       precision="fp32", weight_decay=0.0, adam_beta2=0.999)
    loss_module = RewardLoss(model, cfg, n_annotators=0, n_levels=2)
    trainer = TrainStep(model, cfg, loss_module=loss_module)
    pad_id = model.config.pad_token_id
    counter = {"step": 0}

    def sequences(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        lengths = mask.sum(dim=1).tolist()
        return [row[:n] for row, n in zip(ids.tolist(), lengths, strict=True)]

    def step(batch: dict[str, torch.Tensor]) -> float:
        chosen = sequences(batch["chosen_input_ids"], batch["chosen_attention_mask"])
        rejected = sequences(batch["rejected_input_ids"], batch["rejected_attention_mask"])
        examples = [RewardExample("comparison", [c, r], outcome=0) for c, r in zip(chosen, rejected, strict=True)]
        metrics = trainer.step(counter["step"], [collate(examples, pad_id)])
        counter["step"] += 1
        return metrics["loss"]

    return step
