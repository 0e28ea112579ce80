"""Benchmark: tokens/s of our sampler against transformers' `generate`, in one run.

Workload (`Workload`): a randomly initialised GPT-2 language model (4 layers, width 256, 4 heads, vocabulary 8192,
256 positions, dropout 0), 32 prompts of 64 random token ids (no padding), 64 new tokens per prompt sampled at
temperature 0.7 with top-p 1.0 (the on-policy setting of RL rollouts), fp32 on the CPU with 2 threads, the same seed,
weights and prompts for both sides. `dtype="bfloat16"` casts the model of both sides to bf16.

- "ours" is `alinea.model.generation.generate_ids(..., min_new_tokens=64, max_new_tokens=64, stop_ids=[eos])`.
- "baseline" is transformers' `model.generate(do_sample=True, temperature=0.7, top_p=1.0, top_k=0,
  max_new_tokens=64, min_new_tokens=64, eos_token_id=eos, pad_token_id=0)` with its default (dynamic) cache.
  `top_k=0` turns off the top-50 filter transformers applies by default, which ours does not do.

Both sides therefore produce exactly 64 tokens for each of the 32 prompts (the end-of-sequence token is blocked
until then on both sides; the child checks the output shape), so tokens/s = 32 x 64 x repeats / seconds. Each side
runs in a fresh Python process (`python -m alinea.bench.generate --side ...`) so that its peak resident memory is its
own; `warmup` untimed calls come before `repeats` timed ones. With several rounds the order alternates and the median
rate of each side is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields

import torch

from alinea.bench.reward import PAD_ID, _peak_rss_mb

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""The precisions both sides can be measured in."""

RESULT_PREFIX = "alinea-bench-generate-result: "
"""Marks the child's result line on stdout."""

EOS_ID = 1
"""End-of-sequence id of the benchmark vocabulary; prompts never contain it, and it is blocked for 64 tokens."""


@dataclass
class Workload:
    """The shared workload: both sides sample from the same model and prompts with the same settings."""

    n_layer: int = 4
    """GPT-2 transformer blocks."""
    n_embd: int = 256
    """Hidden width."""
    n_head: int = 4
    """Attention heads."""
    vocab: int = 8192
    """Vocabulary size; prompt ids are drawn uniformly from 2..vocab-1 (0 is pad, 1 is end-of-sequence)."""
    n_positions: int = 256
    """Learned position embeddings (the sequences use prompt_len + new_tokens of them)."""
    batch: int = 32
    """Prompts sampled together."""
    prompt_len: int = 64
    """Tokens per prompt."""
    new_tokens: int = 64
    """Tokens sampled per prompt (min and max, so exactly this many on both sides)."""
    temperature: float = 0.7
    """Sampling temperature of both sides."""
    top_p: float = 1.0
    """Nucleus mass of both sides (1.0: the full distribution, as RL rollouts need for on-policy log-probs)."""
    threads: int = 2
    """torch intra-op threads (and OMP_NUM_THREADS) in each side's process."""
    repeats: int = 3
    """Timed calls per side and round."""
    warmup: int = 1
    """Untimed calls before the timed ones (allocator, one-time initialisation)."""
    seed: int = 0
    """Seed of the model initialisation, the prompts and the sampling."""
    device: str = "cpu"
    """"cpu", or "cuda" to measure on a GPU (same model and prompts)."""
    dtype: str = "float32"
    """Weights and activations of both sides: "float32", or "bfloat16" (the model cast with `.to(torch.bfloat16)` on
    both sides, as a transformers user loads it with `torch_dtype=torch.bfloat16`)."""

    def torch_dtype(self) -> torch.dtype:
        if self.dtype not in DTYPES:
            raise ValueError(f"workload dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}")
        return DTYPES[self.dtype]

    @property
    def tokens_per_call(self) -> int:
        return self.batch * self.new_tokens

    @classmethod
    def from_json(cls, text: str) -> Workload:
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# ---------------------------------------------------------------------------------------------------------------------
# The shared inputs


def make_prompts(workload: Workload) -> torch.Tensor:
    """Random prompts (batch, prompt_len) that contain neither the pad id nor the end-of-sequence id."""
    generator = torch.Generator().manual_seed(workload.seed)
    return torch.randint(2, workload.vocab, (workload.batch, workload.prompt_len), generator=generator)


