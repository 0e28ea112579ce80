"""CLI commands: `alinea loop` (registered by `alinea.cli`)."""

from __future__ import annotations


def register(apps: dict) -> None:
    """Add `alinea loop` to the root app."""
