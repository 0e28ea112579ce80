"""CLI commands: the feedback web app (registered by `alinea.cli`).

- `alinea serve`: run the app (migrations applied on start);
- `alinea users create|list|disable|enable|token`: accounts;
- `alinea feedback project|import|export|quality`: projects, items, exports and quality figures from the shell;
- `alinea bench serve`: concurrent annotators against the server (judgments/s, latency, lost, duplicated).

Every command takes `--db`: a database URL (sqlite:///feedback.db, postgresql+psycopg://user@host/db) or a path,
read as an SQLite file. The default is ./feedback.db. The commands are thin: the work is in `alinea.feedback`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from alinea.errors import UserError

DEFAULT_DB = "feedback.db"
SECRET_ENV = "ALINEA_SECRET_KEY"

users_app = typer.Typer(help="Accounts of the feedback app: create, list, disable, enable, API tokens.",
                        no_args_is_help=True)
feedback_app = typer.Typer(help="Feedback projects from the shell: create, import items, export, quality.",
                           no_args_is_help=True)

DbOpt = Annotated[str, typer.Option("--db", help="Database URL, or a path to an SQLite file (default ./feedback.db).")]
SchemaOpt = Annotated[str, typer.Option("--schema", help="PostgreSQL schema to use (default: the server's search_path).")]


def register(apps: dict) -> None:
    """Add this area's commands to the typer apps in `apps` (keys: root, bench, eval, data, reward)."""
    apps["root"].command("serve")(serve_cmd)
    apps["root"].add_typer(users_app, name="users")
    apps["root"].add_typer(feedback_app, name="feedback")
    apps["bench"].command("serve")(bench_serve_cmd)


def db_url(value: str) -> str:
    """A URL as given, or sqlite:///<path> for a path."""
    return value if "://" in value else f"sqlite:///{value}"


def _settings(db: str, schema: str = "", **extra):
    from alinea.feedback.settings import FeedbackSettings

    return FeedbackSettings(db_url=db_url(db), db_schema=schema, **extra)


def _database(db: str, schema: str = ""):
    """A migrated database (migrations are idempotent, so any command may be the first one run)."""
    from alinea.feedback import db as feedback_db

    database = feedback_db.Database.from_settings(_settings(db, schema))
    feedback_db.upgrade(database.engine)
    return database


# ---------------------------------------------------------------------------------------------------------------------
# serve


def chat_sampler_from_checkpoint(model_dir: Path, *, max_new_tokens: int, temperature: float, top_p: float):
    """`sample(messages, n, seed) -> n answers` from a local checkpoint, for chat tasks (one generation at a time)."""
    import threading

    from alinea.model.causal_lm import load_model_and_tokenizer
    from alinea.model.generation import generate

    model, tokenizer = load_model_and_tokenizer(model_dir)
    lock = threading.Lock()

    def sample(messages: list[dict[str, str]], n: int, seed: int) -> list[str]:
        with lock:
            answers = generate(model, tokenizer, [messages] * n, max_new_tokens=max_new_tokens,
                               temperature=temperature, top_p=top_p, batch_size=n, seed=seed)
        return [answer.text for answer in answers]

    return sample


