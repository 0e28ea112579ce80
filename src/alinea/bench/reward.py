"""Benchmark: pairs/s and peak memory of our reward-model step against TRL's `RewardTrainer`, in one run.

Workload (`Workload`): a randomly initialised GPT-2 sequence classifier (4 layers, width 256, 4 heads, vocabulary
8192, 256 positions, one reward output, dropout 0), batches of 16 preference pairs, each side a 64-token prompt
followed by a 64-token response (128 tokens, no padding), fp32 on the CPU with 2 threads, the same seed and the same
random token ids for both sides.

- "ours" is the step returned by `alinea.train.reward.pairwise_bench_step(model, lr=...)`: one call is one optimizer
  step (forward chosen and rejected, Bradley-Terry loss, backward, AdamW) on a batch of right-padded tensors.
- "baseline" is `trl.RewardTrainer.train()` (the `bench` extra) on a `datasets.Dataset` of pre-tokenized rows in the
  format TRL 1.16 documents for processed data: `chosen_ids` and `rejected_ids`, lists of token ids with the prompt
  already in front. TRL's own collator pads them and builds the attention masks. Evaluation, saving and logging are
  off, as are bf16/fp16 and (unless `baseline_gradient_checkpointing`) the gradient checkpointing TRL turns on by
  default, so that both sides do the same forward and backward work.

Each side runs in a fresh Python process (`python -m alinea.bench.reward --side ...`) so that its peak resident
memory (`getrusage(RUSAGE_SELF).ru_maxrss`) is its own: the imports it needs, the model, the optimizer state and the
activations. Only the `steps` steps after `warmup` are timed; for the baseline the timed span runs from the end of
warm-up step `warmup` to the end of the last step (TrainerCallback.on_step_end), so it includes TRL's data loading and
collation between steps, exactly as a TRL user pays for them. With several rounds the order of the two sides
alternates and the median rate of each is reported. The machine's 1-minute load average before and after is
recorded: with 2 threads per side, other processes on the machine slow both sides, so compare ratios of runs made at
a similar, low load. Both sides' OpenMP threads wait passively by default (`Workload.omp_wait_policy`), which keeps
that slowdown moderate and even.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields

import torch

from alinea.bench.common import load_factory, peak_rss_mb, word_level_tokenizer
from alinea.errors import UserError

DEFAULT_OURS_FACTORY = "alinea.train.reward:pairwise_bench_step"
"""`module:function` that takes `(model, lr=...)` and returns `step(batch) -> float`."""

RESULT_PREFIX = "alinea-bench-reward-result: "
"""Marks the child's result line on stdout (the Trainer prints its own dicts there)."""

PAD_ID = 0
"""Padding token id of the benchmark vocabulary; the random token ids never use it."""


@dataclass
class Workload:
    """The shared workload: both sides train the same model on the same pairs with the same settings."""

    n_layer: int = 4
    """GPT-2 transformer blocks."""
    n_embd: int = 256
    """Hidden width."""
    n_head: int = 4
    """Attention heads."""
    vocab: int = 8192
    """Vocabulary size; token ids are drawn uniformly from 1..vocab-1 (0 is the pad id)."""
    n_positions: int = 256
    """Learned position embeddings (the sequences use prompt_len + response_len of them)."""
    batch_pairs: int = 16
    """Preference pairs per optimizer step (TRL's per_device_train_batch_size)."""
    prompt_len: int = 64
    """Prompt tokens, shared by the chosen and the rejected sequence of a pair."""
    response_len: int = 64
    """Response tokens of each of the chosen and the rejected sequence."""
    threads: int = 2
    """torch intra-op threads (and OMP_NUM_THREADS) in each side's process."""
    steps: int = 10
    """Timed optimizer steps per side and round."""
    warmup: int = 2
    """Untimed optimizer steps before the timed ones (allocator, optimizer state)."""
    seed: int = 0
    """Seed of the model initialisation and of the random token ids."""
    lr: float = 1e-5
    """AdamW learning rate of both sides."""
    baseline_gradient_checkpointing: bool = False
    """TRL's RewardConfig defaults to True (recompute activations: slower, less memory); off = the same work as ours."""
    omp_wait_policy: str = "passive"
    """OMP_WAIT_POLICY of both sides' processes: "passive" threads sleep while they wait for work, "active" ones spin,
    "" keeps the environment's setting (unset: OpenMP's default, spin a while, then sleep). On a machine shared with other work, spinning threads take
    cores from the threads they wait for: both sides then slow several-fold and erratically (measured at load 5:
    TRL 3.4 s/step spinning vs 2.0 passive, ours 1.9-4.5 vs 0.9)."""
    clock: str = "wall"
    """What the timed span measures: "wall" (time.perf_counter) or "cpu" (the process's CPU time, time.process_time:
    with threads=1 nearly blind to other processes on a busy machine; with more threads it also counts spin-waits)."""

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.response_len

    @classmethod
    def from_json(cls, text: str) -> Workload:
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# ---------------------------------------------------------------------------------------------------------------------
# The shared inputs: token ids and the model


