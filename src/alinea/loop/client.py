"""`FeedbackClient`: the loop's one door into the feedback app (`alinea serve`), over its JSON API under /api/v1.

The loop never imports the app's modules (STYLE.md): people in the browser and the loop's programs use the same API.

Failures, and what the client does about them:
- the app unreachable (connection refused, reset, timed out) or answering 5xx (500, 502, 503 "database busy", 504):
  try again after `backoff * 2**attempt` seconds (capped at `max_backoff`), up to `retries` more times, then raise a
  `UserError` "feedback app at URL unreachable after N tries: ...";
- a 4xx answer is the caller's mistake (bad token, unknown project, invalid record): never retried, raised at once as
  an `ApiError` (a `UserError` with `status`) naming the endpoint and the server's `detail` and `errors`;
- nothing is recorded twice. Requests that are safe to repeat are simply sent again: reads, `lease` (the app hands
  the same item back until it is judged), `submit` (it carries an idempotency key: the app returns the first
  judgment to a retry), priorities and memberships (they set a state). Requests that create something are sent again
  only when the earlier try certainly did not get through (the connection was refused, or the app answered 5xx, which
  rolls its transaction back). When a try may or may not have been applied (a timeout or a dropped connection after
  the request was sent), the client looks before it repeats: `create_project` searches the project by name and
  `add_items` counts the project's items, so a lost answer never duplicates a project or a chunk of items.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from alinea.errors import UserError

API_PREFIX = "/api/v1"
RETRY_STATUSES = frozenset({500, 502, 503, 504})
"""Server-side failures worth another try; every other status >= 400 is raised at once."""
ITEMS_CHUNK = 500
"""Records per `POST /items` request (the app refuses bodies over 2 MB by default)."""
PRIORITIES_CHUNK = 5000


class ApiError(UserError):
    """The app refused a request (4xx): `status`, the `endpoint` ("POST /api/v1/...") and the server's `detail`."""

    def __init__(self, message: str, *, status: int, endpoint: str, detail: str,
                 details: list[str] | None = None) -> None:
        super().__init__(message, details=details)
        self.status = status
        self.endpoint = endpoint
        self.detail = detail


