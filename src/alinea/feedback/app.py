"""`create_app(settings)`: the FastAPI app of `alinea serve`, with its database, pages, API and safety nets.

Safety nets, in the order a request meets them:
1. `BodyLimit` refuses bodies over `settings.max_body_bytes` with 413, by Content-Length or while streaming.
2. Security headers on every response: a Content-Security-Policy that allows only our own scripts and styles
   (no inline script runs even if some text escaped escaping), nosniff, no framing, same-origin referrers.
3. Errors: `FeedbackError`s become their status (JSON under /api, a page or a redirect to /login elsewhere);
   database errors caused by a value the database cannot hold become 422; a busy or unreachable database 503.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

import alinea
from alinea.errors import UserError
from alinea.feedback import db
from alinea.feedback.chat import ChatSampler
from alinea.feedback.db import Database
from alinea.feedback.errors import FeedbackError, Unauthenticated, database_error_answer
from alinea.feedback.routes import api, pages
from alinea.feedback.routes.deps import TokenCache
from alinea.feedback.routes.fast import FastJudgments
from alinea.feedback.settings import FeedbackSettings

HERE = Path(__file__).parent
API_PREFIX = "/api/v1"
log = logging.getLogger("alinea.feedback")

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class _TooLarge(StarletteHTTPException):
    """Raised while a body is being read: an HTTPException, so that body parsers pass it on as a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`; adds the security headers to every response."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await self._refuse(send, 400, "Content-Length is not a number")
                return
            if too_large:
                await self._refuse(send, 413, f"the request body is larger than {self.max_bytes} bytes")
                return
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _TooLarge:
            if not started:
                await self._refuse(send, 413, f"the request body is larger than {self.max_bytes} bytes")

    async def _refuse(self, send, status: int, detail: str) -> None:
        body = JSONResponse({"detail": detail, "errors": []}, status_code=status).body
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close"), *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def _encodable(text: str) -> str:
    """`text` with lone UTF-16 surrogates (which JSON escapes can carry into a field name) replaced by U+FFFD, so
    that an error message quoting the request can be encoded as UTF-8."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _error_response(request: Request, status: int, detail: str, errors: list[str] | None = None) -> Response:
    detail, errors = _encodable(detail), [_encodable(error) for error in errors or []]
    if _is_api(request):
        return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status)
    if status == 401 and request.method in ("GET", "HEAD"):
        return RedirectResponse(pages.login_url(request), status_code=303)
    return pages.error_page(request, status=status, detail=detail, errors=errors or [])


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FeedbackError)
    async def feedback_error(request: Request, err: FeedbackError) -> Response:
        status = 401 if isinstance(err, Unauthenticated) else err.status
        return _error_response(request, status, err.message, err.details)

    @app.exception_handler(UserError)
    async def user_error(request: Request, err: UserError) -> Response:
        """A library's complaint about input (a file that is not gzip, ...) that no route turned into its own."""
        return _error_response(request, 422, err.message, err.details)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> Response:
        errors = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ()))
            errors.append(_encodable(f"{where}: {e.get('msg', 'invalid')}"))
        if _is_api(request):
            return JSONResponse({"detail": "the request does not match the API", "errors": errors},
                                status_code=422)
        return pages.error_page(request, status=422, detail="the form is incomplete or has a wrong value",
                                errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        return _error_response(request, err.status_code, str(err.detail))

    @app.exception_handler(DataError)
    @app.exception_handler(IntegrityError)
    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_error(request: Request, err: Exception) -> Response:
        status, detail = database_error_answer(err)
        return _error_response(request, status, detail)


def create_app(settings: FeedbackSettings | None = None, *, chat_sampler: ChatSampler | None = None) -> FastAPI:
    """The feedback app for `settings` (migrated on start unless settings.migrate is False).

    `chat_sampler(messages, n, seed) -> list[str]` answers chat tasks; without it, chat projects say that no model
    is loaded (503).
    """
    settings = settings or FeedbackSettings()
    database = Database.from_settings(settings, background_checkpoints=True)
    if settings.migrate:
        db.upgrade(database.engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        executor = getattr(app.state, "db_executor", None)  # routes.deps.run_db_with's threads (PostgreSQL)
        if executor is not None:
            executor.shutdown(wait=True)
        database.dispose()

    app = FastAPI(
        title="alinea feedback",
        version=alinea.__version__,
        description="Human feedback for RLHF: compare, rank, rate, write and chat; assign, check quality, export.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN; the app must work offline. The spec is at openapi_url.
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.chat_sampler = chat_sampler
    app.state.token_cache = TokenCache(ttl_s=settings.token_cache_seconds)
    app.state.templates = pages.make_templates()
    _install_error_handlers(app)
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(pages.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(FastJudgments, state=app.state, prefix=API_PREFIX)  # inside BodyLimit: added before it
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


SETTINGS_ENV = "ALINEA_FEEDBACK_SETTINGS"
"""Environment variable holding the settings as JSON, for `app_from_env` in uvicorn worker processes."""


def app_from_env() -> FastAPI:
    """The app for the settings in $ALINEA_FEEDBACK_SETTINGS (uvicorn's factory in each worker process)."""
    values = json.loads(os.environ[SETTINGS_ENV])
    return create_app(FeedbackSettings(**values))
