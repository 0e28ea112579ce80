"""`alinea users ...` and `alinea feedback ...` through the real entry point, on an SQLite file and PostgreSQL."""

from __future__ import annotations

import json

from .conftest import PASSWORD


def db_args(settings) -> list[str]:
    args = ["--db", settings.db_url]
    return [*args, "--schema", settings.db_schema] if settings.db_schema else args


def test_users_create_list_disable(settings, run_cli, monkeypatch):
    monkeypatch.setenv("ALINEA_PASSWORD", PASSWORD)
    code, out, _ = run_cli("users", "create", "admin", "--role", "admin", "--token", *db_args(settings))
    assert code == 0 and "user admin (admin) created" in out and "aln_" in out
    assert run_cli("users", "create", "ana", *db_args(settings))[0] == 0
    code, _, err = run_cli("users", "create", "ana", *db_args(settings))
    assert code == 2 and "username: 'ana' is taken" in err  # one paragraph, no traceback
    assert "Traceback" not in err
    code, out, _ = run_cli("users", "disable", "ana", *db_args(settings))
    assert code == 0 and "user ana disabled" in out
    code, out, _ = run_cli("users", "list", "--json", *db_args(settings))
    users = [json.loads(line) for line in out.splitlines()]
    assert [(u["username"], u["role"], u["active"]) for u in users] == [("admin", "admin", True),
                                                                        ("ana", "annotator", False)]
    code, _, err = run_cli("users", "create", "bo", "--role", "boss", *db_args(settings))
    assert code == 2 and "role: one of admin, annotator, viewer" in err


def test_project_import_export(settings, run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("ALINEA_PASSWORD", PASSWORD)
    run_cli("users", "create", "ana", *db_args(settings))
    guidelines = tmp_path / "guidelines.md"
    guidelines.write_text("# Prefer the honest answer\n", encoding="utf-8")
    code, out, _ = run_cli("feedback", "project", "prefs", "--task", "pairwise", "--overlap", "1", "--guidelines",
                           guidelines, "--members", "ana", *db_args(settings))
    assert code == 0 and "project 'prefs' (pairwise) created" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "comparison", "prompt": "Q", "response_a": "A", "response_b": "B", "preference": "a"}\n'
                   '{"type": "comparison", "prompt": "Q", "response_a": "A", "response_b": "", "preference": "a"}\n',
                   encoding="utf-8")
    code, _, err = run_cli("feedback", "import", bad, "--project", "prefs", *db_args(settings))
    assert code == 2 and f"{bad}:2: response_b: a non-empty string, found an empty string" in err
    good = tmp_path / "good.jsonl"
    good.write_text(bad.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    code, out, _ = run_cli("feedback", "import", good, "--project", "prefs", *db_args(settings))
    assert code == 0 and ": 1 items" in out
    out_file = tmp_path / "export.jsonl"
    code, out, _ = run_cli("feedback", "export", "-p", "prefs", "--format", "records", "-o", out_file,
                           *db_args(settings))
    assert code == 0 and out_file.read_text(encoding="utf-8") == ""  # nothing judged yet: an empty file
    code, out, _ = run_cli("feedback", "quality", "-p", "prefs", *db_args(settings))
    assert code == 0 and json.loads(out)["progress"]["items"] == 1
    code, _, err = run_cli("feedback", "export", "-p", "nope", "-o", out_file, *db_args(settings))
    assert code == 2 and "no project named 'nope'" in err


def test_sqlite_path_without_url_and_serve_help(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("ALINEA_PASSWORD", PASSWORD)
    path = tmp_path / "sub" / "fb.db"
    assert run_cli("users", "create", "admin", "--role", "admin", "--db", path)[0] == 0
    assert path.is_file()
    code, out, _ = run_cli("serve", "--help")
    assert code == 0 and "--chat-model" in out and "--workers" in out


def test_serve_passes_the_pool_size_to_the_app_and_refuses_a_bad_one(tmp_path, run_cli, monkeypatch):
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    path = tmp_path / "fb.db"
    code, out, err = run_cli("serve", "--db", path, "--pool-size", "3", "--port", "8123")
    assert code == 0, err
    app, options = started[0]
    assert app.state.settings.pool_size == 3 and options["port"] == 8123
    app.state.database.dispose()
    code, _, err = run_cli("serve", "--db", path, "--pool-size", "0")
    assert code == 2 and "--pool-size: at least 1" in err and len(started) == 1