class _Borrowed(httpx.BaseTransport):
    """A transport lent to a second client (`as_user`): closing that client leaves the lender's transport open."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        pass


class _Unsure(Exception):
    """A request was sent but its answer was lost: it may or may not have been applied."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _describe(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _error_text(response: httpx.Response) -> tuple[str, list[str]]:
    """The server's `detail` and `errors` (our API's error shape), or the start of the body for anything else."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase, []
    if isinstance(body, dict):
        detail = body.get("detail")
        errors = body.get("errors") or []
        if not isinstance(detail, str):
            detail = json.dumps(detail)[:300] if detail is not None else response.reason_phrase
        return detail, [str(e) for e in errors] if isinstance(errors, list) else [str(errors)]
    return json.dumps(body)[:300], []


class FeedbackClient:
    """A signed-in caller of the feedback app's API: an admin (the loop) or an annotator (a simulated one).

    `base_url` is where the app listens (`http://127.0.0.1:8000`); `token` an API token (`alinea users create
    --token`, or `create_token`). Thread-safe: the simulated annotators share nothing but may each hold their own
    client (`as_user`). Use as a context manager, or call `close()`.
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 10, retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 10.0,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._transport = transport
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": "alinea-loop"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url + API_PREFIX, headers=headers, timeout=timeout,
                                  transport=transport)

    # -----------------------------------------------------------------------------------------------------------------
    # plumbing

    def as_user(self, token: str) -> FeedbackClient:
        """A client for the same app and settings, signed in with another token (e.g. an annotator's)."""
        return FeedbackClient(self.base_url, token, timeout=self.timeout, retries=self.retries,
                              backoff=self.backoff, max_backoff=self.max_backoff,
                              transport=None if self._transport is None else _Borrowed(self._transport),
                              sleep=self._sleep)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FeedbackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeedbackClient({self.base_url!r})"

    def _wait(self, attempt: int) -> None:
        self._sleep(min(self.max_backoff, self.backoff * (2 ** attempt)))

    def _request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                 repeatable: bool = True) -> httpx.Response:
        """Send a request, retrying server failures with exponential backoff (see the module docstring).

        `repeatable=False`: a try whose answer was lost after the request went out raises `_Unsure` instead of
        being repeated blindly; the caller looks at the server's state and decides.
        """
        endpoint = f"{method} {API_PREFIX}{path}"
        tries = self.retries + 1
        last = ""
        for attempt in range(tries):
            if attempt:
                self._wait(attempt - 1)
            try:
                response = self._http.request(method, path, json=body, params=params)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
                last = _describe(err)  # never reached the server: always safe to repeat
                continue
            except httpx.TransportError as err:
                if not repeatable:
                    raise _Unsure(err) from err
                last = _describe(err)
                continue
            if response.status_code in RETRY_STATUSES:
                detail, _ = _error_text(response)
                last = f"{endpoint} answered {response.status_code}: {detail}"
                continue
            if response.status_code >= 400:
                detail, errors = _error_text(response)
                raise ApiError(f"feedback app at {self.base_url}: {endpoint} answered {response.status_code}: "
                               f"{detail}", status=response.status_code, endpoint=endpoint, detail=detail,
                               details=errors)
            return response
        raise UserError(f"feedback app at {self.base_url} unreachable after {tries} tries: {last}. Is `alinea "
                        f"serve` running there? Nothing was lost: run the same command again once it answers.")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -----------------------------------------------------------------------------------------------------------------
    # meta, users, tokens

    def health(self) -> dict[str, Any]:
        """{"ok": true, "backend": "sqlite"|"postgresql"} once the app and its database answer."""
        return self._json("GET", "/health")

    def me(self) -> dict[str, Any]:
        """Who the token belongs to: {id, username, role, locale}."""
        return self._json("GET", "/me")

    def list_users(self) -> list[dict[str, Any]]:
        return self._json("GET", "/users")

    def create_user(self, username: str, password: str, role: str = "annotator", *,
                    display_name: str = "") -> dict[str, Any]:
        """A new user (admin only); a name that is taken is a UserError (409)."""
        body = {"username": username, "password": password, "role": role, "display_name": display_name}
        try:
            return self._json("POST", "/users", body=body, repeatable=False)
        except _Unsure:
            pass
        # The first try may have created the user: look before creating again.
        for user in self.list_users():
            if user["username"] == username:
                return user
        return self._json("POST", "/users", body=body)

    def create_token(self, username: str, password: str, *, name: str = "alinea loop") -> str:
        """Trade a username and password for a new API token (shown once)."""
        return self._json("POST", "/auth/token", body={"username": username, "password": password,
                                                       "name": name})["token"]

    def user_token(self, username: str) -> str:
        """A new API token for `username`, made by an admin (no password needed): simulated annotators use it."""
        return self._json("POST", f"/users/{username}/tokens")["token"]

    # -----------------------------------------------------------------------------------------------------------------
    # projects

    def list_projects(self) -> list[dict[str, Any]]:
        """The projects the caller may see, with their progress."""
        return self._json("GET", "/projects")

    def get_project(self, project_id: int) -> dict[str, Any]:
        return self._json("GET", f"/projects/{project_id}")

    def create_project(self, name: str, task_type: str = "pairwise", *, overlap: int = 3, gold_rate: float = 0.0,
                       guidelines: str = "", description: str = "", members: Sequence[str] = (),
                       lease_seconds: int = 900, aspects: Sequence[str] | None = None,
                       flags: Sequence[str] | None = None, scale: tuple[int, int] | None = None) -> dict[str, Any]:
        """A new project (admin only); returns the project as the API shows it (`id`, `name`, `overlap`, ...).

        Give each project a name of its own (e.g. `round-2-<run id>`): after a lost answer the client finds the
        project it may have created by that name instead of creating a second one.
        """
        body: dict[str, Any] = {"name": name, "task_type": task_type, "overlap": overlap, "gold_rate": gold_rate,
                                "lease_seconds": lease_seconds, "guidelines": guidelines,
                                "description": description, "members": list(members)}
        if aspects is not None:
            body["aspects"] = list(aspects)
        if flags is not None:
            body["flags"] = list(flags)
        if scale is not None:
            body["scale"] = list(scale)
        try:
            return self._json("POST", "/projects", body=body, repeatable=False)
        except _Unsure:
            pass
        for project in self.list_projects():
            if project["name"] == name:
                return project
        return self._json("POST", "/projects", body=body)

    def add_members(self, project_id: int, usernames: Sequence[str]) -> list[dict[str, Any]]:
        """Assign users to a project (idempotent); returns every member."""
        return self._json("POST", f"/projects/{project_id}/members", body={"usernames": list(usernames)})

    def progress(self, project_id: int) -> dict[str, Any]:
        """{items, gold_items, complete_items, judgments, regular_judgments, wanted_judgments, progress}."""
        return self.get_project(project_id)["progress"]

    # -----------------------------------------------------------------------------------------------------------------
    # items

    def add_items(self, project_id: int, records: Sequence[dict[str, Any]], *, gold: bool = False,
                  priorities: Sequence[float] | None = None, metas: Sequence[dict[str, Any]] | None = None,
                  chunk_size: int = ITEMS_CHUNK) -> list[int]:
        """Import alinea records (JSON objects, see docs/data.md) as items, in chunks; returns the item ids in the
        order of `records`. `priorities` (higher first) and `metas` (admin-only notes), when given, are per record.

        A chunk whose answer was lost is not sent twice: the client counts the project's items and, when the chunk
        landed, reads its ids back. This assumes no one else adds items to the project meanwhile.
        """
        for name, values in (("priorities", priorities), ("metas", metas)):
            if values is not None and len(values) != len(records):
                raise ValueError(f"{name}: one per record ({len(records)}), found {len(values)}")
        ids: list[int] = []
        known: int | None = None  # items in the project before the next chunk, once we had to count them
        for start in range(0, len(records), chunk_size):
            items = []
            for k in range(start, min(start + chunk_size, len(records))):
                item: dict[str, Any] = {"record": records[k]}
                if priorities is not None:
                    item["priority"] = float(priorities[k])
                if metas is not None:
                    item["meta"] = metas[k]
                items.append(item)
            if known is None:
                known = self._count_items(project_id)
            ids.extend(self._add_chunk(project_id, items, gold=gold, before=known))
            known += len(items)
        return ids

    def _count_items(self, project_id: int) -> int:
        progress = self.progress(project_id)
        return int(progress["items"]) + int(progress["gold_items"])

    def _add_chunk(self, project_id: int, items: list[dict[str, Any]], *, gold: bool, before: int) -> list[int]:
        body = {"items": items, "gold": gold}
        for attempt in range(self.retries + 1):
            if attempt:
                self._wait(attempt - 1)
            try:
                return self._json("POST", f"/projects/{project_id}/items", body=body, repeatable=False)["ids"]
            except _Unsure:
                pass
            now = self._count_items(project_id)  # retries (with backoff) until the app answers again
            if now == before + len(items):
                return [row["id"] for row in self.list_items(project_id, offset=before, limit=len(items))]
            if now != before:
                raise UserError(f"feedback app at {self.base_url}: project {project_id} holds {now} items, expected "
                                f"{before} or {before + len(items)}; someone else is adding items at the same time. "
                                "Check the project before importing again.")
        raise UserError(f"feedback app at {self.base_url}: adding items to project {project_id} kept failing after "
                        f"{self.retries + 1} tries; nothing of the last chunk was recorded.")

    def list_items(self, project_id: int, *, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Items in id order, with admin fields (`n_done`, `priority`, `meta`, ...); at most 1000 a call."""
        return self._json("GET", f"/projects/{project_id}/items", params={"offset": offset, "limit": limit})

    def set_priorities(self, project_id: int, priorities: dict[int, float] | None = None, *,
                       by_external_id: dict[str, float] | None = None) -> int:
        """Set item priorities (higher is leased first) by item id and/or by the record id; returns how many
        changed. Setting a value is safe to repeat."""
        entries = [{"item_id": int(k), "priority": float(v)} for k, v in (priorities or {}).items()]
        entries += [{"external_id": str(k), "priority": float(v)} for k, v in (by_external_id or {}).items()]
        changed = 0
        for start in range(0, len(entries), PRIORITIES_CHUNK):
            chunk = entries[start:start + PRIORITIES_CHUNK]
            changed += self._json("POST", f"/projects/{project_id}/priorities", body={"priorities": chunk})["changed"]
        return changed

    # -----------------------------------------------------------------------------------------------------------------
    # annotating

    def lease(self, project_id: int) -> dict[str, Any] | None:
        """The caller's next item as an annotator sees it ({item_id, messages, responses in shown order, ...}), the
        one they already hold, or None when nothing is left for them. Safe to repeat."""
        return self._json("POST", f"/projects/{project_id}/lease")

    def submit(self, project_id: int, item_id: int, answer: dict[str, Any], *, idempotency_key: str | None = None,
               time_spent_ms: int | None = None, lease_next: bool = False) -> dict[str, Any]:
        """Record a judgment on a leased item, in screen positions (pairwise: {choice: left|right|tie, strength,
        both_bad}). Every try carries the same `idempotency_key` (a fresh one when None), so a retry returns the
        first judgment (`replayed` true) and never records a second. With `lease_next`, the answer's `next` holds
        the caller's next item (or None)."""
        body: dict[str, Any] = {"answer": answer, "idempotency_key": idempotency_key or uuid.uuid4().hex,
                                "lease_next": lease_next}
        if time_spent_ms is not None:
            body["time_spent_ms"] = int(time_spent_ms)
        return self._json("POST", f"/projects/{project_id}/items/{item_id}/judgments", body=body)

    def skip(self, project_id: int, item_id: int, reason: str) -> None:
        """Give a leased item back; it will not be offered to the caller again."""
        self._json("POST", f"/projects/{project_id}/items/{item_id}/skip", body={"reason": reason})

    # -----------------------------------------------------------------------------------------------------------------
    # quality and export

    def quality(self, project_id: int) -> dict[str, Any]:
        """Progress, per-annotator figures (throughput, gold accuracy, position bias) and agreement (kappa, alpha)."""
        return self._json("GET", f"/projects/{project_id}/quality")

    def export(self, project_id: int, format: str = "records", *, method: str = "majority") -> list[dict[str, Any]]:
        """The project's judgments as a list of JSON objects: `records` (alinea records for the trainers),
        `canonical` (every judgment with annotator, shown order, time), `trl` or `aggregate` (`method` majority or
        weighted)."""
        response = self._request("GET", f"/projects/{project_id}/export", params={"format": format,
                                                                                  "method": method})
        rows = []
        for number, line in enumerate(response.text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"feedback app at {self.base_url}: export of project {project_id} line {number}: "
                                f"not JSON ({err.msg})") from None
        return rows
