"""CLI commands: `alinea report DIR` (registered by `alinea.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(apps: dict) -> None:
    """Add `alinea report` to the root app."""
    apps["root"].command("report")(report_cmd)


def report_cmd(
    loop_dir: Annotated[Path, typer.Argument(metavar="DIR", help="The --out directory of `alinea loop` (holds rounds.jsonl).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json's content instead of a table.")] = False,
) -> None:
    """Write DIR/report.html (plots embedded, no network needed to view it) and DIR/summary.json.

    The report shows reward and KL over RL steps, gold vs proxy reward against sqrt(KL) with the Gao et al. fit, win
    rates per round with bootstrap intervals, reward-model accuracy against judgments (active vs random), annotator
    agreement and reliability, per-language numbers, safety and time per phase. See docs/report.md.

    \b
    Examples:
      alinea report runs/loop
      alinea report runs/loop --json
    """
    from rich.console import Console
    from rich.table import Table

    from alinea.eval.report import HEADLINE_KEYS, write_report

    report_path, summary = write_report(loop_dir)
    if as_json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    console = Console()
    table = Table("number", "value", title=f"{loop_dir} after {summary['rounds']} round(s)")
    for key in HEADLINE_KEYS[1:]:
        value = summary[key]
        shown = "not measured" if value is None else f"{value:.3f}"
        if key == "win_rate_vs_sft" and summary.get("win_rate_vs_sft_ci"):
            low, high = summary["win_rate_vs_sft_ci"]
            if low is not None and high is not None:
                shown += f" [{low:.3f}, {high:.3f}]"
        table.add_row(key, shown)
    console.print(table)
    console.print(f"report: {report_path}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"summary: {report_path.with_name('summary.json')}", markup=False, highlight=False, soft_wrap=True)
