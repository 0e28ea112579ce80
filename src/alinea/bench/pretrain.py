"""Benchmark: tokens/s of our pretraining step against a bare forward + backward + AdamW step, in one run.

Workload: the model of the given config (tiny preset by default) with a vocabulary of `vocab_size`, a batch of
`batch_size` x `seq_len` random token ids, fp32 weights. "ours" is `TrainStep.step` exactly as `alinea pretrain`
runs it (accelerate, autocast when the precision resolves to bf16, logits only at labelled positions, gradient
clipping, fused AdamW, schedule). "baseline" is the textbook loop on an identical copy of the model:
`loss = model(input_ids, labels=input_ids).loss; loss.backward(); AdamW.step(); zero_grad()`.
Rounds alternate between the two so that both see the same machine load; the median round of each is reported.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

import torch

from alinea.config import AlineaConfig
from alinea.model.causal_lm import build_model
from alinea.train.loop import TokenBatch, TrainStep


@dataclass
class BenchResult:
    ours: float
    baseline: float
    unit: str
    ratio: float
    workload: dict

    def to_json(self) -> dict:
        return {"ours": self.ours, "baseline": self.baseline, "unit": self.unit, "ratio": self.ratio,
                "workload": self.workload}


def bench_pretrain(
    cfg: AlineaConfig | None = None, *, vocab_size: int = 8192, batch_size: int | None = None,
    seq_len: int | None = None, steps: int = 6, rounds: int = 3, seed: int = 0,
) -> BenchResult:
    cfg = cfg or AlineaConfig()
    batch_size = batch_size or cfg.pretrain.batch_size
    seq_len = seq_len or cfg.pretrain.seq_len
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    batch = TokenBatch(ids, torch.ones_like(ids), ids, dense=True)  # packed, as `alinea pretrain` makes them
    tokens_per_step = batch_size * (seq_len - 1)

    model = build_model(cfg.model, vocab_size=vocab_size, pad_token_id=0, stop_ids=[1, 2], seed=seed)
    baseline_model = copy.deepcopy(model)
    train_cfg = copy.deepcopy(cfg.pretrain)
    train_cfg.max_steps = 10**9  # keep the learning rate in warm-up/peak; the schedule costs the same anywhere
    ours = TrainStep(model, train_cfg)
    device = ours.accelerator.device
    baseline_model.to(device)
    ids = ids.to(device)
    baseline_opt = torch.optim.AdamW(baseline_model.parameters(), lr=train_cfg.lr)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run_ours(step: int) -> None:
        ours.step(step, [batch])

    def run_baseline(step: int) -> None:
        baseline_model.train()
        loss = baseline_model(input_ids=ids, labels=ids).loss
        loss.backward()
        baseline_opt.step()
        baseline_opt.zero_grad(set_to_none=True)

    for i in range(2):  # warm-up: allocator, kernels, optimizer state
        run_ours(i)
        run_baseline(i)
    ours_rates, base_rates = [], []
    for r in range(rounds):
        for fn, rates in ((run_ours, ours_rates), (run_baseline, base_rates)):
            sync()
            start = time.perf_counter()
            for i in range(steps):
                fn(10 + r * steps + i)
            sync()
            rates.append(tokens_per_step * steps / (time.perf_counter() - start))
    ours_rate = statistics.median(ours_rates)
    base_rate = statistics.median(base_rates)
    workload = {
        "model": f"llama h={cfg.model.hidden_size} layers={cfg.model.num_layers} vocab={vocab_size}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": [batch_size, seq_len],
        "precision_ours": ours.precision,
        "precision_baseline": "fp32",
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "steps_per_round": steps,
        "rounds": rounds,
    }
    return BenchResult(ours=round(ours_rate, 1), baseline=round(base_rate, 1), unit="tokens/s",
                       ratio=round(ours_rate / base_rate, 3), workload=workload)
