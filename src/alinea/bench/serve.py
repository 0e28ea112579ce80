"""Benchmark of the feedback server: concurrent annotators leasing items and submitting judgments over loopback.

Workload (`ServeWorkload`): a pairwise project with `overlap` annotators per item and enough items for every
judgment; `clients` simulated annotators (each with its own API token and keep-alive connection) run at once. Each
client leases an item (POST .../lease), then loops: submit a judgment on the item it holds, with `lease_next` so
the answer carries its next item (one round trip per judgment, POST .../judgments), until the fixed total of
`judgments` is reached. A share `retry_share` of submissions is sent twice with the same idempotency key, as a
client would after a lost response: the second must return the first judgment, never a second row.

The server is `alinea serve`'s app under uvicorn, `workers` processes, started in a subprocess on a free port.
Afterwards the database is read directly:
- `lost`: acknowledged judgments (2xx answers) whose id is not in the database;
- `duplicated`: judgments beyond one per (annotator, idempotency key) and per (annotator, item), plus judgments
  beyond `overlap` on any item (the unique constraints should make all three impossible: this checks they hold).
Reported: judgments/s (acknowledged first submissions over the wall time of the timed phase), p50 and p99 latency of
the submit requests in milliseconds, lost, duplicated; targets >= 500 judgments/s, p99 < 100 ms, 0 and 0. Also the
CPU time per timed judgment of the server's processes, of the PostgreSQL backends serving them (found by the
application_name the server's sessions carry) and of the clients, and the load average: on a machine shared with
other work, CPU per judgment is the steadier figure.

The clients use a small asyncio HTTP/1.1 client (`_Connection`, below; uvloop's event loop when installed) rather
than httpx: the clients share the machine's cores with the server, and httpx's own CPU time per request would be a
large part of what is measured (ours: about 0.1 ms per judgment). Every request and answer is still parsed and
checked, and the latency is the full HTTP round trip as the client sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alinea.errors import UserError

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class ServeWorkload:
    """What the benchmark runs (the defaults are what `alinea bench serve` reports)."""

    db: str = "sqlite"
    """sqlite (a file in a temporary folder) or postgres (a fresh schema in `pg_url`, dropped afterwards)."""
    clients: int = 50
    """Simulated annotators submitting at the same time."""
    judgments: int = 6000
    """Judgments to submit in the timed phase (all clients together)."""
    warmup: int = 500
    """Judgments submitted before timing starts (connections, caches, the database's pages)."""
    overlap: int = 3
    """Annotators per item."""
    workers: int = 1
    """uvicorn worker processes. One, on both databases: SQLite takes one writer at a time, and on PostgreSQL
    uvicorn's workers share the listening socket, so the 50 keep-alive connections split unevenly between them
    (10/40 and 19/31 were seen) and each client waits in proportion to its worker's share (31 vs 115 ms mean in
    the 10/40 run); one worker serves them all from one queue."""
    retry_share: float = 0.02
    """Share of submissions sent a second time with the same idempotency key."""
    pg_url: str = DEFAULT_PG_URL
    """PostgreSQL server for db=postgres."""
    pg_connections: int = 6
    """Database connections per worker process (PostgreSQL), so transactions at once per worker. With one worker
    on 2 cores, 6 gave the tightest latencies (4 or 5: fewer judgments/s; 8 or 12: a longer tail)."""
    seed: int = 0


@dataclass
class ServeResult:
    judgments_per_s: float
    p50_ms: float
    p99_ms: float
    lost: int
    duplicated: int
    acknowledged: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_ms: float | None = None
    """CPU time of the server processes (all workers) per timed judgment, in milliseconds."""
    database_cpu_ms: float | None = None
    """PostgreSQL: CPU time of the server's database backends per timed judgment (None for SQLite, which runs
    inside the server processes, or when PostgreSQL is not on this machine)."""
    client_cpu_ms: float | None = None
    """CPU time of the load-generating clients (this process) per timed judgment."""
    load_average: float | None = None
    """The machine's 1-minute load average at the end of the timed phase (other work sharing the cores)."""
    workload: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------------
# a minimal HTTP/1.1 keep-alive client


class _Connection:
    """One keep-alive connection: JSON requests in, (status, parsed JSON body) out.

    Lean on purpose (it shares the machine's cores with the server): the constant part of each request head is
    encoded once, and the answer's head is read in one call and scanned for its status and Content-Length only.
    Every answer is still parsed as JSON and checked by the caller.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._head_tail = (f" HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                           "Content-Type: application/json\r\nContent-Length: ").encode()

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.writer is None:
            await self._open()
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        self.writer.write(b"%s %s%s%d\r\n\r\n%s" % (method.encode(), path.encode(), self._head_tail, len(payload),
                                                   payload))
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise ConnectionError("the server closed the connection") from None
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, (json.loads(data) if data else None)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


# ---------------------------------------------------------------------------------------------------------------------
# setup: database, users, items, server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_schema(url: str, action: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            if action == "create":
                connection.execute(text(f"CREATE SCHEMA {schema}"))
            else:
                connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    except Exception as err:
        raise UserError(f"PostgreSQL at {url} cannot be used for the benchmark: {err}") from None
    finally:
        engine.dispose()


def _prepare(settings, workload: ServeWorkload) -> tuple[int, list[str]]:
    """Migrate, create the project with its items and one annotator (with a token) per client."""
    from alinea.feedback import crud, db
    from alinea.feedback.db import Database

    database = Database.from_settings(settings)
    db.upgrade(database.engine)
    n_items = (workload.judgments + workload.warmup) // workload.overlap + workload.clients * 2
    tokens = []
    with database.write() as session:
        project = crud.create_project(session, spec=crud.ProjectSpec(
            name="bench", task_type="pairwise", overlap=workload.overlap, lease_seconds=600,
            guidelines="Pick the better answer."))
        objects = [(i, {"type": "comparison", "id": f"b{i}", "prompt": f"Question {i}: what is {i} + {i}?",
                        "response_a": f"It is {2 * i}.", "response_b": f"Maybe {2 * i + 1}.", "preference": "a"})
                   for i in range(n_items)]
        parsed = crud.parse_item_objects(objects, source="bench", task_type="pairwise", gold=False)
        crud.add_items(session, project=project, parsed=parsed)
        for k in range(workload.clients):
            user = crud.create_user(session, username=f"annotator{k:03d}", password=None, role="annotator")
            crud.add_members(session, project_id=project.id, usernames=[user.username])
            tokens.append(crud.create_api_token(session, user_id=user.id, name="bench"))
        project_id = project.id
    database.dispose()
    return project_id, tokens


def start_server(settings, *, workers: int, port: int, log_path: Path, app_name: str = "") -> subprocess.Popen:
    """`alinea serve`'s app under uvicorn in a subprocess; returns once /api/v1/health answers. `app_name` tags its
    PostgreSQL sessions (application_name)."""
    from alinea.feedback.app import SETTINGS_ENV

    values = {**asdict(settings), "migrate": False}
    env = {**os.environ, SETTINGS_ENV: json.dumps(values)}
    if app_name:
        env[_APP_NAME_ENV] = app_name
    command = [sys.executable, "-m", "uvicorn", "--factory", "alinea.feedback.app:app_from_env", "--host",
               "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
               "--no-access-log"]
    log = open(log_path, "wb")  # noqa: SIM115 - the server writes to it until it is stopped
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not start within 60 s: {log_path.read_text()[-2000:]}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------------------------------------------------
# CPU accounting (Linux /proc; None elsewhere)

_APP_NAME_ENV = "PGAPPNAME"
"""libpq's environment variable for application_name: tags the server's PostgreSQL sessions so that their backends
can be found in pg_stat_activity."""


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_tree(root: int) -> list[int]:
    """`root` and its descendants (uvicorn's worker processes)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rpartition(")")[2].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def _pg_backends(url: str, app_name: str) -> list[int]:
    """PIDs of the PostgreSQL backends serving `app_name`, when they run on this machine (else [])."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            pids = list(connection.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                                           {"name": app_name}).scalars())
    finally:
        engine.dispose()
    local = []
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as comm:
            if comm.read().strip() in ("postgres", "postmaster"):
                local.append(pid)
    return local


@dataclass
class _CpuMeter:
    """CPU seconds of the server's processes, its PostgreSQL backends and this process, between two readings."""

    server: list[int]
    database: list[int]

    def read(self) -> tuple[float, float, float]:
        return (sum(_proc_cpu_s(pid) for pid in self.server), sum(_proc_cpu_s(pid) for pid in self.database),
                time.process_time())


def _per_judgment_ms(seconds: float, judgments: int) -> float | None:
    return round(seconds / judgments * 1000, 3) if judgments else None


# ---------------------------------------------------------------------------------------------------------------------
# the load


@dataclass
class _Tally:
    """What the clients saw: acknowledged judgment ids, latencies, errors."""

    target: int
    retry_share: float = 0.0
    submitted: int = 0
    acknowledged: dict[int, tuple[int, str]] = field(default_factory=dict)
    """judgment id -> (client, idempotency key), from 201 answers."""
    retries: int = 0
    retry_mismatch: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def _annotator(client: int, connection: _Connection, project_id: int, tally: _Tally, rng: random.Random,
                     record_latency: bool) -> None:
    status, lease = await connection.request("POST", f"/api/v1/projects/{project_id}/lease")
    while status == 200 and tally.submitted < tally.target:
        tally.submitted += 1
        key = uuid.uuid4().hex
        body = {"answer": {"choice": rng.choice(("left", "right", "tie")), "strength": 0},
                "idempotency_key": key, "lease_next": True, "time_spent_ms": rng.randint(2000, 20000)}
        if body["answer"]["choice"] != "tie":
            body["answer"]["strength"] = rng.randint(1, 3)
        path = f"/api/v1/projects/{project_id}/items/{lease['item_id']}/judgments"
        started = time.perf_counter()
        status, answer = await connection.request("POST", path, body)
        if record_latency:
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        if status != 201:
            tally.error(f"submit {status}: {(answer or {}).get('detail', '')[:80]}")
            status, lease = await connection.request("POST", f"/api/v1/projects/{project_id}/lease")
            continue
        tally.acknowledged[answer["id"]] = (client, key)
        if rng.random() < tally.retry_share:
            tally.retries += 1
            again_status, again = await connection.request("POST", path, {**body, "lease_next": False})
            if again_status != 200 or not again or again["id"] != answer["id"] or not again["replayed"]:
                tally.retry_mismatch += 1
        lease = answer["next"]
        status = 200 if lease else 204
    if status not in (200, 204):
        tally.error(f"lease {status}")


async def _run_load(port: int, project_id: int, tokens: list[str], target: int, retry_share: float, seed: int,
                    record_latency: bool) -> tuple[_Tally, float]:
    tally = _Tally(target=target, retry_share=retry_share)
    connections = [_Connection("127.0.0.1", port, token) for token in tokens]
    started = time.perf_counter()
    await asyncio.gather(*(
        _annotator(k, connection, project_id, tally, random.Random(f"{seed}:{k}:{target}"), record_latency)
        for k, connection in enumerate(connections)))
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return tally, elapsed


def _run_clients(coroutine):
    """Run the clients' event loop: uvloop's when it is installed (less of the shared CPU for the clients)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def _check_database(settings, acknowledged: dict[int, tuple[int, str]], overlap: int) -> tuple[int, int]:
    """(lost, duplicated) as defined in the module docstring."""
    from sqlalchemy import func, select

    from alinea.feedback.db import Database
    from alinea.feedback.models import Judgment

    database = Database.from_settings(settings)
    with database.read() as session:
        stored = set(session.scalars(select(Judgment.id)))
        by_key = session.execute(select(func.count()).select_from(
            select(Judgment.user_id, Judgment.idempotency_key).group_by(Judgment.user_id, Judgment.idempotency_key)
            .having(func.count() > 1).subquery())).scalar_one()
        by_item_user = session.execute(select(func.count()).select_from(
            select(Judgment.user_id, Judgment.item_id).group_by(Judgment.user_id, Judgment.item_id)
            .having(func.count() > 1).subquery())).scalar_one()
        over = session.scalars(select(func.count() - overlap).select_from(Judgment)
                               .group_by(Judgment.item_id).having(func.count() > overlap)).all()
    database.dispose()
    lost = sum(1 for judgment_id in acknowledged if judgment_id not in stored)
    return lost, int(by_key) + int(by_item_user) + sum(int(extra) for extra in over)


def bench_serve(workload: ServeWorkload) -> ServeResult:
    """Run the benchmark (see the module docstring) and return its figures."""
    from alinea.feedback.settings import FeedbackSettings

    if workload.db not in ("sqlite", "postgres"):
        raise UserError(f"--db: sqlite or postgres, not {workload.db!r}")
    with tempfile.TemporaryDirectory(prefix="alinea-bench-serve-") as folder:
        schema = ""
        if workload.db == "sqlite":
            settings = FeedbackSettings(db_url=f"sqlite:///{Path(folder) / 'bench.db'}", secret_key="bench",
                                        seed=workload.seed)
        else:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            _pg_schema(workload.pg_url, "create", schema)
            settings = FeedbackSettings(db_url=workload.pg_url, db_schema=schema, secret_key="bench",
                                        seed=workload.seed, pool_size=workload.pg_connections)
        try:
            project_id, tokens = _prepare(settings, workload)
            port = _free_port()
            app_name = f"alinea-bench-{uuid.uuid4().hex[:10]}"
            server = start_server(settings, workers=workload.workers, port=port, log_path=Path(folder) / "server.log",
                                  app_name=app_name)
            try:
                warm, _ = _run_clients(_run_load(port, project_id, tokens, workload.warmup, 0.0, workload.seed,
                                                 False))
                meter = _CpuMeter(server=_process_tree(server.pid),
                                  database=_pg_backends(workload.pg_url, app_name) if schema else [])
                before = meter.read()
                tally, elapsed = _run_clients(_run_load(port, project_id, tokens, workload.judgments,
                                                        workload.retry_share, workload.seed + 1, True))
                after = meter.read()
                load = os.getloadavg()[0]
            finally:
                stop_server(server)
            acknowledged = {**warm.acknowledged, **tally.acknowledged}
            lost, duplicated = _check_database(settings, acknowledged, workload.overlap)
        finally:
            if schema:
                _pg_schema(workload.pg_url, "drop", schema)
    timed = len(tally.acknowledged)
    server_s, database_s, client_s = (end - start for start, end in zip(before, after, strict=True))
    latencies = sorted(tally.latencies_ms)
    errors = {**warm.errors, **tally.errors}
    if tally.retry_mismatch:
        errors["retry answered differently"] = tally.retry_mismatch
    return ServeResult(
        judgments_per_s=round(timed / elapsed, 1),
        p50_ms=round(statistics.median(latencies), 2) if latencies else float("nan"),
        p99_ms=round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2) if latencies else float("nan"),
        lost=lost, duplicated=duplicated, acknowledged=len(acknowledged), retries=tally.retries, errors=errors,
        server_cpu_ms=_per_judgment_ms(server_s, timed),
        database_cpu_ms=_per_judgment_ms(database_s, timed) if meter.database else None,
        client_cpu_ms=_per_judgment_ms(client_s, timed), load_average=round(load, 2),
        workload=asdict(workload) | {"pg_url": workload.pg_url if workload.db == "postgres" else None},
    )