def serve_cmd(
    db: DbOpt = DEFAULT_DB,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Server processes. SQLite: 1 (it has one writer). PostgreSQL: 1 per core left to the server; uvicorn splits keep-alive connections unevenly between workers, and each worker's clients wait in proportion to its share (docs/feedback.md).")] = 1,
    pool_size: Annotated[int, typer.Option("--pool-size", help="PostgreSQL: database connections per worker, so transactions at once (6 did best with one worker on 2 cores).")] = 8,
    schema: SchemaOpt = "",
    chat_model: Annotated[Path | None, typer.Option("--chat-model", help="Checkpoint that answers chat tasks (two samples per turn).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Chat: longest answer in tokens.")] = 128,
    temperature: Annotated[float, typer.Option("--temperature", help="Chat: sampling temperature.")] = 0.8,
    cookie_secure: Annotated[bool, typer.Option("--cookie-secure", help="Mark cookies Secure (behind HTTPS).")] = False,
    sqlite_synchronous: Annotated[str, typer.Option("--sqlite-synchronous", help="NORMAL (survives a crash of the server) or FULL (also of the machine; slower).")] = "NORMAL",
    access_log: Annotated[bool, typer.Option("--access-log", help="Print one line per request (off by default: under load it costs throughput).")] = False,
) -> None:
    """Run the human-feedback web app: pages at http://HOST:PORT/, the JSON API under /api/v1.

    Migrations are applied before the server starts. Set ALINEA_SECRET_KEY to keep forms valid across restarts
    (otherwise a random key is drawn per start; logins survive either way).

    \b
    Examples:
      alinea users create admin --role admin
      alinea serve --db feedback.db --port 8000
      alinea serve --db postgresql+psycopg://postgres@127.0.0.1:5432/feedback --pool-size 6
      alinea serve --chat-model runs/sft-XXXX/final
    """
    import uvicorn

    from alinea.feedback import db as feedback_db
    from alinea.feedback.app import SETTINGS_ENV, create_app

    if pool_size < 1:
        raise UserError(f"--pool-size: at least 1, found {pool_size}")
    extra = {"cookie_secure": cookie_secure, "sqlite_synchronous": sqlite_synchronous, "migrate": False,
             "pool_size": pool_size}
    if os.environ.get(SECRET_ENV):
        extra["secret_key"] = os.environ[SECRET_ENV]
    settings = _settings(db, schema, **extra)
    database = feedback_db.Database.from_settings(settings)
    feedback_db.upgrade(database.engine)
    database.dispose()
    if workers < 1:
        raise UserError(f"--workers: at least 1, found {workers}")
    log_level = "info" if access_log else "warning"  # uvicorn writes request lines at info level
    typer.echo(f"alinea feedback app on http://{host}:{port}/ (database {settings.db_url}, {workers} worker(s))")
    if workers == 1:
        sampler = None
        if chat_model is not None:
            sampler = chat_sampler_from_checkpoint(chat_model, max_new_tokens=max_new_tokens,
                                                   temperature=temperature, top_p=0.95)
        uvicorn.run(create_app(settings, chat_sampler=sampler), host=host, port=port, log_level=log_level,
                    access_log=access_log)
        return
    if chat_model is not None:
        raise UserError("--chat-model runs in a single process: use --workers 1 with it.")
    from dataclasses import asdict

    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    # Each worker process imports the factory and reads the settings from the environment.
    uvicorn.run("alinea.feedback.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=access_log)


# ---------------------------------------------------------------------------------------------------------------------
# users


def _read_password(password: str | None) -> str:
    if password is not None:
        return password
    if os.environ.get("ALINEA_PASSWORD"):
        return os.environ["ALINEA_PASSWORD"]
    if not sys.stdin.isatty():
        raise UserError("--password: give a password, set ALINEA_PASSWORD, or run in a terminal to be asked for one.")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Login name: letters, digits, _ . @ -.")],
    role: Annotated[str, typer.Option("--role", help="admin, annotator or viewer.")] = "annotator",
    password: Annotated[str | None, typer.Option("--password", help="Password (default: $ALINEA_PASSWORD, or asked).")] = None,
    display_name: Annotated[str, typer.Option("--name", help="Name shown in the app.")] = "",
    token: Annotated[bool, typer.Option("--token", help="Also create an API token and print it (shown once).")] = False,
    no_password: Annotated[bool, typer.Option("--no-password", help="An account for programs: API tokens only, no login.")] = False,
    projects: Annotated[list[str] | None, typer.Option("--project", help="Assign to this project (repeatable).")] = None,
    db: DbOpt = DEFAULT_DB,
    schema: SchemaOpt = "",
) -> None:
    """Create a user.

    \b
    Examples:
      alinea users create admin --role admin
      ALINEA_PASSWORD=... alinea users create ana --project "hh pairwise"
      alinea users create loop-bot --no-password --token --project "hh pairwise"
    """
    from alinea.feedback import crud

    database = _database(db, schema)
    with database.write() as session:
        user = crud.create_user(session, username=username, password=None if no_password else _read_password(password),
                                role=role, display_name=display_name)
        for name in projects or []:
            project = crud.get_project_by_name(session, name=name)
            crud.add_members(session, project_id=project.id, usernames=[username])
        printed = crud.create_api_token(session, user_id=user.id, name="cli") if token else None
    typer.echo(f"user {username} ({role}) created")
    if printed:
        typer.echo(f"API token (shown once): {printed}")


@users_app.command("list")
def users_list(
    db: DbOpt = DEFAULT_DB,
    schema: SchemaOpt = "",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per user.")] = False,
) -> None:
    """List users with their role and whether they are active."""
    from alinea.feedback import crud

    database = _database(db, schema)
    with database.read() as session:
        users = crud.list_users(session)
    for user in users:
        if as_json:
            typer.echo(json.dumps({"username": user.username, "role": user.role, "active": user.active,
                                   "display_name": user.display_name}, ensure_ascii=False))
        else:
            typer.echo(f"{user.username:24} {user.role:10} {'active' if user.active else 'disabled'}")


