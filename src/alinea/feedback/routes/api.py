"""The JSON API under /api/v1 (OpenAPI at /api/v1/openapi.json): what programs, the loop and the pages' scripts use.

Authentication: `Authorization: Bearer <token>` (POST /auth/token or `alinea users create --token`), or the browser
session cookie plus the `X-CSRF-Token` header on requests that change data. Errors are
`{"detail": "...", "errors": ["where: field: expected", ...]}` with 401, 403, 404, 409, 413 or 422.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import select

from alinea.feedback import assignment, chat, crud, export, quality, schemas
from alinea.feedback.assignment import Lease, Rules
from alinea.feedback.errors import Forbidden, Invalid, Unauthenticated
from alinea.feedback.models import Item, Project, User
from alinea.feedback.routes.deps import (
    AdminDep,
    CallerDep,
    ChatId,
    DatabaseDep,
    ItemId,
    ProjectId,
    SettingsDep,
    run_db,
)
from alinea.feedback.security import Principal

router = APIRouter()


def project_public(session, project: Project, *, with_progress: bool = False,
                   admin: bool = True) -> schemas.ProjectPublic:
    """A project as the caller may see it: gold items are mixed in silently, so only admins see the gold figures."""
    progress = crud.project_progress(session, project=project) if with_progress else None
    if progress is not None and not admin:
        progress = {k: v for k, v in progress.items() if k != "gold_items"}
    return schemas.ProjectPublic(
        id=project.id, name=project.name, task_type=project.task_type, description=project.description,
        overlap=project.overlap, gold_rate=project.gold_rate if admin else None, lease_seconds=project.lease_seconds,
        aspects=list(project.aspects), flags=list(project.flags), scale=(project.scale_min, project.scale_max),
        guideline_version=assignment.current_guideline_version(session.connection(), project.id),
        progress=progress,
    )


def user_public(user: User) -> schemas.UserPublic:
    return schemas.UserPublic(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                              active=user.active, locale=user.locale)


def _time(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def lease_json(lease: Lease, task_type: str) -> dict[str, Any]:
    """A LeasePublic as plain JSON. The two hot routes (lease, judgments) build their answers directly: running
    them through pydantic again cost a tenth of the request."""
    return {"item_id": lease.item_id, "project_id": lease.project_id, "task_type": task_type,
            "messages": lease.messages, "responses": lease.responses, "language": lease.language,
            "expires_at": _time(lease.expires_at), "guideline_version": lease.guideline_version}


def annotator_rules(connection, *, project_id: int, principal: Principal) -> Rules:
    """The project's rules, for a member who may annotate (admins may too)."""
    return assignment.load_rules(connection, project_id=project_id, user_id=principal.user_id, role=principal.role)


# ---------------------------------------------------------------------------------------------------------------------
# auth and users


@router.post("/auth/token", response_model=schemas.TokenPublic, status_code=201, tags=["auth"])
def create_token(body: schemas.TokenCreate, database: DatabaseDep) -> schemas.TokenPublic:
    """Trade a username and password for an API token (shown once)."""
    with database.write() as session:
        user = crud.authenticate_password(session, username=body.username, password=body.password)
        if user is None:
            raise Unauthenticated("wrong username or password, or the account is disabled")
        token = crud.create_api_token(session, user_id=user.id, name=body.name)
        return schemas.TokenPublic(token=token, username=user.username, role=user.role)


@router.get("/me", response_model=schemas.MePublic, tags=["auth"])
def me(caller: CallerDep) -> schemas.MePublic:
    return schemas.MePublic(id=caller.user_id, username=caller.username, role=caller.role, locale=caller.locale)


@router.patch("/me", response_model=schemas.MePublic, tags=["auth"])
def update_me(body: schemas.MeUpdate, caller: CallerDep, database: DatabaseDep) -> schemas.MePublic:
    """Choose the UI language (null: follow the browser)."""
    from alinea.feedback import i18n

    if body.locale is not None and body.locale not in i18n.languages():
        raise Invalid(f"locale: one of {', '.join(i18n.languages())}, found {body.locale!r}")
    with database.write() as session:
        crud.set_user_locale(session, user_id=caller.user_id, locale=body.locale)
    return schemas.MePublic(id=caller.user_id, username=caller.username, role=caller.role, locale=body.locale)


