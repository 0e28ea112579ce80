"""Errors that are the user's to fix.

A `UserError` carries a one-paragraph message meant for a person: which file, which line, which field, and what was
expected. The CLI prints it without a traceback and exits with code 2. Library code raises it for bad input (files,
configs, checkpoints); programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message names the file, line and field and says what was expected."""

    exit_code = 2

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def __str__(self) -> str:
        if not self.details:
            return self.message
        shown = self.details[:50]
        more = len(self.details) - len(shown)
        lines = [self.message, *("  " + d for d in shown)]
        if more > 0:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)
