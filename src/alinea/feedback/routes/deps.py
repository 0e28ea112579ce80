"""Dependencies shared by the API and the pages: the database, who is calling, roles, CSRF, path parameters.

Aliases in the style of full-stack-fastapi-template: `DatabaseDep`, `CallerDep` (any signed-in user), `AdminDep`;
`ProjectId`/`ItemId` are path integers bounded to what the database columns hold (a larger number is a 422, not a
database error).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from alinea.feedback import crud, security
from alinea.feedback.db import Database
from alinea.feedback.errors import Forbidden, Unauthenticated
from alinea.feedback.security import Principal
from alinea.feedback.settings import FeedbackSettings

MAX_ID = 2_147_483_647
ProjectId = Annotated[int, Path(ge=1, le=MAX_ID, description="Project id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="Item id.")]
ChatId = Annotated[int, Path(ge=1, le=MAX_ID, description="Conversation id.")]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_UNSET = object()


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_settings(request: Request) -> FeedbackSettings:
    return request.app.state.settings


DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[FeedbackSettings, Depends(get_settings)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def find_principal(request: Request) -> Principal | None:
    """Who sent the request (API token first, then the session cookie), or None; cached on the request."""
    cached = getattr(request.state, "principal", _UNSET)
    if cached is not _UNSET:
        return cached
    database: Database = request.app.state.database
    principal = None
    token = bearer_token(request)
    cookie = request.cookies.get(security.SESSION_COOKIE)
    if token is not None:
        if len(token) <= 256:
            with database.read() as session:
                principal = crud.principal_from_token(session, token=token)
    elif cookie and len(cookie) <= 256:
        with database.read() as session:
            principal = crud.principal_from_cookie(session, cookie=cookie)
    request.state.principal = principal
    return principal


def check_csrf_header(request: Request, principal: Principal) -> None:
    """Cookie-authenticated requests that change data must carry the CSRF token in X-CSRF-Token."""
    if request.method in SAFE_METHODS or principal.via != "cookie":
        return
    secret = request.app.state.settings.secret_key
    if not security.csrf_valid(secret, principal.cookie, request.headers.get(security.CSRF_HEADER)):
        raise Forbidden("CSRF token missing or wrong: send the page's token in the X-CSRF-Token header")


def require_caller(request: Request) -> Principal:
    """Any signed-in, active user (401 otherwise); CSRF-checked when authenticated by cookie."""
    principal = find_principal(request)
    if principal is None:
        raise Unauthenticated("sign in first: send 'Authorization: Bearer <token>' or log in at /login")
    check_csrf_header(request, principal)
    return principal


def require_admin(request: Request) -> Principal:
    principal = require_caller(request)
    if not principal.is_admin:
        raise Forbidden("this needs the admin role")
    return principal


CallerDep = Annotated[Principal, Depends(require_caller)]
AdminDep = Annotated[Principal, Depends(require_admin)]
