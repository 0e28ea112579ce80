"""Server-rendered pages (Jinja2, autoescaped): login, projects, the task page of each type, chat, admin.

Every POST form carries a CSRF token (`csrf_form` checks it: 403 without); pages need a signed-in user (a GET
without one is sent to /login). Forms post plain HTML, so every task works without JavaScript; static/app.js adds
the keyboard shortcuts, drag-and-drop ranking and the time measurement.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select
from starlette.datastructures import FormData, UploadFile

from alinea.feedback import assignment, crud, i18n, quality, security, tasks
from alinea.feedback.errors import Forbidden, Invalid, Unauthenticated
from alinea.feedback.models import ROLES, Item, Project
from alinea.feedback.routes.deps import DatabaseDep, ItemId, ProjectId, SettingsDep, find_principal
from alinea.feedback.security import Principal

router = APIRouter()
SKIP_REASONS = ("skip_unclear", "skip_language", "skip_harmful", "skip_expertise", "skip_other")


# ---------------------------------------------------------------------------------------------------------------------
# rendering


def _markdown(text: str) -> Markup:
    """Guidelines markdown as HTML; raw HTML in the source is escaped, javascript: links are dropped."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # markdown-it-py comes with rich; if it is absent, show the text as it is
        return Markup("<pre>") + text + Markup("</pre>")
    return Markup(MarkdownIt("commonmark", {"html": False}).render(text))


def make_templates() -> Jinja2Templates:
    from alinea.feedback.app import HERE

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["markdown"] = _markdown
    return Jinja2Templates(env=env)


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never //evil.example or https://...)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _csrf_cookie(request: Request) -> tuple[str, str | None]:
    """(cookie value the CSRF token is bound to, a new pre-session cookie to set or None)."""
    session_cookie = request.cookies.get(security.SESSION_COOKIE)
    principal = find_principal(request)
    if principal is not None and principal.via == "cookie" and session_cookie:
        return session_cookie, None
    pre = request.cookies.get(security.PRE_SESSION_COOKIE)
    if pre and 20 <= len(pre) <= 128:
        return pre, None
    pre = security.new_token()
    return pre, pre


def render(request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200) -> Response:
    settings = request.app.state.settings
    principal = find_principal(request)
    language = i18n.negotiate(request.headers.get("accept-language"),
                              user_choice=principal.locale if principal else None, default=settings.default_locale)
    bound, new_pre = _csrf_cookie(request)
    full = {
        "request": request, "user": principal, "t": i18n.translator(language), "lang": language,
        "languages": i18n.languages(), "csrf": security.csrf_token(settings.secret_key, bound),
        "csrf_field": security.CSRF_FIELD, **(context or {}),
    }
    response = request.app.state.templates.TemplateResponse(request, name, full, status_code=status)
    response.headers["cache-control"] = "no-store"
    if new_pre:
        response.set_cookie(security.PRE_SESSION_COOKIE, new_pre, httponly=True, samesite="lax",
                            secure=settings.cookie_secure, path="/")
    return response


def error_page(request: Request, *, status: int, detail: str, errors: list[str]) -> Response:
    title_key = f"error_{status}" if f"error_{status}" in i18n.catalogs()[i18n.FALLBACK] else "error_generic"
    return render(request, "error.html", {"status": status, "detail": detail, "errors": errors,
                                          "title_key": title_key}, status=status)


# ---------------------------------------------------------------------------------------------------------------------
# dependencies


def page_user(request: Request) -> Principal:
    principal = find_principal(request)
    if principal is None:
        raise Unauthenticated("sign in first")
    return principal


def page_admin(request: Request) -> Principal:
    principal = page_user(request)
    if not principal.is_admin:
        raise Forbidden("this page is for admins")
    return principal


async def csrf_form(request: Request) -> FormData:
    """The posted form, once its CSRF token is checked against the session (or pre-session) cookie: 403 if not."""
    form = await request.form(max_files=2, max_fields=200)
    secret = request.app.state.settings.secret_key
    token = form.get(security.CSRF_FIELD)
    token = token if isinstance(token, str) else None
    cookies = [request.cookies.get(security.SESSION_COOKIE), request.cookies.get(security.PRE_SESSION_COOKIE)]
    if not any(security.csrf_valid(secret, cookie, token) for cookie in cookies if cookie):
        raise Forbidden("the form's security token is missing or expired: reload the page and try again")
    return form


