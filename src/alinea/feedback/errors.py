"""Errors of the feedback app, each with the HTTP status it becomes.

They are `UserError`s, so the CLI (`alinea users create`, `alinea feedback import`) prints them as one paragraph
and exits with code 2, and the API answers `{"detail": message, "errors": [details]}` with `status`.
"""

from __future__ import annotations

from alinea.errors import UserError


class FeedbackError(UserError):
    status = 400


class Invalid(FeedbackError):
    """The request is well-formed but a value breaks a rule; details list `where: field: expected` lines."""

    status = 422


class NotFound(FeedbackError):
    status = 404


class Forbidden(FeedbackError):
    status = 403


class Conflict(FeedbackError):
    """The request clashes with the state: a name taken, an item already judged, a lease that expired."""

    status = 409


class Unauthenticated(FeedbackError):
    status = 401


def database_error_answer(err: Exception) -> tuple[int, str] | None:
    """(status, message) for a database error met while serving a request, logged; None for any other error.

    A value the database cannot hold is the request's fault (422); a unique constraint broken by data saved at the
    same moment is a conflict (409); a busy or unreachable database, or no pooled connection free, is 503.
    """
    import logging

    from sqlalchemy.exc import DataError, IntegrityError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    log = logging.getLogger("alinea.feedback")
    if isinstance(err, DataError):
        log.warning("refused a value the database cannot store: %s", err.orig)
        return 422, "a value in the request cannot be stored (out of range or malformed)"
    if isinstance(err, IntegrityError):
        log.warning("integrity conflict: %s", err.orig)
        return 409, "the request conflicts with data saved at the same moment; try again"
    if isinstance(err, OperationalError):
        log.error("database unavailable: %s", err.orig)
        return 503, "the database is busy or unreachable; try again shortly"
    if isinstance(err, PoolTimeout):
        log.error("no database connection free: %s", err)
        return 503, "the server is overloaded; try again shortly"
    return None
