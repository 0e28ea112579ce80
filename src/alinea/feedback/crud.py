"""Users, tokens, sessions, projects, guidelines and items: keyword-only functions over a SQLAlchemy session.

The caller owns the transaction (`Database.write()` / `read()`); these functions never commit. Bad input raises
the errors of `feedback.errors` (Invalid, NotFound, Forbidden, Conflict) with a message for a person.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alinea.data.jsonl import iter_json_lines
from alinea.data.records import RecordError, describe_value, parse_record
from alinea.errors import UserError
from alinea.feedback import security, tasks
from alinea.feedback.errors import Conflict, Forbidden, Invalid, NotFound
from alinea.feedback.models import (
    ROLES,
    ApiToken,
    Guideline,
    Item,
    Judgment,
    Project,
    ProjectMember,
    User,
    WebSession,
    utcnow,
)
from alinea.feedback.prepared import Prepared
from alinea.feedback.security import Principal

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
PROJECT_NAME_MAX = 128
MAX_IMPORT_ITEMS = 100_000


# ---------------------------------------------------------------------------------------------------------------------
# users


NO_PASSWORD = "!"
"""The stored hash of an account that cannot log in with a password (API tokens only): no argon2 hash matches it."""


def create_user(session: Session, *, username: str, password: str | None, role: str, display_name: str = "",
                locale: str | None = None) -> User:
    """A new active user; Invalid for a bad name, role or password, Conflict when the name is taken.

    `password=None` makes an account for programs (the loop's simulated annotators): it works with API tokens only.
    """
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise Invalid(f"username: 1 to 64 letters, digits or _.@- (starting with a letter or digit), "
                      f"found {describe_value(username)}")
    if role not in ROLES:
        raise Invalid(f"role: one of {', '.join(ROLES)}, found {describe_value(role)}")
    problem = security.check_password_rules(password) if password is not None else None
    if problem:
        raise Invalid(f"password: {problem}")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"username: {username!r} is taken")
    password_hash = security.hash_password(password) if password is not None else NO_PASSWORD
    user = User(username=username, password_hash=password_hash, role=role,
                display_name=display_name or username, locale=locale, active=True)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, *, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def set_user_active(session: Session, *, username: str, active: bool) -> User:
    """Enable or disable a user; disabling also ends their browser sessions (their API tokens stop working)."""
    user = get_user(session, username=username)
    user.active = active
    if not active:
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return user


def set_user_locale(session: Session, *, user_id: int, locale: str | None) -> None:
    session.execute(update(User).where(User.id == user_id).values(locale=locale))


def authenticate_password(session: Session, *, username: str, password: str) -> User | None:
    """The active user with this name and password, else None (the same answer for every kind of failure)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        security.verify_password(_DUMMY_HASH.value, password)  # same time as a wrong password: no user probing
        return None
    if not security.verify_password(user.password_hash, password) or not user.active:
        return None
    return user


class _DummyHash:
    """A hash to verify against when the user does not exist, made on first use (hashing takes ~0.1 s)."""

    _value: str | None = None

    @property
    def value(self) -> str:
        if self._value is None:
            self._value = security.hash_password("not a password of anyone")
        return self._value


_DUMMY_HASH = _DummyHash()


def create_api_token(session: Session, *, user_id: int, name: str = "") -> str:
    """A new API token for the user; the token is returned once and stored only as its SHA-256."""
    token = security.new_api_token()
    session.add(ApiToken(user_id=user_id, name=name[:128], token_hash=security.digest(token)))
    session.flush()
    return token


def create_web_session(session: Session, *, user_id: int, hours: float) -> str:
    """A new browser session for the user; returns the cookie value."""
    token = security.new_token()
    session.add(WebSession(user_id=user_id, token_hash=security.digest(token),
                           expires_at=utcnow() + timedelta(hours=hours)))
    return token


def end_web_session(session: Session, *, cookie: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == security.digest(cookie)))


def principal_from_cookie(session: Session, *, cookie: str) -> Principal | None:
    row = session.execute(
        select(User.id, User.username, User.role, User.locale)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == security.digest(cookie), WebSession.expires_at > utcnow(),
               User.active.is_(True))
    ).first()
    if row is None:
        return None
    return Principal(user_id=row.id, username=row.username, role=row.role, locale=row.locale, via="cookie",
                     cookie=cookie)


_TOKEN_OWNER = Prepared(
    select(User.id, User.username, User.role, User.locale)
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("digest"), ApiToken.revoked.is_(False), User.active.is_(True))
)
"""Who an API token (by its digest) belongs to: a Prepared statement, since programs' requests look tokens up
again every `token_cache_seconds`, many at a time."""


