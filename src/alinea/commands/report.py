"""CLI commands: `alinea report DIR` (registered by `alinea.cli`)."""

from __future__ import annotations


def register(apps: dict) -> None:
    """Add `alinea report` to the root app."""
