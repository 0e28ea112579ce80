"""CLI commands: sampling (registered by `alinea.cli`).

- `alinea bench generate`: tokens/s of our sampling engine against transformers' `generate` on the same workload.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(apps: dict) -> None:
    """Add this area's commands to the typer apps in `apps` (keys: root, bench, eval, data, reward)."""
    apps["bench"].command("generate")(bench_generate_cmd)


def bench_generate_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object {ours, baseline, unit, ratio, peak_rss_mb, ...}.")
    ] = False,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed sampling calls per side and round.")] = 3,
    rounds: Annotated[int, typer.Option("--rounds", help="Runs per side (alternating order; medians reported).")] = 1,
    threads: Annotated[int, typer.Option("--threads", help="torch threads in each side's process.")] = 2,
    device: Annotated[str, typer.Option("--device", help="cpu, or cuda to measure on a GPU.")] = "cpu",
    dtype: Annotated[
        str, typer.Option("--dtype", help="float32, or bfloat16: the model of both sides cast to bf16.")
    ] = "float32",
) -> None:
    """Tokens/s and peak memory of our sampler vs transformers' generate on the same model and prompts.

    Workload: GPT-2 architecture, 4 layers, width 256, 4 heads, vocab 8192, random init; 32 prompts of 64 tokens,
    exactly 64 new tokens each on both sides, temperature 0.7, top-p 1.0, fp32, 2 threads; each side in its own
    process so that peak memory is its own.

    \b
    Examples:
      alinea bench generate --json
      alinea bench generate --rounds 3 --repeats 5
      alinea bench generate --json --dtype bfloat16
    """
    from alinea.bench.generate import DTYPES, Workload, bench_generate
    from alinea.errors import UserError

    if repeats < 1 or rounds < 1 or threads < 1:
        raise UserError("--repeats, --rounds and --threads must each be at least 1.")
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device: expected cpu or cuda, got {device!r}.")
    if dtype not in DTYPES:
        raise UserError(f"--dtype: expected {' or '.join(DTYPES)}, got {dtype!r}.")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is visible to torch here.")
    result = bench_generate(Workload(repeats=repeats, threads=threads, device=device, dtype=dtype), rounds=rounds)
    if as_json:
        print(json.dumps(result))
    else:
        typer.echo(
            f"ours {result['ours']:,.0f} tokens/s, baseline {result['baseline']:,.0f} tokens/s, "
            f"ratio {result['ratio']:.2f}; peak RSS ours {result['peak_rss_mb']['ours']:.0f} MB, "
            f"baseline {result['peak_rss_mb']['baseline']:.0f} MB"
        )
        typer.echo(result["workload"]["sampling"])
