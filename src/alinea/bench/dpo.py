"""Benchmark: pairs/s and peak memory of our DPO step against TRL's `DPOTrainer`, in one run.

Workload (`DPOWorkload`): a randomly initialised GPT-2 causal LM (4 layers, width 256, 4 heads, vocabulary 8192, 256
positions, dropout 0), fp32 on the CPU with 2 threads, batches of 16 preference pairs; each pair is a 64-token
prompt and two 64-token answers (63 random words and `<eos>`), so every sequence is 128 tokens and nothing is padded.
Both sides: sigmoid DPO loss with beta 0.1, a frozen reference copy of the starting model, AdamW at a constant
learning rate with betas (0.9, 0.999), no weight decay, gradient clipping at 1.

- "ours" is what `alinea dpo` runs (`alinea.train.dpo`): the reference's log-probs computed once for the pairs
  (`fill_reference_logps`), then `TrainStep` steps with `DPOLoss` (chosen and rejected in one forward, logits only
  at answer positions, fused AdamW). The reference pass over the timed pairs is inside the timed span, so both sides
  pay for one reference forward per pair.
- "baseline" is `trl.DPOTrainer.train()` (the `bench` extra) on a `datasets.Dataset` of the same pairs as text
  (`prompt`, `chosen`, `rejected`; the word-level tokenizer maps them to the same ids), with TRL's default of a
  reference forward at every step (`precompute_ref_log_probs=False`). Evaluation, saving and logging are off, as are
  bf16 (TRL's default is on; `precision = "bf16"` turns on each side's own bf16 mode, for CPUs with native bf16)
  and gradient checkpointing (TRL's default is on; it recomputes activations) unless
  `baseline_gradient_checkpointing`.

Each side runs in a fresh Python process (peak RSS of its own); `warmup` steps are untimed; TRL is timed from the end
of its step `warmup` to the end of the last step (`TrainerCallback.on_step_end`), with its data loading and collation.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from alinea.bench.common import (
    EOS_ID,
    FIRST_WORD_ID,
    PAD_ID,
    StepClock,
    check_precision,
    machine_load,
    parameter_change,
    peak_rss_mb,
    require_trl,
    run_side,
    save_gpt2_lm,
    snapshot_parameters,
    words,
)

RESULT_PREFIX = "alinea-bench-dpo-result: "
"""Marks the child's result line on stdout (the Trainer prints its own dicts there)."""