def principal_of_token(connection: Connection, *, token: str) -> Principal | None:
    """The active user holding the unrevoked API token `token`, or None (a Core connection's transaction)."""
    row = _TOKEN_OWNER.first(connection, {"digest": security.digest(token)})
    if row is None:
        return None
    return Principal(user_id=row.id, username=row.username, role=row.role, locale=row.locale, via="token")


# ---------------------------------------------------------------------------------------------------------------------
# projects


@dataclass
class ProjectSpec:
    """What a new project is made of (the API's ProjectCreate and the CLI fill it)."""

    name: str
    task_type: str
    overlap: int = 3
    gold_rate: float = 0.0
    lease_seconds: int = 900
    description: str = ""
    guidelines: str = ""
    aspects: Sequence[str] = ()
    flags: Sequence[str] = ()
    scale: tuple[int, int] = (1, 7)


def _check_project_numbers(*, overlap: int, gold_rate: float, lease_seconds: int) -> None:
    if not 1 <= overlap <= 50:
        raise Invalid(f"overlap: an integer from 1 to 50 (distinct annotators per item), found {overlap}")
    if not 0.0 <= gold_rate <= 1.0:
        raise Invalid(f"gold_rate: a share from 0 to 1, found {gold_rate}")
    if not 10 <= lease_seconds <= 7 * 24 * 3600:
        raise Invalid(f"lease_seconds: from 10 seconds to 7 days, found {lease_seconds}")


def create_project(session: Session, *, spec: ProjectSpec, author_id: int | None = None) -> Project:
    """A new project, with version 1 of its guidelines when given."""
    name = (spec.name or "").strip()
    if not name or len(name) > PROJECT_NAME_MAX:
        raise Invalid(f"name: 1 to {PROJECT_NAME_MAX} characters, found {describe_value(spec.name)}")
    if spec.task_type not in tasks.TASK_TYPES:
        raise Invalid(f"task_type: one of {', '.join(tasks.TASK_TYPES)}, found {describe_value(spec.task_type)}")
    _check_project_numbers(overlap=spec.overlap, gold_rate=spec.gold_rate, lease_seconds=spec.lease_seconds)
    low, high = spec.scale
    if not low < high or high - low > 100:
        raise Invalid(f"scale: [min, max] with min < max (at most 100 apart), found [{low}, {high}]")
    aspects = list(spec.aspects) or (list(tasks.DEFAULT_ASPECTS) if spec.task_type == "rating" else [])
    flags = list(spec.flags) or (list(tasks.DEFAULT_FLAGS) if spec.task_type == "rating" else [])
    for what, names in (("aspects", aspects), ("flags", flags)):
        for i, label in enumerate(names):
            if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", label):
                raise Invalid(f"{what}[{i}]: a name of letters, digits, _ or - (1 to 64), found {describe_value(label)}")
        if len(set(names)) != len(names):
            raise Invalid(f"{what}: each name once, found {names}")
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise Conflict(f"name: a project named {name!r} exists")
    project = Project(name=name, task_type=spec.task_type, overlap=spec.overlap, gold_rate=spec.gold_rate,
                      lease_seconds=spec.lease_seconds, description=spec.description, aspects=aspects, flags=flags,
                      scale_min=low, scale_max=high)
    session.add(project)
    session.flush()
    if spec.guidelines.strip():
        add_guideline_version(session, project_id=project.id, text=spec.guidelines, author_id=author_id)
    return project


def update_project(session: Session, *, project: Project, overlap: int | None = None,
                   gold_rate: float | None = None, lease_seconds: int | None = None,
                   description: str | None = None, archived: bool | None = None) -> Project:
    """Change a project's settings; lowering the overlap never takes away judgments already made."""
    _check_project_numbers(
        overlap=project.overlap if overlap is None else overlap,
        gold_rate=project.gold_rate if gold_rate is None else gold_rate,
        lease_seconds=project.lease_seconds if lease_seconds is None else lease_seconds,
    )
    for name, value in (("overlap", overlap), ("gold_rate", gold_rate), ("lease_seconds", lease_seconds),
                        ("description", description), ("archived", archived)):
        if value is not None:
            setattr(project, name, value)
    if overlap is not None:
        session.flush()
        session.execute(update(Item).where(Item.project_id == project.id)
                        .values(complete=Item.n_done >= project.overlap))
    return project


def visible_projects(session: Session, *, principal: Principal) -> list[Project]:
    """Every project for an admin; the projects a user is a member of otherwise."""
    query = select(Project).where(Project.archived.is_(False)).order_by(Project.id)
    if not principal.is_admin:
        query = query.join(ProjectMember, ProjectMember.project_id == Project.id).where(
            ProjectMember.user_id == principal.user_id)
    return list(session.scalars(query))