def make_pairs(workload: Workload) -> tuple[torch.Tensor, torch.Tensor]:
    """Random preference pairs for warmup + steps batches: (chosen_ids, rejected_ids), each (n_pairs, seq_len).

    The prompt is the same in both sequences of a pair; the ids avoid the pad id, so no sequence is padded.
    """
    n_pairs = workload.batch_pairs * (workload.warmup + workload.steps)
    generator = torch.Generator().manual_seed(workload.seed)
    prompt = torch.randint(1, workload.vocab, (n_pairs, workload.prompt_len), generator=generator)
    chosen = torch.randint(1, workload.vocab, (n_pairs, workload.response_len), generator=generator)
    rejected = torch.randint(1, workload.vocab, (n_pairs, workload.response_len), generator=generator)
    return torch.cat([prompt, chosen], dim=1), torch.cat([prompt, rejected], dim=1)


def build_reward_model(workload: Workload):
    """A randomly initialised GPT-2 with a one-output score head, dropout off; the same weights for a given seed."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(
        n_layer=workload.n_layer, n_embd=workload.n_embd, n_head=workload.n_head, vocab_size=workload.vocab,
        n_positions=workload.n_positions, num_labels=1, pad_token_id=PAD_ID, bos_token_id=1, eos_token_id=1,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0, use_cache=False,
    )
    torch.manual_seed(workload.seed)
    return GPT2ForSequenceClassification(config)


def _clock(workload: Workload):
    if workload.clock not in ("wall", "cpu"):
        raise ValueError(f"Workload.clock: expected 'wall' or 'cpu', got {workload.clock!r}")
    return time.perf_counter if workload.clock == "wall" else time.process_time


_peak_rss_mb = peak_rss_mb  # shared with the other library benchmarks (alinea.bench.common)
_load_factory = load_factory


# ---------------------------------------------------------------------------------------------------------------------
# One side, inside its own process


def run_ours(workload: Workload, factory_path: str = DEFAULT_OURS_FACTORY) -> dict:
    """Train with our step; return the side's rate, timed span, mean loss and peak RSS."""
    chosen_ids, rejected_ids = make_pairs(workload)
    model = build_reward_model(workload)
    model.train()
    step = _load_factory(factory_path)(model, lr=workload.lr)
    rss_setup = _peak_rss_mb()
    n = workload.batch_pairs
    mask = torch.ones(n, workload.seq_len, dtype=torch.long)

    def batch(i: int) -> dict[str, torch.Tensor]:
        return {"chosen_input_ids": chosen_ids[i * n:(i + 1) * n], "chosen_attention_mask": mask,
                "rejected_input_ids": rejected_ids[i * n:(i + 1) * n], "rejected_attention_mask": mask}

    now = _clock(workload)
    losses = [step(batch(i)) for i in range(workload.warmup)]
    start = now()
    for i in range(workload.warmup, workload.warmup + workload.steps):
        losses.append(step(batch(i)))
    elapsed = now() - start
    return _side_result(workload, elapsed, statistics.fmean(losses), rss_setup)


def _word_level_tokenizer(workload: Workload):
    """A tokenizer whose ids are exactly 0..vocab-1 (`<pad>` = 0, `<eos>` = 1): TRL needs one for the pad token."""
    return word_level_tokenizer(workload.vocab)