@router.get("/users", response_model=list[schemas.UserPublic], tags=["users"])
def list_users(admin: AdminDep, database: DatabaseDep) -> list[schemas.UserPublic]:
    with database.read() as session:
        return [user_public(u) for u in crud.list_users(session)]


@router.post("/users", response_model=schemas.UserPublic, status_code=201, tags=["users"])
def create_user(body: schemas.UserCreate, admin: AdminDep, database: DatabaseDep) -> schemas.UserPublic:
    with database.write() as session:
        return user_public(crud.create_user(session, username=body.username, password=body.password,
                                            role=body.role, display_name=body.display_name, locale=body.locale))


@router.patch("/users/{username}", response_model=schemas.UserPublic, tags=["users"])
def update_user(username: Annotated[str, schemas.Field(max_length=64)], body: schemas.UserUpdate, admin: AdminDep,
                database: DatabaseDep, request: Request) -> schemas.UserPublic:
    """Disable (active=false) or re-enable a user; a disabled user's sessions end and tokens stop working."""
    with database.write() as session:
        user = crud.get_user(session, username=username)
        if body.active is not None:
            user = crud.set_user_active(session, username=username, active=body.active)
        if body.locale is not None:
            user.locale = body.locale
        public = user_public(user)
    request.app.state.token_cache.clear()
    return public


@router.post("/users/{username}/tokens", response_model=schemas.TokenPublic, status_code=201, tags=["users"])
def create_user_token(username: Annotated[str, schemas.Field(max_length=64)], admin: AdminDep,
                      database: DatabaseDep) -> schemas.TokenPublic:
    """An API token for a user (e.g. a simulated annotator of the loop)."""
    with database.write() as session:
        user = crud.get_user(session, username=username)
        token = crud.create_api_token(session, user_id=user.id, name="created by an admin")
        return schemas.TokenPublic(token=token, username=user.username, role=user.role)


# ---------------------------------------------------------------------------------------------------------------------
# projects


@router.get("/projects", response_model=list[schemas.ProjectPublic], tags=["projects"])
def list_projects(caller: CallerDep, database: DatabaseDep) -> list[schemas.ProjectPublic]:
    """The projects the caller may see (all for admins), with progress."""
    with database.read() as session:
        return [project_public(session, p, with_progress=True, admin=caller.is_admin)
                for p in crud.visible_projects(session, principal=caller)]


@router.post("/projects", response_model=schemas.ProjectPublic, status_code=201, tags=["projects"])
def create_project(body: schemas.ProjectCreate, admin: AdminDep, database: DatabaseDep,
                   settings: SettingsDep) -> schemas.ProjectPublic:
    spec = crud.ProjectSpec(name=body.name, task_type=body.task_type,
                            overlap=body.overlap or settings.default_overlap, gold_rate=body.gold_rate,
                            lease_seconds=body.lease_seconds or settings.default_lease_seconds,
                            description=body.description,
                            guidelines=body.guidelines, aspects=body.aspects, flags=body.flags, scale=body.scale)
    with database.write() as session:
        project = crud.create_project(session, spec=spec, author_id=admin.user_id)
        if body.members:
            crud.add_members(session, project_id=project.id, usernames=body.members)
        return project_public(session, project)


@router.get("/projects/{project_id}", response_model=schemas.ProjectPublic, tags=["projects"])
def get_project(project_id: ProjectId, caller: CallerDep, database: DatabaseDep) -> schemas.ProjectPublic:
    with database.read() as session:
        project = crud.get_project(session, project_id=project_id, principal=caller)
        return project_public(session, project, with_progress=True, admin=caller.is_admin)