def _set_active(username: str, active: bool, db: str, schema: str) -> None:
    from alinea.feedback import crud

    database = _database(db, schema)
    with database.write() as session:
        crud.set_user_active(session, username=username, active=active)
    typer.echo(f"user {username} {'enabled' if active else 'disabled'}")


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="The user to disable.")], db: DbOpt = DEFAULT_DB,
                  schema: SchemaOpt = "") -> None:
    """Disable a user: their sessions end and their API tokens stop working (their judgments stay)."""
    _set_active(username, False, db, schema)


@users_app.command("enable")
def users_enable(username: Annotated[str, typer.Argument(help="The user to enable again.")], db: DbOpt = DEFAULT_DB,
                 schema: SchemaOpt = "") -> None:
    """Enable a disabled user again."""
    _set_active(username, True, db, schema)


@users_app.command("token")
def users_token(username: Annotated[str, typer.Argument(help="The user the token acts as.")],
                name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "cli",
                db: DbOpt = DEFAULT_DB, schema: SchemaOpt = "") -> None:
    """Create an API token for a user (e.g. the loop's simulated annotators) and print it once."""
    from alinea.feedback import crud

    database = _database(db, schema)
    with database.write() as session:
        user = crud.get_user(session, username=username)
        token = crud.create_api_token(session, user_id=user.id, name=name)
    typer.echo(token)


# ---------------------------------------------------------------------------------------------------------------------
# projects, import, export, quality


@feedback_app.command("project")
def feedback_project(
    name: Annotated[str, typer.Argument(help="Project name.")],
    task: Annotated[str, typer.Option("--task", help="pairwise, ranking, rating, thumbs, demonstration or chat.")],
    overlap: Annotated[int, typer.Option("--overlap", help="Distinct annotators per item.")] = 3,
    gold_rate: Annotated[float, typer.Option("--gold-rate", help="Share of leases that are gold items.")] = 0.0,
    lease_seconds: Annotated[int, typer.Option("--lease-seconds", help="How long an annotator holds an item.")] = 900,
    guidelines: Annotated[Path | None, typer.Option("--guidelines", help="Markdown file: version 1 of the guidelines.")] = None,
    aspects: Annotated[str, typer.Option("--aspects", help="Rating tasks: comma-separated aspects.")] = "",
    members: Annotated[str, typer.Option("--members", help="Comma-separated usernames to assign.")] = "",
    db: DbOpt = DEFAULT_DB,
    schema: SchemaOpt = "",
) -> None:
    """Create a project.

    \b
    Example:
      alinea feedback project "hh pairwise" --task pairwise --overlap 3 --guidelines guidelines.md --members ana,ben
    """
    from alinea.feedback import crud

    text = guidelines.read_text(encoding="utf-8") if guidelines else ""
    spec = crud.ProjectSpec(name=name, task_type=task, overlap=overlap, gold_rate=gold_rate,
                            lease_seconds=lease_seconds, guidelines=text,
                            aspects=[a.strip() for a in aspects.split(",") if a.strip()])
    database = _database(db, schema)
    with database.write() as session:
        project = crud.create_project(session, spec=spec)
        names = [m.strip() for m in members.split(",") if m.strip()]
        if names:
            crud.add_members(session, project_id=project.id, usernames=names)
        project_id = project.id
    typer.echo(f"project {name!r} ({task}) created with id {project_id}")


@feedback_app.command("import")
def feedback_import(
    source: Annotated[Path, typer.Argument(help="JSONL of alinea records (.jsonl or .jsonl.gz).")],
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    gold: Annotated[bool, typer.Option("--gold", help="The records carry known answers: import them as gold items.")] = False,
    priority: Annotated[float, typer.Option("--priority", help="Priority of the new items (higher first).")] = 0.0,
    db: DbOpt = DEFAULT_DB,
    schema: SchemaOpt = "",
) -> None:
    """Import items from a record file; a file with a bad line is rejected whole, each error as file:line: field.

    \b
    Examples:
      alinea feedback import runs/demo-data/feedback.jsonl --project "hh pairwise"
      alinea feedback import gold.jsonl --project "hh pairwise" --gold
    """
    from alinea.feedback import crud

    database = _database(db, schema)
    with database.write() as session:
        target = crud.get_project_by_name(session, name=project)
        parsed = crud.parse_item_path(source, task_type=target.task_type, gold=gold)
        ids = crud.add_items(session, project=target, parsed=parsed, priority=priority)
    typer.echo(f"{source} -> project {project!r}: {len(ids)} {'gold ' if gold else ''}items")


