"""CLI commands: RL benchmarks `alinea bench ppo|dpo|rloo|grpo` (registered by `alinea.cli`)."""

from __future__ import annotations


def register(apps: dict) -> None:
    """Add the RL benchmark commands to `apps["bench"]`."""