@router.patch("/projects/{project_id}", response_model=schemas.ProjectPublic, tags=["projects"])
def update_project(project_id: ProjectId, body: schemas.ProjectUpdate, admin: AdminDep,
                   database: DatabaseDep) -> schemas.ProjectPublic:
    with database.write() as session:
        project = crud.get_project(session, project_id=project_id)
        crud.update_project(session, project=project, **body.model_dump(exclude_none=True))
        return project_public(session, project)


@router.get("/projects/{project_id}/guidelines", response_model=list[schemas.GuidelinePublic], tags=["projects"])
def list_guidelines(project_id: ProjectId, caller: CallerDep, database: DatabaseDep) -> list[schemas.GuidelinePublic]:
    """Every version of the guidelines, oldest first."""
    with database.read() as session:
        crud.get_project(session, project_id=project_id, principal=caller)
        return [schemas.GuidelinePublic(version=g.version, text=g.text, created_at=g.created_at)
                for g in crud.guideline_versions(session, project_id=project_id)]


@router.post("/projects/{project_id}/guidelines", response_model=schemas.GuidelinePublic, status_code=201,
             tags=["projects"])
def add_guidelines(project_id: ProjectId, body: schemas.GuidelineCreate, admin: AdminDep,
                   database: DatabaseDep) -> schemas.GuidelinePublic:
    """Save a new version; judgments made from now on record its number."""
    with database.write() as session:
        crud.get_project(session, project_id=project_id)
        g = crud.add_guideline_version(session, project_id=project_id, text=body.text, author_id=admin.user_id)
        return schemas.GuidelinePublic(version=g.version, text=g.text, created_at=g.created_at)


@router.get("/projects/{project_id}/members", response_model=list[schemas.UserPublic], tags=["projects"])
def list_members(project_id: ProjectId, admin: AdminDep, database: DatabaseDep) -> list[schemas.UserPublic]:
    with database.read() as session:
        crud.get_project(session, project_id=project_id)
        return [user_public(u) for u in crud.members(session, project_id=project_id)]


@router.post("/projects/{project_id}/members", response_model=list[schemas.UserPublic], tags=["projects"])
def add_members(project_id: ProjectId, body: schemas.MembersUpdate, admin: AdminDep,
                database: DatabaseDep) -> list[schemas.UserPublic]:
    """Assign annotators (or viewers) to the project; returns every member."""
    with database.write() as session:
        crud.get_project(session, project_id=project_id)
        crud.add_members(session, project_id=project_id, usernames=body.usernames)
        return [user_public(u) for u in crud.members(session, project_id=project_id)]


@router.delete("/projects/{project_id}/members/{username}", status_code=204, tags=["projects"])
def remove_member(project_id: ProjectId, username: Annotated[str, schemas.Field(max_length=64)], admin: AdminDep,
                  database: DatabaseDep) -> Response:
    with database.write() as session:
        crud.get_project(session, project_id=project_id)
        crud.remove_member(session, project_id=project_id, username=username)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------------------------------
# items


@router.post("/projects/{project_id}/items", response_model=schemas.ItemsCreated, status_code=201, tags=["items"])
def add_items(project_id: ProjectId, body: schemas.ItemsCreate, admin: AdminDep,
              database: DatabaseDep) -> schemas.ItemsCreated:
    """Import items from alinea records; one bad record rejects them all, each error as `items[i]: field: ...`."""
    with database.write() as session:
        project = crud.get_project(session, project_id=project_id)
        parsed = crud.parse_item_objects(
            ((i, item.record) for i, item in enumerate(body.items)), source="items", task_type=project.task_type,
            gold=body.gold, locate=lambda i: f"items[{i}].record")
        ids = crud.add_items(session, project=project, parsed=parsed, priority=body.priority,
                             metas=[item.meta for item in body.items],
                             priorities=[body.priority if item.priority is None else item.priority
                                         for item in body.items])
        return schemas.ItemsCreated(ids=ids)


@router.post("/projects/{project_id}/items/upload", response_model=schemas.ItemsCreated, status_code=201,
             tags=["items"])