@feedback_app.command("export")
def feedback_export(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
    format_name: Annotated[str, typer.Option("--format", "-f", help="canonical, records, trl or aggregate.")] = "canonical",
    method: Annotated[str, typer.Option("--method", help="aggregate: majority or weighted (by gold accuracy).")] = "majority",
    db: DbOpt = DEFAULT_DB,
    schema: SchemaOpt = "",
) -> None:
    """Export a project's judgments.

    \b
    Examples:
      alinea feedback export -p "hh pairwise" --format records -o feedback.jsonl   # for alinea reward train
      alinea feedback export -p "hh pairwise" --format trl -o trl_prefs.jsonl
      alinea feedback export -p "hh pairwise" --format aggregate --method weighted -o labels.jsonl
    """
    from alinea.data.jsonl import write_jsonl
    from alinea.feedback import crud, export

    if format_name not in export.FORMATS:
        raise UserError(f"--format: one of {', '.join(export.FORMATS)}, found {format_name!r}")
    if method not in ("majority", "weighted"):
        raise UserError(f"--method: majority or weighted, found {method!r}")
    database = _database(db, schema)
    with database.read() as session:
        target = crud.get_project_by_name(session, name=project)
        rows = export.export_rows(session, project=target, format=format_name, method=method)
    n = write_jsonl(out, rows)
    typer.echo(f"project {project!r} -> {out}: {n} rows ({format_name})")


@feedback_app.command("quality")
def feedback_quality(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    db: DbOpt = DEFAULT_DB,
    schema: SchemaOpt = "",
) -> None:
    """Progress, per-annotator figures (throughput, time, gold accuracy, position bias) and agreement, as JSON."""
    from alinea.feedback import crud, quality

    database = _database(db, schema)
    with database.read() as session:
        target = crud.get_project_by_name(session, name=project)
        figures = quality.project_quality(session, project=target)
    typer.echo(json.dumps(figures, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------------------------------
# bench


def bench_serve_cmd(
    db: Annotated[str, typer.Option("--db", help="sqlite or postgres.")] = "sqlite",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    clients: Annotated[int, typer.Option("--clients", help="Simulated annotators at once.")] = 50,
    judgments: Annotated[int, typer.Option("--judgments", help="Judgments in the timed phase.")] = 6000,
    workers: Annotated[int, typer.Option("--workers", help="Server processes (uvicorn workers).")] = 1,
    pg_url: Annotated[str, typer.Option("--pg-url", help="PostgreSQL server (db=postgres); a fresh schema is made and dropped.")] = "",
    pg_connections: Annotated[int, typer.Option("--pg-connections", help="PostgreSQL: database connections (and transactions at once) per worker.")] = 6,
) -> None:
    """Concurrent annotators leasing items and submitting judgments over loopback, then a check of the database.

    Prints {"judgments_per_s", "p50_ms", "p99_ms", "lost", "duplicated"} (and the workload). Targets: >= 500
    judgments/s, p99 < 100 ms, 0 lost, 0 duplicated.

    \b
    Examples:
      alinea bench serve --db sqlite --json
      alinea bench serve --db postgres --json
    """
    from alinea.bench.serve import DEFAULT_PG_URL, ServeWorkload, bench_serve

    if db not in ("sqlite", "postgres"):
        raise UserError(f"--db: sqlite or postgres, found {db!r}")
    if workers < 1 or pg_connections < 1:
        raise UserError(f"--workers and --pg-connections: at least 1, found {workers} and {pg_connections}")
    workload = ServeWorkload(db=db, clients=clients, judgments=judgments, workers=workers,
                             pg_connections=pg_connections, pg_url=pg_url or DEFAULT_PG_URL)
    result = bench_serve(workload)
    shown = {k: getattr(result, k) for k in ("judgments_per_s", "p50_ms", "p99_ms", "lost", "duplicated")}
    if as_json:
        typer.echo(json.dumps({**shown, "acknowledged": result.acknowledged, "retries": result.retries,
                               "errors": result.errors, "server_cpu_ms": result.server_cpu_ms,
                               "database_cpu_ms": result.database_cpu_ms, "client_cpu_ms": result.client_cpu_ms,
                               "load_average": result.load_average, "workload": result.workload}))
    else:
        typer.echo(" ".join(f"{k}={v}" for k, v in shown.items()))
        if result.errors:
            typer.echo(f"errors: {result.errors}")
