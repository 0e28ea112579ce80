"""Alembic migrations of the feedback app's database, configured in code by `alinea.feedback.db`."""