def upload_items(project_id: ProjectId, admin: AdminDep, database: DatabaseDep,
                 file: Annotated[UploadFile, File(description="JSONL of alinea records (.jsonl or .jsonl.gz).")],
                 gold: Annotated[bool, Form()] = False) -> schemas.ItemsCreated:
    """Import a JSONL file; a file with bad lines is rejected as a whole with `file:line: field: expected` errors."""
    data = file.file.read()
    name = (file.filename or "upload.jsonl").replace("\x00", "")[-200:]
    with database.write() as session:
        project = crud.get_project(session, project_id=project_id)
        parsed = crud.parse_item_file(data, name=name, task_type=project.task_type, gold=gold)
        return schemas.ItemsCreated(ids=crud.add_items(session, project=project, parsed=parsed))


@router.get("/projects/{project_id}/items", response_model=list[schemas.ItemAdmin], tags=["items"])
def list_items(project_id: ProjectId, admin: AdminDep, database: DatabaseDep,
               offset: Annotated[int, Query(ge=0, le=schemas.MAX_INT)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[schemas.ItemAdmin]:
    with database.read() as session:
        crud.get_project(session, project_id=project_id)
        return [schemas.ItemAdmin(
            id=i.id, external_id=i.external_id, messages=i.messages, responses=i.responses, language=i.language,
            tags=i.tags, meta=i.meta, priority=i.priority, is_gold=i.is_gold, gold_answer=i.gold_answer,
            n_done=i.n_done) for i in crud.list_items(session, project_id=project_id, offset=offset, limit=limit)]


@router.post("/projects/{project_id}/priorities", response_model=schemas.PrioritiesUpdated, tags=["items"])
def set_priorities(project_id: ProjectId, body: schemas.PrioritiesUpdate, admin: AdminDep,
                   database: DatabaseDep) -> schemas.PrioritiesUpdated:
    """Set item priorities (higher first), by item id or by the imported record's id."""
    by_id: dict[int, float] = {}
    by_external: dict[str, float] = {}
    for i, entry in enumerate(body.priorities):
        if (entry.item_id is None) == (entry.external_id is None):
            raise Invalid(f"priorities[{i}]: exactly one of item_id and external_id")
        if entry.item_id is not None:
            by_id[entry.item_id] = entry.priority
        else:
            by_external[entry.external_id] = entry.priority
    with database.write() as session:
        crud.get_project(session, project_id=project_id)
        changed = crud.set_priorities(session, project_id=project_id, by_id=by_id, by_external_id=by_external)
        return schemas.PrioritiesUpdated(changed=changed)


# ---------------------------------------------------------------------------------------------------------------------
# annotating


@router.post("/projects/{project_id}/lease", response_model=schemas.LeasePublic,
             responses={204: {"description": "Nothing left for this annotator."}}, tags=["annotate"])
async def lease(project_id: ProjectId, caller: CallerDep, request: Request) -> Any:
    """The caller's next item (or the one they already hold); 204 when nothing is left for them."""
    database, seed = request.app.state.database, request.app.state.settings.seed

    def work():
        with database.write_connection() as connection:
            rules = annotator_rules(connection, project_id=project_id, principal=caller)
            held = assignment.lease_next(connection, rules=rules, user_id=caller.user_id, seed=seed)
            return rules, held

    rules, held = await run_db(request, work)
    if held is None:
        return Response(status_code=204)
    return JSONResponse(lease_json(held, rules.task_type))


def judge(database, *, seed: int, caller: Principal | None, project_id: int, item_id: int, answer: dict[str, Any],
          idempotency_key: str, time_spent_ms: int | None, guideline_version: int | None, lease_next: bool,
          token: str = "", token_cache=None) -> tuple[int, dict[str, Any]] | None:
    """Record a judgment (and with `lease_next` lease the next item) in one transaction; (status, JSON answer).
    The work of the judgments route, for FastAPI's route and for its fast lane (routes/fast.py) alike.

    `caller` None (the fast lane, for an API token it has not checked lately): the caller is looked up from
    `token` first, in the same transaction (one statement, no transaction of its own: under load a separate lookup
    took 4-10 ms), and cached in `token_cache`; None is returned, with nothing written, when no active user holds it.
    """
    with database.write_connection() as connection:
        if caller is None:
            caller = crud.principal_of_token(connection, token=token)
            if caller is None:
                return None
            token_cache.put(token, caller)
        rules, held = assignment.load_rules_and_hold(connection, project_id=project_id, user_id=caller.user_id,
                                                     role=caller.role, item_id=item_id)
        done = assignment.submit(connection, rules=rules, user_id=caller.user_id, item_id=item_id, answer=answer,
                                 idempotency_key=idempotency_key, time_spent_ms=time_spent_ms,
                                 guideline_version=guideline_version, held=held, pick_next=lease_next)
        upcoming = None
        if lease_next:
            upcoming = assignment.lease_next(connection, rules=rules, user_id=caller.user_id, seed=seed,
                                             after_submit=not done.replayed, picked=done.next_candidate)
    return 200 if done.replayed else 201, {
        "id": done.judgment_id, "item_id": done.item_id, "replayed": done.replayed, "answer": done.answer,
        "shown_order": done.shown_order, "guideline_version": done.guideline_version,
        "time_spent_ms": done.time_spent_ms, "created_at": _time(done.created_at),
        "next": lease_json(upcoming, rules.task_type) if upcoming else None,
    }


@router.post("/projects/{project_id}/items/{item_id}/judgments", response_model=schemas.JudgmentPublic,
             status_code=201, responses={200: {"description": "A retry: the judgment recorded earlier."}},
             tags=["annotate"])
async def submit_judgment(project_id: ProjectId, item_id: ItemId, body: schemas.JudgmentCreate, caller: CallerDep,
                          request: Request) -> Any:
    """Record a judgment on a leased item (idempotent by `idempotency_key`); with `lease_next`, also lease the next
    item in the same transaction and return it in `next`.

    Requests with an API token already checked by this process and a body of the exact JSON types are answered
    by the fast lane in front of FastAPI (routes/fast.py), with the same work and the same answers."""
    state = request.app.state
    status, answer = await run_db(request, lambda: judge(
        state.database, seed=state.settings.seed, caller=caller, project_id=project_id, item_id=item_id,
        answer=body.answer, idempotency_key=body.idempotency_key, time_spent_ms=body.time_spent_ms,
        guideline_version=body.guideline_version, lease_next=body.lease_next))
    return JSONResponse(answer, status_code=status)


@router.post("/projects/{project_id}/items/{item_id}/skip", status_code=204, tags=["annotate"])
def skip_item(project_id: ProjectId, item_id: ItemId, body: schemas.SkipCreate, caller: CallerDep,
              database: DatabaseDep) -> Response:
    """Give a leased item back with a reason; it will not be offered to the caller again."""
    with database.write_connection() as connection:
        rules = annotator_rules(connection, project_id=project_id, principal=caller)
        assignment.skip(connection, rules=rules, user_id=caller.user_id, item_id=item_id, reason=body.reason)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------------------------------
# quality and export


def _readable_project(session, project_id: int, caller: Principal) -> Project:
    """Admins, and viewers assigned to the project, may read its judgments; annotators may not."""
    project = crud.get_project(session, project_id=project_id, principal=caller)
    if caller.role == "annotator":
        raise Forbidden("quality figures and exports are for admins and viewers")
    return project


@router.get("/projects/{project_id}/quality", tags=["quality"])
def project_quality(project_id: ProjectId, caller: CallerDep, database: DatabaseDep) -> dict[str, Any]:
    """Progress, and per annotator: throughput, time per item, gold accuracy, position bias, agreement."""
    with database.read() as session:
        project = _readable_project(session, project_id, caller)
        return quality.project_quality(session, project=project)


@router.get("/projects/{project_id}/export", tags=["export"],
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "One JSON object a line."}})
def export_project(project_id: ProjectId, caller: CallerDep, database: DatabaseDep,
                   format: Annotated[export.ExportFormat, Query(description=export.FORMATS_HELP)] = "canonical",
                   method: Annotated[export.AggregateMethod, Query()] = "majority") -> StreamingResponse:
    """Judgments as JSONL: canonical, records (alinea records for the trainers), trl (prompt/chosen/rejected with a
    margin) or aggregate (one label per item)."""
    with database.read() as session:
        project = _readable_project(session, project_id, caller)
        rows = export.export_rows(session, project=project, format=format, method=method)
    body = export.to_jsonl(rows)
    filename = f"{export.safe_name(project.name)}-{format}.jsonl"
    return StreamingResponse(iter([body]), media_type="application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# ---------------------------------------------------------------------------------------------------------------------
# chat with the live model


@router.post("/projects/{project_id}/chats", response_model=schemas.ChatPublic, status_code=201, tags=["chat"])
def start_chat(project_id: ProjectId, body: schemas.ChatCreate, caller: CallerDep, database: DatabaseDep,
               request: Request, settings: SettingsDep) -> schemas.ChatPublic:
    """Start a conversation, empty or from a seed item's prompt (which the model then answers with two samples)."""
    with database.write() as session:
        rules = annotator_rules(session.connection(), project_id=project_id, principal=caller)
        conversation = chat.start(session, rules=rules, user_id=caller.user_id, item_id=body.item_id)
        if not chat.needs_samples(conversation):
            return chat.public(conversation)
        chat_id, context = conversation.id, list(conversation.messages)
    return _answer(request, database, settings, chat_id=chat_id, user_id=caller.user_id, context=context)


def _answer(request: Request, database, settings, *, chat_id: int, user_id: int,
            context: list[dict[str, str]]) -> schemas.ChatPublic:
    samples = chat.sample_pair(request.app.state.chat_sampler, context, seed=settings.seed + len(context))
    with database.write() as session:
        conversation = chat.add_samples(session, chat_id=chat_id, user_id=user_id, context=context, samples=samples,
                                        seed=settings.seed)
        return chat.public(conversation)


@router.get("/chats/{chat_id}", response_model=schemas.ChatPublic, tags=["chat"])
def get_chat(chat_id: ChatId, caller: CallerDep, database: DatabaseDep) -> schemas.ChatPublic:
    with database.read() as session:
        return chat.public(chat.get_own(session, chat_id=chat_id, user_id=caller.user_id))


@router.post("/chats/{chat_id}/messages", response_model=schemas.ChatPublic, tags=["chat"])
def chat_message(chat_id: ChatId, body: schemas.ChatMessageCreate, caller: CallerDep, database: DatabaseDep,
                 request: Request, settings: SettingsDep) -> schemas.ChatPublic:
    """Add the annotator's message (or, without `content`, ask again for answers to the conversation as it stands);
    the model answers with two samples to pick from. Sampling runs outside any transaction."""
    with database.read() as session:
        context = chat.context_for_message(session, chat_id=chat_id, user_id=caller.user_id, content=body.content)
    return _answer(request, database, settings, chat_id=chat_id, user_id=caller.user_id, context=context)


@router.post("/chats/{chat_id}/pick", response_model=schemas.ChatPublic, tags=["chat"])
def chat_pick(chat_id: ChatId, body: schemas.ChatPick, caller: CallerDep, database: DatabaseDep) -> schemas.ChatPublic:
    """Pick one of the two samples (with strength, "both bad", a thumb per turn); the conversation continues from it."""
    with database.write() as session:
        conversation = chat.pick(session, chat_id=chat_id, user_id=caller.user_id, choice=body.choice,
                                 strength=body.strength, both_bad=body.both_bad, thumb=body.thumb,
                                 comment=body.comment)
        return chat.public(conversation)


@router.get("/health", tags=["meta"])
def health(database: DatabaseDep) -> dict[str, Any]:
    """Liveness: the database answers."""
    with database.read() as session:
        session.execute(select(Item.id).limit(1))
    return {"ok": True, "backend": database.backend}