@dataclass
class DPOWorkload:
    """The shared workload: both sides train the same model on the same pairs with the same settings."""

    n_layer: int = 4
    """GPT-2 transformer blocks."""
    n_embd: int = 256
    """Hidden width."""
    n_head: int = 4
    """Attention heads."""
    vocab: int = 8192
    """Vocabulary size; token ids are drawn from 2..vocab-1 (0 is the pad id, 1 the eos id)."""
    n_positions: int = 256
    """Learned position embeddings (prompt_len + response_len of them are used)."""
    batch_pairs: int = 16
    """Preference pairs per optimizer step (TRL's per_device_train_batch_size)."""
    prompt_len: int = 64
    """Prompt tokens, shared by the chosen and the rejected sequence of a pair."""
    response_len: int = 64
    """Tokens of each answer: response_len - 1 random words and `<eos>`."""
    threads: int = 2
    """torch intra-op threads (and OMP_NUM_THREADS) in each side's process."""
    steps: int = 8
    """Timed optimizer steps per side and round."""
    warmup: int = 1
    """Untimed optimizer steps before the timed ones."""
    seed: int = 0
    """Seed of the model initialisation and of the random token ids."""
    lr: float = 1e-5
    """AdamW learning rate of both sides (constant)."""
    beta: float = 0.1
    """DPO beta of both sides."""
    baseline_gradient_checkpointing: bool = False
    """TRL's DPOConfig defaults to True (recompute activations: slower, less memory); off = the same work as ours."""
    precision: str = "fp32"
    """fp32, or bf16: each side's own bf16 mode (`common.PRECISIONS`)."""

    @property
    def n_pairs(self) -> int:
        return self.batch_pairs * (self.warmup + self.steps)

    @classmethod
    def from_json(cls, text: str) -> DPOWorkload:
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def make_pairs(workload: DPOWorkload) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prompts (N, P), chosen (N, R), rejected (N, R)) token ids for warmup + steps batches; answers end with eos."""
    generator = torch.Generator().manual_seed(workload.seed)
    n, body = workload.n_pairs, workload.response_len - 1
    prompts = torch.randint(FIRST_WORD_ID, workload.vocab, (n, workload.prompt_len), generator=generator)
    eos = torch.full((n, 1), EOS_ID, dtype=torch.long)
    chosen = torch.cat([torch.randint(FIRST_WORD_ID, workload.vocab, (n, body), generator=generator), eos], dim=1)
    rejected = torch.cat([torch.randint(FIRST_WORD_ID, workload.vocab, (n, body), generator=generator), eos], dim=1)
    return prompts, chosen, rejected


def _answer_text(ids: torch.Tensor) -> str:
    """Answer ids as text that follows a prompt: a leading space, the words, `<eos>` glued on (a special token)."""
    return " " + words(ids[:-1].tolist()) + "<eos>"


def _save_model(workload: DPOWorkload, folder: Path) -> Path:
    return save_gpt2_lm(folder / "model", n_layer=workload.n_layer, n_embd=workload.n_embd, n_head=workload.n_head,
                        vocab=workload.vocab, n_positions=workload.n_positions, seed=workload.seed)


def _load_model(model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------------------
# One side, inside its own process


def run_ours(workload: DPOWorkload) -> dict:
    """Train with our DPO step; return the side's rate, timed span, mean loss, parameter change and peak RSS."""
    from alinea.config import DPOConfig
    from alinea.losses import IGNORE_INDEX
    from alinea.model.fast import fuse_activations
    from alinea.train.dpo import DPOLoss, EncodedPair, collate_pairs, fill_reference_logps
    from alinea.train.loop import TrainStep
    from alinea.train.sft import EncodedConversation

    prompts, chosen, rejected = make_pairs(workload)
    pairs = []
    for prompt, good, bad in zip(prompts.tolist(), chosen.tolist(), rejected.tolist(), strict=True):
        ignore = [IGNORE_INDEX] * len(prompt)
        pairs.append(EncodedPair(EncodedConversation(prompt + good, ignore + good),
                                 EncodedConversation(prompt + bad, ignore + bad)))
    with tempfile.TemporaryDirectory(prefix="alinea-bench-dpo-") as folder:
        model = _load_model(_save_model(workload, Path(folder)))
    reference = copy.deepcopy(model)  # what `alinea dpo` does without dpo.reference
    fuse_activations(reference)
    cfg = DPOConfig(
        lr=workload.lr, batch_size=workload.batch_pairs, warmup_steps=0, max_steps=10**9, beta=workload.beta,
        weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, grad_clip=1.0, precision=workload.precision, seed=workload.seed,
    )
    trainer = TrainStep(model, cfg, loss_module=DPOLoss(model, cfg))
    initial = snapshot_parameters(model)
    rss_setup = peak_rss_mb()
    n, ref_batch = workload.batch_pairs, max(cfg.batch_size, 8)  # the reference batch `alinea dpo` uses

    def step(i: int) -> float:
        return trainer.step(i, [collate_pairs(pairs[i * n:(i + 1) * n], PAD_ID)])["loss"]

    fill_reference_logps(reference, pairs[:workload.warmup * n], PAD_ID, batch_size=ref_batch, average=False)
    losses = [step(i) for i in range(workload.warmup)]
    start, cpu_start = time.perf_counter(), time.process_time()
    fill_reference_logps(reference, pairs[workload.warmup * n:], PAD_ID, batch_size=ref_batch, average=False)
    for i in range(workload.warmup, workload.warmup + workload.steps):
        losses.append(step(i))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return _side_result(workload, elapsed, cpu, statistics.fmean(losses), parameter_change(model, initial), rss_setup)


