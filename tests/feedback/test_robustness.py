"""The server killed with SIGKILL in the middle of a load loses no acknowledged judgment (SQLite and PostgreSQL).

"Acknowledged" means the client received a 201 answer: by then the transaction has committed, and with SQLite in
WAL mode (synchronous NORMAL, the default) a committed transaction is in the WAL file, which outlives the process.
The server runs under uvicorn in a subprocess on a free port, exactly as `alinea serve` runs it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import select

from alinea.bench import serve as bench
from alinea.feedback.db import Database
from alinea.feedback.models import Judgment

CLIENTS = 8


async def _load_until_killed(port: int, project_id: int, tokens: list[str], server, kill_after: int) -> dict:
    acknowledged: dict[int, str] = {}
    killed = asyncio.Event()

    async def annotator(token: str) -> None:
        connection = bench._Connection("127.0.0.1", port, token)
        try:
            status, lease = await connection.request("POST", f"/api/v1/projects/{project_id}/lease")
            while status == 200:
                key = uuid.uuid4().hex
                status, answer = await connection.request(
                    "POST", f"/api/v1/projects/{project_id}/items/{lease['item_id']}/judgments",
                    {"answer": {"choice": "left", "strength": 1}, "idempotency_key": key, "lease_next": True})
                if status != 201:
                    break
                acknowledged[answer["id"]] = key
                if len(acknowledged) >= kill_after and not killed.is_set():
                    killed.set()
                    os.kill(server.pid, signal.SIGKILL)  # mid-load: the other clients have requests in flight
                lease = answer["next"]
                status = 200 if lease else 204
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass  # the server is gone
        finally:
            await connection.close()

    await asyncio.wait_for(asyncio.gather(*(annotator(t) for t in tokens)), timeout=60)
    return acknowledged


@pytest.mark.slow
def test_sigkill_mid_load_loses_no_acknowledged_judgment(settings, tmp_path):
    workload = bench.ServeWorkload(clients=CLIENTS, judgments=600, warmup=0, overlap=2)
    project_id, tokens = bench._prepare(settings, workload)
    server = bench.start_server(replace(settings, pool_size=4), workers=1, port=bench._free_port(),
                                log_path=tmp_path / "server.log")
    port = int(server.args[server.args.index("--port") + 1])
    try:
        acknowledged = asyncio.run(_load_until_killed(port, project_id, tokens, server, kill_after=150))
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    assert server.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 150
    database = Database.from_settings(settings)
    with database.read() as session:
        stored = dict(session.execute(select(Judgment.id, Judgment.idempotency_key)).tuples().all())
    database.dispose()
    missing = {judgment_id for judgment_id in acknowledged if stored.get(judgment_id) != acknowledged[judgment_id]}
    assert missing == set()
