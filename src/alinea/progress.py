"""Progress bars for long work: a rich bar with done/total, throughput and ETA.

Library loops take an optional `Progress`-like object; the CLI passes a live bar, tests pass nothing. Set
`ALINEA_PROGRESS=0` to silence bars (CI logs stay readable).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class ThroughputColumn(ProgressColumn):
    """Units per second since the task started (e.g. tokens/s), read from the task's `rate_unit` field."""

    def render(self, task) -> Text:
        unit = task.fields.get("rate_unit", "it")
        count = task.fields.get("rate_count", task.completed)
        elapsed = task.elapsed or 0.0
        if elapsed <= 0 or not count:
            return Text(f"- {unit}/s", style="progress.data.speed")
        return Text(f"{count / elapsed:,.0f} {unit}/s", style="progress.data.speed")


def progress_enabled() -> bool:
    return os.environ.get("ALINEA_PROGRESS", "1") != "0"


class Bar:
    """One task of a rich progress display; `advance(n, rate_count=...)` moves it on."""

    def __init__(self, progress: Progress | None, task_id, start: float) -> None:
        self._progress = progress
        self._task = task_id
        self._start = start
        self.rate_count = 0

    def advance(self, n: int = 1, *, rate_count: int = 0, **fields) -> None:
        self.rate_count += rate_count or n
        if self._progress is not None:
            self._progress.update(self._task, advance=n, rate_count=self.rate_count, **fields)


@contextmanager
def progress_bar(description: str, total: int, *, rate_unit: str = "it", completed: int = 0):
    """A progress bar for `total` steps; yields a `Bar`. Silent when ALINEA_PROGRESS=0."""
    if not progress_enabled():
        yield Bar(None, None, time.perf_counter())
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        ThroughputColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed, rate_unit=rate_unit, info="")
        yield Bar(progress, task, time.perf_counter())