def run_baseline(workload: DPOWorkload) -> dict:
    """Train with TRL's DPOTrainer; return the side's rate, timed span, mean loss, parameter change and peak RSS."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    prompts, chosen, rejected = make_pairs(workload)
    dataset = Dataset.from_dict({
        "prompt": [words(row) for row in prompts.tolist()],
        "chosen": [_answer_text(row) for row in chosen],
        "rejected": [_answer_text(row) for row in rejected],
    })
    timed_from, timed_to = workload.warmup, workload.warmup + workload.steps
    clock = StepClock(timed_from, timed_to)

    with tempfile.TemporaryDirectory(prefix="alinea-bench-trl-") as folder:
        model_dir = _save_model(workload, Path(folder))
        model = _load_model(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        config = DPOConfig(
            output_dir=str(Path(folder) / "out"), per_device_train_batch_size=workload.batch_pairs,
            max_steps=timed_to, learning_rate=workload.lr, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.0, max_grad_norm=1.0, beta=workload.beta, loss_type=["sigmoid"],
            max_length=workload.prompt_len + workload.response_len, seed=workload.seed, data_seed=workload.seed,
            use_cpu=True, bf16=workload.precision == "bf16", fp16=False,
            gradient_checkpointing=workload.baseline_gradient_checkpointing,
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, dataloader_pin_memory=False,
        )
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             callbacks=[clock.callback()])
        initial = snapshot_parameters(model)
        rss_setup = peak_rss_mb()
        output = trainer.train()
        change = parameter_change(model, initial)
    elapsed, cpu = clock.span()
    return _side_result(workload, elapsed, cpu, output.training_loss, change, rss_setup)



def _side_result(
    workload: DPOWorkload, elapsed: float, cpu: float, mean_loss: float, change: float, rss_setup: float,
) -> dict:
    """`mean_loss` over all warmup + steps steps (TRL's training_loss); ln 2 = 0.693 at step 0 (policy = reference).
    `cpu_s`: CPU seconds of the process over the timed span (all threads)."""
    return {
        "pairs_per_s": workload.steps * workload.batch_pairs / elapsed,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "mean_loss": mean_loss,
        "param_change": change,
        "threads": torch.get_num_threads(),
        "rss_setup_mb": rss_setup,
        "peak_rss_mb": peak_rss_mb(),
        "load_1min_at_end": machine_load()["load_1min"],
    }


# ---------------------------------------------------------------------------------------------------------------------
# The parent: one fresh process per side and round


def _run_side(side: str, workload: DPOWorkload) -> dict:
    args = ["--side", side, "--workload", json.dumps(asdict(workload))]
    return run_side("alinea.bench.dpo", args, prefix=RESULT_PREFIX, threads=workload.threads,
                    what=f"the {side} side of the DPO benchmark")


def bench_dpo(workload: DPOWorkload | None = None, *, rounds: int = 1) -> dict:
    """Train DPO ours and TRL's way, each side in its own process; return rates, ratio and peak RSS.

    Raises `UserError` when TRL (the `bench` extra) is not installed.
    """
    workload = workload or DPOWorkload()
    check_precision("dpo", workload.precision)
    trl_version = require_trl("DPO")
    load_before = machine_load()
    runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
    for r in range(rounds):
        for side in ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours"):
            runs[side].append(_run_side(side, workload))
    ours = statistics.median(run["pairs_per_s"] for run in runs["ours"])
    baseline = statistics.median(run["pairs_per_s"] for run in runs["baseline"])
    seq_len = workload.prompt_len + workload.response_len
    return {
        "ours": round(ours, 3),
        "baseline": round(baseline, 3),
        "unit": "pairs/s",
        "ratio": round(ours / baseline, 3),
        "peak_rss_mb": {side: round(max(run["peak_rss_mb"] for run in side_runs), 1)
                        for side, side_runs in runs.items()},
        "workload": {
            **asdict(workload),
            "model": f"gpt2 layers={workload.n_layer} width={workload.n_embd} heads={workload.n_head} "
                     f"vocab={workload.vocab} positions={workload.n_positions}, random init, dropout 0",
            "batch": f"{workload.batch_pairs} pairs x 2 x {seq_len} tokens (prompt {workload.prompt_len} + answer "
                     f"{workload.response_len}), sigmoid loss, beta {workload.beta}, one reference forward per pair",
            "device": "cpu",
            "precision": workload.precision,
            "rounds": rounds,
            "baseline_library": f"trl {trl_version} DPOTrainer",
            "torch": torch.__version__,
        },
        "machine": {**load_before, "load_1min_after": machine_load()["load_1min"]},
        "detail": runs,
    }


def main(argv: list[str] | None = None) -> None:
    """Child entry point: run one side and print its result as one JSON line after `RESULT_PREFIX`."""
    parser = argparse.ArgumentParser(description="One side of `alinea bench dpo`, in its own process.")
    parser.add_argument("--side", choices=["ours", "baseline"], required=True)
    parser.add_argument("--workload", required=True, help="DPOWorkload fields as JSON")
    args = parser.parse_args(argv)
    workload = DPOWorkload.from_json(args.workload)
    torch.set_num_threads(workload.threads)
    result = run_ours(workload) if args.side == "ours" else run_baseline(workload)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
