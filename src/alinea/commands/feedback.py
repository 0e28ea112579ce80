"""CLI commands: feedback (registered by `alinea.cli`)."""

from __future__ import annotations


def register(apps: dict) -> None:
    """Add this area's commands to the typer apps in `apps` (keys: root, bench, eval, data, reward)."""