def run_baseline(workload: Workload) -> dict:
    """Train with TRL's RewardTrainer; return the side's rate, timed span, mean loss and peak RSS."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    if workload.warmup < 1:
        raise ValueError("the baseline is timed from the end of a warm-up step: warmup must be at least 1")
    chosen_ids, rejected_ids = make_pairs(workload)
    dataset = Dataset.from_dict({"chosen_ids": chosen_ids.tolist(), "rejected_ids": rejected_ids.tolist()})
    model = build_reward_model(workload)
    timed_from, timed_to = workload.warmup, workload.warmup + workload.steps
    marks: dict[int, float] = {}
    now = _clock(workload)

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (timed_from, timed_to):
                marks[state.global_step] = now()

    with tempfile.TemporaryDirectory(prefix="alinea-bench-trl-") as output_dir:
        config = RewardConfig(
            output_dir=output_dir, per_device_train_batch_size=workload.batch_pairs, max_steps=timed_to,
            learning_rate=workload.lr, max_length=workload.seq_len, seed=workload.seed, data_seed=workload.seed,
            use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=workload.baseline_gradient_checkpointing,
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, dataloader_pin_memory=False,
        )
        trainer = RewardTrainer(model=model, args=config, train_dataset=dataset,
                                processing_class=_word_level_tokenizer(workload), callbacks=[StepClock()])
        rss_setup = _peak_rss_mb()
        output = trainer.train()
    elapsed = marks[timed_to] - marks[timed_from]
    return _side_result(workload, elapsed, output.training_loss, rss_setup)


def _side_result(workload: Workload, elapsed: float, mean_loss: float, rss_setup: float) -> dict:
    """`mean_loss` is over all warmup + steps steps (what TRL reports as training_loss); ln 2 = 0.693 at chance."""
    return {
        "pairs_per_s": workload.steps * workload.batch_pairs / elapsed,
        "elapsed_s": elapsed,
        "mean_loss": mean_loss,
        "threads": torch.get_num_threads(),
        "rss_setup_mb": rss_setup,
        "peak_rss_mb": _peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------------------------------
# The parent: one fresh process per side and round


def _run_side(side: str, workload: Workload, ours_factory: str) -> dict:
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": str(workload.threads), "MKL_NUM_THREADS": str(workload.threads),
        "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    })
    if workload.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = workload.omp_wait_policy.upper()
    command = [sys.executable, "-m", "alinea.bench.reward", "--side", side,
               "--workload", json.dumps(asdict(workload)), "--ours-factory", ours_factory]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise RuntimeError(f"the {side} side of the reward benchmark failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def bench_reward(
    workload: Workload | None = None, *, rounds: int = 1, ours_factory: str = DEFAULT_OURS_FACTORY,
) -> dict:
    """Train the reward model ours and TRL's way, each side in its own process; return rates, ratio and peak RSS.

    `ours_factory` names the `module:function` that builds our step (tests point it at a stand-in). Raises
    `UserError` when TRL (the `bench` extra) is not installed.
    """
    workload = workload or Workload()
    if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
        raise UserError("the reward benchmark needs TRL: pip install -e '.[bench]'")
    import trl

    runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
    load_before = os.getloadavg()[0]
    for r in range(rounds):
        order = ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")
        for side in order:
            runs[side].append(_run_side(side, workload, ours_factory))
    ours = statistics.median(run["pairs_per_s"] for run in runs["ours"])
    baseline = statistics.median(run["pairs_per_s"] for run in runs["baseline"])
    return {
        "ours": round(ours, 2),
        "baseline": round(baseline, 2),
        "unit": "pairs/s",
        "ratio": round(ours / baseline, 3),
        "peak_rss_mb": {side: round(max(run["peak_rss_mb"] for run in side_runs), 1)
                        for side, side_runs in runs.items()},
        "workload": {
            **asdict(workload),
            "model": f"gpt2 layers={workload.n_layer} width={workload.n_embd} heads={workload.n_head} "
                     f"vocab={workload.vocab} positions={workload.n_positions}, random init, dropout 0",
            "batch": f"{workload.batch_pairs} pairs x 2 x {workload.seq_len} tokens",
            "device": "cpu",
            "precision": "fp32",
            "rounds": rounds,
            "ours_factory": ours_factory,
            "baseline_library": f"trl {trl.__version__} RewardTrainer",
            "torch": torch.__version__,
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after: others' load
        },
        "detail": runs,
    }


def main(argv: list[str] | None = None) -> None:
    """Child entry point: run one side and print its result as one JSON line after `RESULT_PREFIX`."""
    parser = argparse.ArgumentParser(description="One side of `alinea bench reward`, in its own process.")
    parser.add_argument("--side", choices=["ours", "baseline"], required=True)
    parser.add_argument("--workload", required=True, help="Workload fields as JSON")
    parser.add_argument("--ours-factory", default=DEFAULT_OURS_FACTORY, help="module:function building our step")
    args = parser.parse_args(argv)
    workload = Workload.from_json(args.workload)
    torch.set_num_threads(workload.threads)
    result = run_ours(workload, args.ours_factory) if args.side == "ours" else run_baseline(workload)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