def get_project(session: Session, *, project_id: int, principal: Principal | None = None) -> Project:
    """The project, checked against what `principal` may see: 404 when missing, 403 when not a member."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project {project_id}")
    if principal is not None and not principal.is_admin and not is_member(
            session, project_id=project_id, user_id=principal.user_id):
        raise Forbidden(f"you are not assigned to project {project_id}")
    return project


def get_project_by_name(session: Session, *, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFound(f"no project named {name!r}")
    return project


def is_member(session: Session, *, project_id: int, user_id: int) -> bool:
    return session.get(ProjectMember, (project_id, user_id)) is not None


def add_members(session: Session, *, project_id: int, usernames: Iterable[str]) -> list[str]:
    """Assign users to a project (idempotent); returns the names added now."""
    added = []
    for username in usernames:
        user = get_user(session, username=username)
        if not is_member(session, project_id=project_id, user_id=user.id):
            session.add(ProjectMember(project_id=project_id, user_id=user.id))
            added.append(username)
    session.flush()
    return added


def remove_member(session: Session, *, project_id: int, username: str) -> None:
    user = get_user(session, username=username)
    session.execute(delete(ProjectMember).where(ProjectMember.project_id == project_id,
                                                ProjectMember.user_id == user.id))


def members(session: Session, *, project_id: int) -> list[User]:
    return list(session.scalars(select(User).join(ProjectMember, ProjectMember.user_id == User.id)
                                .where(ProjectMember.project_id == project_id).order_by(User.username)))


# ---------------------------------------------------------------------------------------------------------------------
# guidelines


def add_guideline_version(session: Session, *, project_id: int, text: str, author_id: int | None) -> Guideline:
    """A new version of the project's guidelines (markdown); judgments made from now on record its number."""
    if not isinstance(text, str) or not text.strip():
        raise Invalid("text: the guidelines as non-empty markdown")
    if len(text) > 200_000:
        raise Invalid(f"text: at most 200000 characters, found {len(text)}")
    latest = session.scalar(select(func.max(Guideline.version)).where(Guideline.project_id == project_id)) or 0
    guideline = Guideline(project_id=project_id, version=latest + 1, text=text, author_id=author_id)
    session.add(guideline)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict("guidelines: another version was saved at the same moment; reload and save again") from None
    return guideline


def current_guideline(session: Session, *, project_id: int) -> Guideline | None:
    return session.scalar(select(Guideline).where(Guideline.project_id == project_id)
                          .order_by(Guideline.version.desc()).limit(1))


def guideline_versions(session: Session, *, project_id: int) -> list[Guideline]:
    return list(session.scalars(select(Guideline).where(Guideline.project_id == project_id)
                                .order_by(Guideline.version)))


# ---------------------------------------------------------------------------------------------------------------------
# items


@dataclass
class ParsedItems:
    """Items checked and ready to insert (all of a file, or none: a bad line rejects the whole file)."""

    contents: list[tasks.ItemContent]
    lines: list[int]


def parse_item_objects(objects: Iterable[tuple[int, Any]], *, source: str, task_type: str,
                       gold: bool, locate: Callable[[int], str] | None = None) -> ParsedItems:
    """Check (line, JSON object) pairs as records for a `task_type` project; Invalid lists every bad line as
    `source:line: field: expected` (or `locate(line): field: expected`)."""
    locate = locate or (lambda line: f"{source}:{line}")
    errors: list[str] = []
    parsed = ParsedItems([], [])
    for line, obj in objects:
        try:
            record = parse_record(obj)
            parsed.contents.append(tasks.item_from_record(record, task_type, gold=gold))
            parsed.lines.append(line)
        except (RecordError, tasks.AnswerError) as err:
            errors.append(f"{locate(line)}: {err.field}: {err.expected}")
        if len(parsed.contents) > MAX_IMPORT_ITEMS:
            raise Invalid(f"{source}: more than {MAX_IMPORT_ITEMS} items in one import; split the file.")
    if errors:
        raise Invalid(f"{len(errors)} record(s) in {source} cannot be imported; nothing was imported. "
                      "Each is listed as file:line: field: expected.", details=errors)
    if not parsed.contents:
        raise Invalid(f"{source}: expected at least one record, found none.")
    return parsed


