"""CLI commands: `alinea loop` (registered by `alinea.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML preset, e.g. configs/tiny.toml (default: built-in defaults).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one field: section.field=value (repeatable), e.g. loop.rounds=3."),
]


def loop_cmd(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Loop directory to create.")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-m", help="SFT checkpoint to start from; default loop.policy.")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the loop in this directory after its last finished phase.")] = None,
) -> None:
    """The RLHF loop: rounds of generate -> feedback (app over HTTP) -> reward model -> RL -> evaluate -> report.

    Judges are simulated annotators working through the app's API (default), people in the browser
    (--set loop.judges=people: the loop waits, showing progress), or an automated judge (loop.judges=ai). Without
    loop.server an embedded `alinea serve` runs on SQLite inside the loop directory. Writes DIR/loop_state.json,
    DIR/round-N/ (candidates, pairs, judgments, reward/, rl/), DIR/rounds.jsonl, DIR/report.html, DIR/summary.json.

    \b
    Examples:
      alinea loop -c configs/tiny.toml -m runs/sft-XXXX/final -o runs/loop
      alinea loop -c configs/tiny.toml -m SFT -o runs/loop --set loop.rl_algorithm=ppo --set loop.rounds=3
      alinea loop -c configs/tiny.toml -m SFT -o runs/loop --set loop.server=http://127.0.0.1:8000 --set loop.judges=people
      alinea loop --resume runs/loop
    """
    from alinea.config import load_config
    from alinea.errors import UserError
    from alinea.loop.rounds import run_loop

    if resume:
        run_loop(None, resume, resume=True)
        return
    if out is None:
        raise UserError("alinea loop: give --out DIR (a new loop directory) or --resume DIR.")
    cfg = load_config(config, overrides or [])
    if policy:
        cfg.loop.policy = str(policy)
    run_loop(cfg, out)


def register(apps: dict) -> None:
    """Add `alinea loop` to the root app."""
    apps["root"].command("loop")(loop_cmd)