def build_lm(workload: Workload):
    """A randomly initialised GPT-2 language model with dropout off; the same weights for a given seed."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=workload.n_layer, n_embd=workload.n_embd, n_head=workload.n_head, vocab_size=workload.vocab,
        n_positions=workload.n_positions, pad_token_id=PAD_ID, bos_token_id=EOS_ID, eos_token_id=EOS_ID,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(workload.seed)
        return GPT2LMHeadModel(config).eval()


# ---------------------------------------------------------------------------------------------------------------------
# One side, inside its own process


def sampler_for(side: str, workload: Workload, model):
    """A function () -> new token ids (batch, new_tokens) that samples the workload's prompts the side's way."""
    device = torch.device(workload.device)
    prompts = make_prompts(workload).to(device)
    mask = torch.ones_like(prompts)
    generator = torch.Generator(device=device).manual_seed(workload.seed)
    if side == "ours":
        from alinea.model.generation import generate_ids

        def ours() -> torch.Tensor:
            new_ids, _ = generate_ids(
                model, prompts, mask, max_new_tokens=workload.new_tokens, min_new_tokens=workload.new_tokens,
                stop_ids=[EOS_ID], pad_id=PAD_ID, temperature=workload.temperature, top_p=workload.top_p,
                generator=generator,
            )
            return new_ids

        return ours
    torch.manual_seed(workload.seed)  # transformers samples with the global generator

    def baseline() -> torch.Tensor:
        out = model.generate(
            input_ids=prompts, attention_mask=mask, do_sample=True, temperature=workload.temperature,
            top_p=workload.top_p, top_k=0, max_new_tokens=workload.new_tokens, min_new_tokens=workload.new_tokens,
            eos_token_id=EOS_ID, pad_token_id=PAD_ID,
        )
        return out[:, workload.prompt_len:]

    return baseline


def run_side(side: str, workload: Workload) -> dict:
    """Time the side's sampler; return its rate, timed span and peak RSS. Raises when it did not sample the work."""
    device = torch.device(workload.device)
    model = build_lm(workload).to(device=device, dtype=workload.torch_dtype())
    sample = sampler_for(side, workload, model)
    rss_setup = _peak_rss_mb()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(workload.warmup):
        sample()
    sync()
    start = time.perf_counter()
    for _ in range(workload.repeats):
        new_ids = sample()
    sync()
    elapsed = time.perf_counter() - start
    expected = (workload.batch, workload.new_tokens)
    if tuple(new_ids.shape) != expected:
        raise RuntimeError(f"the {side} side sampled {tuple(new_ids.shape)} tokens, not {expected}")
    return {
        "tokens_per_s": workload.repeats * workload.tokens_per_call / elapsed,
        "elapsed_s": elapsed,
        "s_per_call": elapsed / workload.repeats,
        "threads": torch.get_num_threads(),
        "rss_setup_mb": rss_setup,
        "peak_rss_mb": _peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------------------------------
# The parent: one fresh process per side and round


def _run_child(side: str, workload: Workload) -> dict:
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": str(workload.threads), "MKL_NUM_THREADS": str(workload.threads),
        "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
    })
    command = [sys.executable, "-m", "alinea.bench.generate", "--side", side, "--workload", json.dumps(asdict(workload))]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise RuntimeError(f"the {side} side of the generation benchmark failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def bench_generate(workload: Workload | None = None, *, rounds: int = 1) -> dict:
    """Sample the workload ours and transformers' way, each side in its own process; return rates, ratio, peak RSS."""
    import transformers

    workload = workload or Workload()
    workload.torch_dtype()  # an unknown precision fails here, before any child starts
    runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
    for r in range(rounds):
        order = ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")
        for side in order:
            runs[side].append(_run_child(side, workload))
    ours = statistics.median(run["tokens_per_s"] for run in runs["ours"])
    baseline = statistics.median(run["tokens_per_s"] for run in runs["baseline"])
    return {
        "ours": round(ours, 1),
        "baseline": round(baseline, 1),
        "unit": "tokens/s",
        "ratio": round(ours / baseline, 3),
        "peak_rss_mb": {side: round(max(run["peak_rss_mb"] for run in side_runs), 1)
                        for side, side_runs in runs.items()},
        "workload": {
            **asdict(workload),
            "model": f"gpt2 layers={workload.n_layer} width={workload.n_embd} heads={workload.n_head} "
                     f"vocab={workload.vocab} positions={workload.n_positions}, random init, dropout 0",
            "sampling": f"{workload.batch} prompts x {workload.prompt_len} tokens, exactly {workload.new_tokens} new "
                        f"tokens each on both sides (end-of-sequence blocked until then), temperature "
                        f"{workload.temperature}, top_p {workload.top_p}",
            "precision": workload.dtype,
            "rounds": rounds,
            "baseline_library": f"transformers {transformers.__version__} generate (dynamic cache, top_k=0)",
            "torch": torch.__version__,
        },
        "detail": runs,
    }


def main(argv: list[str] | None = None) -> None:
    """Child entry point: run one side and print its result as one JSON line after `RESULT_PREFIX`."""
    parser = argparse.ArgumentParser(description="One side of `alinea bench generate`, in its own process.")
    parser.add_argument("--side", choices=["ours", "baseline"], required=True)
    parser.add_argument("--workload", required=True, help="Workload fields as JSON")
    args = parser.parse_args(argv)
    workload = Workload.from_json(args.workload)
    torch.set_num_threads(workload.threads)
    print(RESULT_PREFIX + json.dumps(run_side(args.side, workload)), flush=True)


if __name__ == "__main__":
    main()
