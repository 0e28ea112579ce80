"""The fast lane of the judgments route: a thin ASGI handler in front of FastAPI for the common request.

`POST /api/v1/projects/{project_id}/items/{item_id}/judgments` is the route annotators and programs hit once per
judgment. Through FastAPI its routing, dependency solving and pydantic validation cost about as much CPU as the
database work itself (py-spy, docs/feedback.md "Performance"). `FastJudgments` answers the requests that need none
of that machinery, and hands every other request to FastAPI untouched:

- taken here: an API token (`Authorization: Bearer`), `Content-Type: application/json`, and a body whose fields
  have exactly the JSON types of `schemas.JudgmentCreate` and pass its checks (`_body_fields`). The token is
  trusted from the cache that FastAPI's `require_caller` reads too, or looked up in the database by `api.judge`
  in the transaction that then records the judgment;
- handed to FastAPI: anything else (no token, a token the database does not know or that is revoked or whose user
  is disabled, a session cookie with its CSRF check, a body that is not JSON, a number sent as a string, an
  unknown field, ...). FastAPI then answers exactly as it always did, 422 and all, so the fast lane cannot change
  an answer: it only skips work for bodies FastAPI would accept as they are.

Both lanes run the same work (`api.judge`) and build the same JSON; the route stays in the OpenAPI spec. It sits
inside `BodyLimit` (413 for large bodies, security headers on every answer) and maps errors as the app's handlers
do (`FeedbackError` -> its status, database errors -> `errors.database_error_answer`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from alinea.errors import UserError
from alinea.feedback.errors import FeedbackError, Unauthenticated, database_error_answer
from alinea.feedback.routes import api
from alinea.feedback.routes.deps import MAX_ID, bearer_of, run_db_with
from alinea.feedback.schemas import MAX_INT, json_safe

_FIELDS = frozenset(("answer", "idempotency_key", "time_spent_ms", "guideline_version", "lease_next"))
_JSON_TYPES = (b"application/json", b"application/json; charset=utf-8")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A JSON escape of a UTF-16 surrogate: a lone one becomes a string that pydantic refuses (422) and that no
database driver can encode, so such bodies go to FastAPI (pairs that make one character do too, harmlessly)."""


def _optional_int(body: dict[str, Any], name: str, low: int) -> tuple[bool, int | None]:
    value = body.get(name)
    if value is None:
        return True, None
    return type(value) is int and low <= value <= MAX_INT, value


def _body_fields(raw: bytes) -> dict[str, Any] | None:
    """The fields of a JudgmentCreate body when they are exactly what FastAPI would accept without converting
    anything; None otherwise (FastAPI then validates the body and words any error)."""
    if _SURROGATE_ESCAPE.search(raw):
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if type(body) is not dict or not body.keys() <= _FIELDS:
        return None
    answer, key, lease_next = body.get("answer"), body.get("idempotency_key"), body.get("lease_next", False)
    if type(answer) is not dict or type(key) is not str or not 1 <= len(key) <= 128 or "\x00" in key \
            or type(lease_next) is not bool:
        return None
    time_ok, time_spent_ms = _optional_int(body, "time_spent_ms", 0)
    version_ok, guideline_version = _optional_int(body, "guideline_version", 1)
    if not (time_ok and version_ok):
        return None
    try:
        json_safe(answer)
    except (ValueError, RecursionError):
        return None
    return {"answer": answer, "idempotency_key": key, "time_spent_ms": time_spent_ms,
            "guideline_version": guideline_version, "lease_next": lease_next}


class FastJudgments:
    """ASGI middleware: answers the common judgments request itself (see the module docstring). `state` is the
    app's `app.state` (database, settings, token cache)."""

    def __init__(self, app, *, state, prefix: str) -> None:
        self.app = app
        self.state = state
        self.path = re.compile(re.escape(prefix) + r"/projects/([1-9][0-9]{0,9})/items/([1-9][0-9]{0,9})/judgments")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = self.path.fullmatch(scope["path"])
        token = self._token(scope) if match else None
        if token is None:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        project_id, item_id = int(match[1]), int(match[2])
        fields = _body_fields(raw) if project_id <= MAX_ID and item_id <= MAX_ID else None
        if fields is None:
            await self.app(scope, _replay(raw, receive), send)
            return
        state = self.state
        principal = state.token_cache.get(token)

        def work() -> tuple[int, dict[str, Any]] | None:
            # A token not checked lately is looked up by `judge`, in the judgment's own transaction, instead of
            # sending the request through FastAPI's lane for it. Unknown, revoked or disabled: None, and FastAPI
            # answers (401, worded as always).
            return api.judge(state.database, seed=state.settings.seed, caller=principal, project_id=project_id,
                             item_id=item_id, token=token, token_cache=state.token_cache, **fields)

        try:
            done = await run_db_with(state, work)
        except UserError as err:  # as the app's handlers: FeedbackErrors with their status, other UserErrors 422
            status = 401 if isinstance(err, Unauthenticated) else err.status if isinstance(err, FeedbackError) else 422
            done = status, {"detail": err.message, "errors": err.details or []}
        except Exception as err:
            mapped = database_error_answer(err)
            if mapped is None:
                raise
            done = mapped[0], {"detail": mapped[1], "errors": []}
        if done is None:
            await self.app(scope, _replay(raw, receive), send)
            return
        status, answer = done
        body = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    def _token(self, scope) -> str | None:
        """The request's API token, when it carries one (of at most 256 characters) and a JSON body."""
        authorization = content_type = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's request.headers.get
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-type" and content_type is None:
                content_type = value
        if authorization is None or content_type is None or content_type.lower() not in _JSON_TYPES:
            return None
        token = bearer_of(authorization.decode("latin-1"))
        return token if token is not None and len(token) <= 256 else None


def _replay(body: bytes, receive):
    """A `receive` that gives the body already read once more, then defers to the server's."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed
