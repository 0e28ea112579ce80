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
