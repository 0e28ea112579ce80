"""Dependencies shared by the API and the pages: the database, who is calling, roles, CSRF, path parameters.

Aliases in the style of full-stack-fastapi-template: `DatabaseDep`, `CallerDep` (any signed-in user), `AdminDep`;
`ProjectId`/`ItemId` are path integers bounded to what the database columns hold (a larger number is a 422, not a
database error).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
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
T = TypeVar("T")
_UNSET = object()


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_settings(request: Request) -> FeedbackSettings:
    return request.app.state.settings


DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[FeedbackSettings, Depends(get_settings)]


def bearer_token(request: Request) -> str | None:
    return bearer_of(request.headers.get("authorization", ""))


def bearer_of(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class TokenCache:
    """API token -> principal for a few seconds, so that a program's stream of requests does not look its token up
    every time. A user disabled through this process is dropped at once (`clear`); other worker processes notice
    within `ttl_s` seconds. Browser sessions are not cached (logging out must end them at once)."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._spread = random.Random()  # its own generator: the process-wide one may be seeded for reproducible runs

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(security.digest(token))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, token: str, principal: Principal) -> None:
        """Trust `principal` for `token` for between 3/4 of `ttl_s` and `ttl_s`: the spread keeps the tokens that
        clients started using together (a team starting at nine, a load test) from all falling due at one instant,
        which made every one of their next requests look its token up at once (a stall of ~0.3 s under load)."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[security.digest(token)] = (time.monotonic() + self.ttl_s * (1 - 0.25 * self._spread.random()),
                                                 principal)

    def clear(self) -> None:
        self._entries.clear()


def check_token(state, token: str) -> Principal | None:
    """Look an API token up in the database (blocking) and cache what it gives: the token's principal, or None."""
    with state.database.read() as session:
        principal = crud.principal_of_token(session.connection(), token=token)
    if principal is not None:
        state.token_cache.put(token, principal)
    return principal


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
            principal = request.app.state.token_cache.get(token) or check_token(request.app.state, token)
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


async def run_db(request: Request, work: Callable[[], T]) -> T:
    """Run blocking database work from an async route (see `run_db_with`)."""
    return await run_db_with(request.app.state, work)


async def run_db_with(state, work: Callable[[], T]) -> T:
    """Run blocking database work for the app whose `app.state` is `state`. SQLite takes one writer at a time
    anyway, so its short transactions run right here on the event loop (no thread hand-off), unless another thread
    holds the write lock (a long import, say): then they wait in a thread, and the event loop keeps serving.
    PostgreSQL's run in a thread pool, where concurrent transactions overlap (and their commits share WAL
    flushes)."""
    database = state.database
    if database.backend == "sqlite":
        return work() if not database.writer_busy() else await anyio.to_thread.run_sync(work)
    # A plain thread pool, as many threads as pooled connections (none waits for a connection, none sits idle):
    # asyncio's run_in_executor costs about half the CPU of anyio's to_thread with a capacity limiter, ~9% of the
    # server's CPU per judgment. Shut down with the app (see app.py).
    executor = getattr(state, "db_executor", None)
    if executor is None:
        executor = state.db_executor = ThreadPoolExecutor(state.settings.pool_size, thread_name_prefix="alinea-db")
    return await asyncio.get_running_loop().run_in_executor(executor, work)


async def require_caller(request: Request) -> Principal:
    """Any signed-in, active user (401 otherwise); CSRF-checked when authenticated by cookie."""
    token = bearer_token(request)
    principal = request.app.state.token_cache.get(token) if token and len(token) <= 256 else None
    if principal is None:
        principal = await run_db(request, lambda: find_principal(request))
    if principal is None:
        raise Unauthenticated("sign in first: send 'Authorization: Bearer <token>' or log in at /login")
    request.state.principal = principal
    check_csrf_header(request, principal)
    return principal


async def require_admin(request: Request) -> Principal:
    principal = await require_caller(request)
    if not principal.is_admin:
        raise Forbidden("this needs the admin role")
    return principal


CallerDep = Annotated[Principal, Depends(require_caller)]
AdminDep = Annotated[Principal, Depends(require_admin)]
