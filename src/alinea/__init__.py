"""alinea: the whole RLHF loop in one project."""

__version__ = "0.1.0"