UserDep = Annotated[Principal, Depends(page_user)]
AdminPageDep = Annotated[Principal, Depends(page_admin)]
FormDep = Annotated[FormData, Depends(csrf_form)]


def _text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    if not isinstance(value, str):
        raise Invalid(f"{name}: text expected")
    if "\x00" in value:
        raise Invalid(f"{name}: must not contain NUL characters")
    return value.replace("\r\n", "\n")  # browsers send a text box's line breaks as CRLF


def _int(form: FormData, name: str, default: int | None = None) -> int:
    raw = _text(form, name, "" if default is None else str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"{name}: a whole number, found {raw[:20]!r}") from None
    if abs(value) > 2_000_000_000:
        raise Invalid(f"{name}: out of range")
    return value


def _float(form: FormData, name: str, default: float) -> float:
    raw = _text(form, name, str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        raise Invalid(f"{name}: a number, found {raw[:20]!r}") from None
    if value != value or abs(value) > 1e12:
        raise Invalid(f"{name}: a finite number")
    return value


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# ---------------------------------------------------------------------------------------------------------------------
# login, logout, language


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": _safe_next(next)})


@router.post("/login")
def login(request: Request, database: DatabaseDep, settings: SettingsDep, form: FormDep) -> Response:
    username, password = _text(form, "username")[:64], _text(form, "password")[:1024]
    with database.write() as session:
        user = crud.authenticate_password(session, username=username, password=password)
        if user is None:
            return render(request, "login.html", {"next": _safe_next(_text(form, "next", "/")), "failed": True,
                                                  "username": username}, status=401)
        cookie = crud.create_web_session(session, user_id=user.id, hours=settings.session_hours)
    response = _redirect(_safe_next(_text(form, "next", "/")))
    response.set_cookie(security.SESSION_COOKIE, cookie, max_age=int(settings.session_hours * 3600), httponly=True,
                        samesite="lax", secure=settings.cookie_secure, path="/")
    response.delete_cookie(security.PRE_SESSION_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request, database: DatabaseDep, form: FormDep) -> Response:
    cookie = request.cookies.get(security.SESSION_COOKIE)
    if cookie:
        with database.write() as session:
            crud.end_web_session(session, cookie=cookie)
    response = _redirect("/login")
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response


@router.post("/settings/language")
def set_language(request: Request, user: UserDep, database: DatabaseDep, form: FormDep) -> Response:
    choice = _text(form, "language")
    if choice not in i18n.languages() and choice != "":
        raise Invalid(f"language: one of {', '.join(i18n.languages())}")
    with database.write() as session:
        crud.set_user_locale(session, user_id=user.user_id, locale=choice or None)
    return _redirect(_safe_next(_text(form, "next", "/")))


# ---------------------------------------------------------------------------------------------------------------------
# annotators


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    with database.read() as session:
        projects = [(p, crud.project_progress(session, project=p))
                    for p in crud.visible_projects(session, principal=user)]
    return render(request, "projects.html", {"projects": projects})


def _task_context(session, project: Project, lease: assignment.Lease | None) -> dict[str, Any]:
    guideline = crud.current_guideline(session, project_id=project.id)
    return {
        "project": project, "lease": lease, "guideline": guideline, "idempotency_key": secrets.token_hex(16),
        "strengths": tasks.STRENGTH_NAMES, "skip_reasons": SKIP_REASONS,
        "scale": list(range(project.scale_min, project.scale_max + 1)),
    }


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def task_page(request: Request, project_id: ProjectId, user: UserDep, database: DatabaseDep,
              settings: SettingsDep) -> Response:
    """The annotator's current item (leased now if they hold none), or a page saying nothing is left."""
    with database.write() as session:
        rules = assignment.load_rules(session.connection(), project_id=project_id, user_id=user.user_id,
                                      role=user.role)
        project = crud.get_project(session, project_id=project_id)
        lease = None
        if project.task_type != "chat":
            lease = assignment.lease_next(session.connection(), rules=rules, user_id=user.user_id,
                                          seed=settings.seed)
        context = _task_context(session, project, lease)
    return render(request, "chat.html" if project.task_type == "chat" else "task.html", context)


def answer_from_form(project: Project, form: FormData, n_responses: int) -> dict[str, Any]:
    """The answer a task form posts, in the API's shape (screen positions); checked later by tasks.py."""
    kind = project.task_type
    if kind == "pairwise":
        choice = _text(form, "choice")
        answer: dict[str, Any] = {"choice": choice, "both_bad": form.get("both_bad") == "on"}
        if choice != "tie":
            answer["strength"] = _int(form, "strength", 2)
        return answer
    if kind == "ranking":
        return {"ranks": [_int(form, f"rank_{k}") for k in range(n_responses)],
                "none_acceptable": form.get("none_acceptable") == "on"}
    if kind == "rating":
        return {"ratings": {a: _int(form, f"rating_{a}") for a in project.aspects},
                "flags": [f for f in project.flags if form.get(f"flag_{f}") == "on"],
                "comment": _text(form, "comment")}
    if kind == "thumbs":
        return {"thumb": _text(form, "thumb"), "comment": _text(form, "comment")}
    if kind == "demonstration":
        turns = []
        for k in range(64):
            content = _text(form, f"turn_{k}").strip()
            if not content:
                break
            turns.append({"role": "assistant" if k % 2 == 0 else "user", "content": content})
        if turns and turns[-1]["role"] == "user":
            turns.pop()  # an unanswered last user turn is dropped (the page adds turns in pairs)
        return {"turns": turns}
    raise Invalid(f"{kind} tasks have no form")


@router.post("/projects/{project_id}/items/{item_id}/judge")
def judge(request: Request, project_id: ProjectId, item_id: ItemId, user: UserDep, database: DatabaseDep,
          settings: SettingsDep, form: FormDep) -> Response:
    with database.write() as session:
        rules = assignment.load_rules(session.connection(), project_id=project_id, user_id=user.user_id,
                                      role=user.role)
        project = crud.get_project(session, project_id=project_id)
        responses = session.scalar(select(Item.responses).where(Item.id == item_id, Item.project_id == project_id))
        elapsed = _int(form, "time_spent_ms") if _text(form, "time_spent_ms").strip() else None
        version = _int(form, "guideline_version") if _text(form, "guideline_version").strip() else None
        try:  # submit checks everything before it writes: after an Invalid the transaction is untouched
            assignment.submit(session.connection(), rules=rules, user_id=user.user_id, item_id=item_id,
                              answer=answer_from_form(project, form, len(responses or [])),
                              idempotency_key=_text(form, "idempotency_key")[:128] or secrets.token_hex(16),
                              time_spent_ms=elapsed if elapsed is None or elapsed >= 0 else None,
                              guideline_version=version)
        except Invalid as err:
            # Show the same item again with the problem; the lease is still the annotator's.
            held = assignment.lease_next(session.connection(), rules=rules, user_id=user.user_id,
                                         seed=settings.seed)
            if held is None or held.item_id != item_id:
                raise
            context = {**_task_context(session, project, held), "error": err.message}
        else:
            return _redirect(f"/projects/{project_id}")
    return render(request, "task.html", context, status=422)


@router.post("/projects/{project_id}/items/{item_id}/skip")
def skip(request: Request, project_id: ProjectId, item_id: ItemId, user: UserDep, database: DatabaseDep,
         form: FormDep) -> Response:
    reason = _text(form, "reason").strip()
    if reason == "skip_other" or not reason:
        reason = _text(form, "reason_text").strip() or reason
    with database.write() as session:
        rules = assignment.load_rules(session.connection(), project_id=project_id, user_id=user.user_id,
                                      role=user.role)
        assignment.skip(session.connection(), rules=rules, user_id=user.user_id, item_id=item_id, reason=reason)
    return _redirect(f"/projects/{project_id}")


# ---------------------------------------------------------------------------------------------------------------------
# admin


@router.get("/admin", response_class=HTMLResponse)
def admin_home(request: Request, admin: AdminPageDep, database: DatabaseDep) -> Response:
    with database.read() as session:
        projects = [(p, crud.project_progress(session, project=p))
                    for p in crud.visible_projects(session, principal=admin)]
        users = crud.list_users(session)
    return render(request, "admin.html", {"projects": projects, "users": users, "roles": ROLES,
                                          "task_types": tasks.TASK_TYPES})


@router.post("/admin/projects")
def admin_create_project(request: Request, admin: AdminPageDep, database: DatabaseDep, settings: SettingsDep,
                         form: FormDep) -> Response:
    spec = crud.ProjectSpec(
        name=_text(form, "name").strip(), task_type=_text(form, "task_type"),
        overlap=_int(form, "overlap", settings.default_overlap), gold_rate=_float(form, "gold_rate", 0.0),
        lease_seconds=_int(form, "lease_seconds", settings.default_lease_seconds),
        description=_text(form, "description"), guidelines=_text(form, "guidelines"),
        aspects=[a.strip() for a in _text(form, "aspects").split(",") if a.strip()],
        flags=[f.strip() for f in _text(form, "flags").split(",") if f.strip()],
    )
    with database.write() as session:
        project = crud.create_project(session, spec=spec, author_id=admin.user_id)
    return _redirect(f"/admin/projects/{project.id}")


@router.get("/admin/projects/{project_id}", response_class=HTMLResponse)
def admin_project(request: Request, project_id: ProjectId, admin: AdminPageDep, database: DatabaseDep) -> Response:
    """The project's dashboard: progress, annotator quality, agreement, guidelines, import, members, export."""
    with database.read() as session:
        project = crud.get_project(session, project_id=project_id)
        context = {
            "project": project, "quality": quality.project_quality(session, project=project),
            "guideline": crud.current_guideline(session, project_id=project_id),
            "members": crud.members(session, project_id=project_id),
            "users": [u for u in crud.list_users(session) if u.active],
        }
    return render(request, "admin_project.html", context)


@router.post("/admin/projects/{project_id}/settings")
def admin_project_settings(project_id: ProjectId, admin: AdminPageDep, database: DatabaseDep,
                           form: FormDep) -> Response:
    with database.write() as session:
        project = crud.get_project(session, project_id=project_id)
        crud.update_project(session, project=project, overlap=_int(form, "overlap", project.overlap),
                            gold_rate=_float(form, "gold_rate", project.gold_rate),
                            lease_seconds=_int(form, "lease_seconds", project.lease_seconds))
    return _redirect(f"/admin/projects/{project_id}")


@router.post("/admin/projects/{project_id}/guidelines")
def admin_guidelines(project_id: ProjectId, admin: AdminPageDep, database: DatabaseDep, form: FormDep) -> Response:
    with database.write() as session:
        crud.get_project(session, project_id=project_id)
        crud.add_guideline_version(session, project_id=project_id, text=_text(form, "text"), author_id=admin.user_id)
    return _redirect(f"/admin/projects/{project_id}")


@router.post("/admin/projects/{project_id}/items")
def admin_import(request: Request, project_id: ProjectId, admin: AdminPageDep, database: DatabaseDep,
                 form: FormDep) -> Response:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Invalid("file: choose a JSONL file of records to import")
    data = upload.file.read()
    name = (upload.filename or "upload.jsonl").replace("\x00", "")[-200:]
    with database.write() as session:
        project = crud.get_project(session, project_id=project_id)
        parsed = crud.parse_item_file(data, name=name, task_type=project.task_type, gold=form.get("gold") == "on")
        crud.add_items(session, project=project, parsed=parsed)
    return _redirect(f"/admin/projects/{project_id}")


@router.post("/admin/projects/{project_id}/members")
def admin_members(project_id: ProjectId, admin: AdminPageDep, database: DatabaseDep, form: FormDep) -> Response:
    names = [n for n in form.getlist("usernames") if isinstance(n, str) and n]
    with database.write() as session:
        crud.get_project(session, project_id=project_id)
        if _text(form, "action", "add") == "remove":
            for name in names:
                crud.remove_member(session, project_id=project_id, username=name)
        else:
            crud.add_members(session, project_id=project_id, usernames=names)
    return _redirect(f"/admin/projects/{project_id}")


@router.post("/admin/users")
def admin_create_user(admin: AdminPageDep, database: DatabaseDep, form: FormDep) -> Response:
    with database.write() as session:
        crud.create_user(session, username=_text(form, "username").strip(), password=_text(form, "password"),
                         role=_text(form, "role", "annotator"), display_name=_text(form, "display_name").strip())
    return _redirect("/admin")


@router.post("/admin/users/{username}/active")
def admin_user_active(request: Request, username: str, admin: AdminPageDep, database: DatabaseDep,
                      form: FormDep) -> Response:
    with database.write() as session:
        crud.set_user_active(session, username=username[:64], active=_text(form, "active") == "1")
    request.app.state.token_cache.clear()
    return _redirect("/admin")