def parse_item_file(data: bytes, *, name: str, task_type: str, gold: bool) -> ParsedItems:
    """Check an uploaded JSONL file (gzipped when `name` ends in .gz) of records, line by line."""
    suffix = ".jsonl.gz" if name.endswith(".gz") else ".jsonl"
    handle, temp = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        return parse_item_path(Path(temp), task_type=task_type, gold=gold, shown_name=name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def parse_item_path(path: Path, *, task_type: str, gold: bool, shown_name: str | None = None) -> ParsedItems:
    """Check a JSONL file of records on disk (see `parse_item_objects`); JSON and encoding problems and record
    problems are reported together, in line order."""
    source = shown_name or str(path)
    objects: list[tuple[int, Any]] = []
    errors: list[tuple[int, str]] = []
    try:
        lines = list(iter_json_lines(path))
    except UserError as err:  # not gzip although named .gz, unreadable
        raise Invalid(err.message.replace(str(path), source)) from None
    for line in lines:
        if line.problem is not None:
            errors.append((line.line, f"{source}:{line.line}: {line.problem[0]}: {line.problem[1]}"))
        else:
            objects.append((line.line, line.value))
    located: dict[int, str] = {}
    try:
        parsed = parse_item_objects(objects, source=source, task_type=task_type, gold=gold,
                                    locate=lambda n: located.setdefault(n, f"{source}:{n}"))
    except Invalid as err:
        if not errors:
            raise
        by_prefix = {text: n for n, text in located.items()}
        for detail in err.details:
            errors.append((by_prefix.get(detail.split(": ", 1)[0], 0), detail))
    if errors:
        raise Invalid(f"{len(errors)} line(s) of {source} cannot be imported; nothing was imported. "
                      "Each is listed as file:line: field: expected.", details=[text for _, text in sorted(errors)])
    return parsed


def add_items(session: Session, *, project: Project, parsed: ParsedItems, priority: float = 0.0,
              metas: Sequence[dict[str, Any]] | None = None, priorities: Sequence[float] | None = None) -> list[int]:
    """Insert checked items; returns their ids in order."""
    gold = [c.gold_answer is not None for c in parsed.contents]
    rows = []
    for i, content in enumerate(parsed.contents):
        rows.append(Item(
            project_id=project.id, external_id=content.external_id, messages=content.messages,
            responses=content.responses, language=content.language, tags=content.tags,
            meta=dict(metas[i]) if metas else {}, priority=priorities[i] if priorities else priority,
            is_gold=gold[i], gold_answer=content.gold_answer, n_done=0, complete=False,
        ))
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def set_priorities(session: Session, *, project_id: int, by_id: dict[int, float] | None = None,
                   by_external_id: dict[str, float] | None = None) -> int:
    """Set item priorities (higher is served first); returns how many items changed. Unknown ids: NotFound."""
    changed = 0
    for item_id, priority in (by_id or {}).items():
        result = session.execute(update(Item).where(Item.id == item_id, Item.project_id == project_id)
                                 .values(priority=priority))
        if result.rowcount == 0:
            raise NotFound(f"items[{item_id}]: no such item in project {project_id}")
        changed += result.rowcount
    for external_id, priority in (by_external_id or {}).items():
        result = session.execute(update(Item).where(Item.external_id == external_id,
                                                    Item.project_id == project_id).values(priority=priority))
        if result.rowcount == 0:
            raise NotFound(f"external_id {external_id!r}: no such item in project {project_id}")
        changed += result.rowcount
    return changed


def list_items(session: Session, *, project_id: int, offset: int = 0, limit: int = 100) -> list[Item]:
    return list(session.scalars(select(Item).where(Item.project_id == project_id).order_by(Item.id)
                                .offset(offset).limit(limit)))


def project_progress(session: Session, *, project: Project) -> dict[str, Any]:
    """Items, judgments and how far the regular items are towards their overlap."""
    regular = session.execute(
        select(func.count(Item.id), func.coalesce(func.sum(Item.n_done), 0))
        .where(Item.project_id == project.id, Item.is_gold.is_(False))
    ).one()
    complete = session.scalar(select(func.count(Item.id)).where(
        Item.project_id == project.id, Item.is_gold.is_(False), Item.complete.is_(True))) or 0
    gold = session.scalar(select(func.count(Item.id)).where(Item.project_id == project.id,
                                                             Item.is_gold.is_(True))) or 0
    judgments = session.scalar(select(func.count(Judgment.id)).where(Judgment.project_id == project.id)) or 0
    n_items = regular[0] or 0
    wanted = n_items * project.overlap
    return {
        "items": n_items,
        "gold_items": gold,
        "complete_items": complete,
        "judgments": judgments,
        "regular_judgments": int(regular[1] or 0),
        "wanted_judgments": wanted,
        "progress": (min(int(regular[1] or 0), wanted) / wanted) if wanted else 0.0,
    }
