"""The serve benchmark harness on a small workload: a real server, real clients, the database checked afterwards."""

from __future__ import annotations

import json

import pytest

from alinea.bench import serve as bench
from alinea.bench.serve import ServeWorkload, bench_serve

SMALL = dict(clients=8, judgments=160, warmup=16, retry_share=0.1)


def _postgres_or_skip() -> None:
    from tests.feedback.conftest import _pg_reachable

    why = _pg_reachable()
    if why:
        pytest.skip(why)


@pytest.fixture(autouse=True)
def cheap_passwords():
    from argon2 import PasswordHasher, profiles

    from alinea.feedback import security

    security.set_password_hasher(PasswordHasher.from_parameters(profiles.CHEAPEST))
    yield
    security.set_password_hasher(PasswordHasher())


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_bench_serve_small(db):
    if db == "postgres":
        _postgres_or_skip()
    result = bench_serve(ServeWorkload(db=db, workers=1 if db == "sqlite" else 2, pg_connections=3, **SMALL))
    assert result.errors == {}
    assert result.lost == 0 and result.duplicated == 0
    assert result.acknowledged == SMALL["judgments"] + SMALL["warmup"]
    assert result.retries > 0  # some submissions were sent twice, and answered with the first judgment
    assert result.judgments_per_s > 0 and 0 < result.p50_ms <= result.p99_ms
    # CPU per judgment: the server's processes, the clients, and PostgreSQL's backends for the server's sessions
    assert result.server_cpu_ms > 0 and result.client_cpu_ms > 0 and result.load_average is not None
    assert (result.database_cpu_ms is None) == (db == "sqlite")
    if db == "postgres":
        # Measured (not None), but /proc counts CPU in 10 ms ticks per backend: a run this small on a quiet machine
        # can round to 0.
        assert result.database_cpu_ms >= 0


def test_database_check_counts_what_is_missing(tmp_path):
    from alinea.feedback.settings import FeedbackSettings

    settings = FeedbackSettings(db_url=f"sqlite:///{tmp_path / 'b.db'}")
    bench._prepare(settings, ServeWorkload(clients=2, judgments=10, warmup=0))
    lost, duplicated = bench._check_database(settings, {12345: (0, "never stored")}, overlap=3)
    assert (lost, duplicated) == (1, 0)


@pytest.mark.slow
def test_cli_prints_the_figures(run_cli, monkeypatch):
    monkeypatch.setattr(bench, "ServeWorkload", lambda **kw: ServeWorkload(**{**kw, **SMALL}))
    code, out, _ = run_cli("bench", "serve", "--db", "sqlite", "--json")
    assert code == 0
    figures = json.loads(out)
    assert {"judgments_per_s", "p50_ms", "p99_ms", "lost", "duplicated"} <= set(figures)
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["server_cpu_ms"] > 0 and figures["client_cpu_ms"] > 0 and figures["database_cpu_ms"] is None


def test_cpu_of_a_process_tree_is_counted():
    import os
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                              "while time.process_time() < end: pass\ntime.sleep(30)"])
    try:
        assert child.pid in bench._process_tree(os.getpid())
        deadline = time.monotonic() + 30  # the machine may be busy: wait for the child's 0.3 s of CPU
        while bench._proc_cpu_s(child.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0.25 <= bench._proc_cpu_s(child.pid) < 5
    finally:
        child.kill()
        child.wait()
    assert bench._proc_cpu_s(child.pid) == 0.0  # gone
