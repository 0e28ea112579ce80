"""CLI commands: RL benchmarks `alinea bench ppo|dpo|rloo|grpo` (registered by `alinea.cli`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

console = Console()

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object {ours, baseline, unit, ratio, peak_rss_mb, ...}.")
]
RLStepsOpt = Annotated[int, typer.Option("--steps", min=1, help="Timed RL steps per side (after one warm-up step).")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="fp32, or bf16: each side in its own bf16 mode (ours precision=bf16, TRL "
                                          "bf16=True); for CPUs with native bf16 (avx512_bf16, AMX).")
]
RoundsOpt = Annotated[
    int, typer.Option("--rounds", min=1, help="Runs per side (alternating order; medians reported).")
]
DPOStepsOpt = Annotated[
    int, typer.Option("--steps", min=1, help="Timed optimizer steps per side (after one warm-up step).")
]


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    unit = result["unit"]
    rss = result["peak_rss_mb"]
    if result["baseline"] is None:
        console.print(f"ours {result['ours']:.2f} {unit} (no baseline: {result['workload']['baseline_library']}); "
                      f"peak RSS {rss['ours']:.0f} MB")
    else:
        console.print(
            f"ours {result['ours']:.2f} {unit}, baseline {result['baseline']:.2f} {unit}, ratio {result['ratio']:.2f}; "
            f"peak RSS ours {rss['ours']:.0f} MB, baseline {rss['baseline']:.0f} MB"
        )
    if result.get("phases"):
        phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in result["phases"].items())
        console.print(f"ours, seconds per step: {phases}")


TrlPPOOpt = Annotated[
    str, typer.Option("--trl-ppo", metavar="DIR",
                      help="A folder holding TRL 1.12, the last release with a PPOTrainer, for the baseline side "
                           "(pip install --no-deps --target DIR trl==1.12.0). Without it: ours only.")
]


def _rl_command(algorithm: str, summary: str):
    if algorithm == "ppo":
        def command(as_json: JsonOpt = False, steps: RLStepsOpt = 3, trl_ppo: TrlPPOOpt = "",
                    precision: PrecisionOpt = "fp32", rounds: RoundsOpt = 1) -> None:
            from alinea.bench.rl import RLWorkload, bench_rl

            workload = RLWorkload(algorithm=algorithm, steps=steps, trl_ppo=trl_ppo, precision=precision)
            _print(bench_rl(workload, rounds=rounds), as_json)
    else:
        def command(as_json: JsonOpt = False, steps: RLStepsOpt = 3, precision: PrecisionOpt = "fp32",
                    rounds: RoundsOpt = 1) -> None:
            from alinea.bench.rl import RLWorkload, bench_rl

            _print(bench_rl(RLWorkload(algorithm=algorithm, steps=steps, precision=precision), rounds=rounds), as_json)

    if algorithm == "ppo":
        what = ("4 epochs in minibatches of 8, a reward model of the same size (also the critic's start)",
                "\n      alinea bench ppo --json --trl-ppo trl-1.12")
    else:
        what = ("1 epoch in minibatches of 8, a Python reward", "")
    command.__doc__ = f"""{summary}

    Workload: GPT-2 architecture, 4 layers, width 256, 4 heads, vocab 8192, random init; 32 episodes per step of a
    64-token prompt and up to 64 sampled tokens, {what[0]}, 2 threads; each side in its own process. Needs the bench
    extra (pip install -e '.[bench]') for the TRL side.

    \b
    Example:
      alinea bench {algorithm} --json{what[1]}
    """
    return command


def register(apps: dict) -> None:
    """Add the RL benchmark commands to `apps["bench"]`."""
    bench = apps["bench"]
    bench.command("ppo")(_rl_command(
        "ppo", "Episodes/s, time per phase and peak memory of our PPO step, and of TRL 1.12's PPOTrainer with --trl-ppo."))
    bench.command("rloo")(_rl_command("rloo", "Episodes/s and peak memory of our RLOO step vs TRL's RLOOTrainer."))
    bench.command("grpo")(_rl_command("grpo", "Episodes/s and peak memory of our GRPO step vs TRL's GRPOTrainer."))

    @bench.command("dpo")
    def bench_dpo_cmd(
        as_json: JsonOpt = False,
        steps: DPOStepsOpt = 8,
        precision: PrecisionOpt = "fp32",
        rounds: RoundsOpt = 1,
    ) -> None:
        """Pairs/s and peak memory of our DPO step vs TRL's DPOTrainer on the same model and pairs.

        Workload: GPT-2 architecture, 4 layers, width 256, 4 heads, vocab 8192, random init; 16 pairs per step of a
        64-token prompt and two 64-token answers, sigmoid loss, one reference forward per pair on both sides, 2
        threads; each side in its own process. Needs the bench extra (pip install -e '.[bench]').

        \b
        Example:
          alinea bench dpo --json
        """
        from alinea.bench.dpo import DPOWorkload, bench_dpo

        _print(bench_dpo(DPOWorkload(steps=steps, precision=precision), rounds=rounds), as_json)
