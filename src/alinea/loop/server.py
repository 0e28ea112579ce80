"""The feedback app the loop talks to: an embedded `alinea serve` on SQLite in a folder, or one already running.

`start_server(folder)` runs `python -m alinea.cli serve --db sqlite:///<folder>/feedback.db --host 127.0.0.1 --port
<free port>` as a subprocess, waits until GET /api/v1/health answers, and makes sure an admin account with an API
token exists (through the feedback CLI, run as a subprocess, since the loop never imports the app's modules:
`alinea users create NAME --role admin --token` before the first start, `alinea users token NAME` when a saved token
stopped working). The admin's name, password and token are kept in `<folder>/admin.json` (readable
by the owner only), so that the server started again on the same folder (a resumed loop) reuses the same database
and credentials. Use it as a context manager: leaving the block stops the server (SIGTERM, then SIGKILL after
`stop_timeout`). On Linux the server also receives SIGTERM when the process that started it dies, so a crashed
loop leaves no orphan holding the database (the kernel ties this to the starting *thread*: call `start_server` from
the main thread, or from a thread that lives as long as the server).

`connect(url, token)` is the other door: a client for a server someone runs (`alinea serve` for real annotators),
checked to answer and to accept the token as an admin's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alinea.data.jsonl import write_text
from alinea.errors import UserError
from alinea.loop.client import ApiError, FeedbackClient

ADMIN_FILE = "admin.json"
DB_FILE = "feedback.db"
LOG_FILE = "serve.log"
DEFAULT_ADMIN = "loop-admin"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: ask the kernel to send SIGTERM to this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def cli_command(*args: str) -> list[str]:
    """`alinea <args>` with this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "alinea.cli", *args]


@dataclass
class EmbeddedServer:
    """A running `alinea serve` subprocess and the admin token the loop uses with it."""

    folder: Path
    url: str
    token: str
    process: subprocess.Popen
    admin: str = DEFAULT_ADMIN
    stop_timeout: float = 20.0
    client_options: dict[str, Any] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE

    def client(self, **options: Any) -> FeedbackClient:
        """An admin client for this server (`options` override the client settings given to start_server)."""
        return FeedbackClient(self.url, self.token, **{**self.client_options, **options})

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the server: SIGTERM (uvicorn finishes the requests in flight), SIGKILL after `stop_timeout`."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _log_tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:].strip()
    except OSError:
        return ""


def _wait_until_healthy(process: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise UserError(f"`alinea serve` exited with code {process.returncode} before answering at {url}. "
                            f"The end of its log ({log_path}):\n{_log_tail(log_path)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise UserError(f"`alinea serve` did not answer at {url} within {timeout:.0f} s. The end of its log "
                            f"({log_path}):\n{_log_tail(log_path)}")
        time.sleep(0.1)


def _read_admin_file(path: Path) -> dict[str, str] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read the embedded server's admin credentials ({err}); delete the file to "
                        "create a new admin account.") from None
    if not all(isinstance(data.get(k), str) for k in ("username", "password", "token")):
        raise UserError(f"{path}: expected username, password and token (strings); delete the file to create a "
                        "new admin account.")
    return data


def _write_admin_file(path: Path, credentials: dict[str, str]) -> None:
    if not path.exists():  # created owner-only first: write_text keeps an existing file's permissions
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    write_text(path, [json.dumps(credentials, indent=2) + "\n"])


def _run_cli(args: list[str], *, env: dict[str, str] | None = None, what: str) -> str:
    """Run `alinea <args>` and return its standard output; a UserError with its message when it fails."""
    done = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise UserError(f"could not {what}: `alinea {' '.join(args[:2])}` exited with code {done.returncode}: "
                        f"{(done.stderr or done.stdout).strip()[-1500:]}")
    return done.stdout


def _token_in(output: str, command: str) -> str:
    """The API token a feedback CLI command printed: the last word of its last line."""
    lines = output.strip().splitlines()
    token = lines[-1].split()[-1] if lines and lines[-1].split() else ""
    if len(token) < 16:
        raise UserError(f"`alinea {command}` printed no API token; its output: {output.strip()[-500:]!r}")
    return token


def _create_admin(db_url: str, username: str, password: str) -> str:
    """Create the admin account with the feedback CLI (the password through $ALINEA_PASSWORD, never on a command
    line) and return its new API token."""
    output = _run_cli(["users", "create", username, "--role", "admin", "--token", "--db", db_url,
                       "--name", "alinea loop"], env={"ALINEA_PASSWORD": password},
                      what="create the embedded feedback app's admin account")
    return _token_in(output, "users create --token")


def _new_token(db_url: str, username: str) -> str:
    output = _run_cli(["users", "token", username, "--name", "alinea loop", "--db", db_url],
                      what=f"create an API token for {username!r}")
    return _token_in(output, "users token")


def _token_works(url: str, token: str) -> bool:
    """Whether `token` is an admin's at `url` (False for 401 and for a non-admin; other failures raise)."""
    with FeedbackClient(url, token, retries=3, backoff=0.2) as client:
        try:
            return client.me()["role"] == "admin"
        except ApiError as err:
            if err.status == 401:
                return False
            raise


def _ensure_admin_file(folder: Path, db_url: str, username: str) -> dict[str, str]:
    """The saved admin credentials, creating the account (and the database) first when there are none."""
    path = folder / ADMIN_FILE
    saved = _read_admin_file(path)
    if saved is None:
        password = secrets.token_urlsafe(18)
        token = _create_admin(db_url, username, password)
        saved = {"username": username, "password": password, "token": token}
        _write_admin_file(path, saved)
    return saved


def start_server(folder: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
                 admin: str = DEFAULT_ADMIN, startup_timeout: float = 60.0, stop_timeout: float = 20.0,
                 extra_args: list[str] | None = None, **client_options: Any) -> EmbeddedServer:
    """Start `alinea serve` on `<folder>/feedback.db` (created and migrated on first start) on `port` (a free one
    when None), wait until it answers, and return it with a working admin token (see the module docstring).

    `client_options` (timeout, retries, backoff) are the defaults of `EmbeddedServer.client()`.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{folder / DB_FILE}"
    log_path = folder / LOG_FILE
    credentials = _ensure_admin_file(folder, db_url, admin)  # before the server: the CLI migrates the database
    for attempt in range(3):  # a free port can be taken by someone else before the server binds it
        chosen = port or free_port(host)
        url = f"http://{host}:{chosen}"
        command = cli_command("serve", "--db", db_url, "--host", host, "--port", str(chosen), *(extra_args or []))
        with open(log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command[1:])}\n".encode())
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            _wait_until_healthy(process, url, log_path, startup_timeout)
            break
        except UserError:
            process.kill()
            process.wait()
            if port is not None or attempt == 2 or "address already in use" not in _log_tail(log_path).lower():
                raise
    try:
        token = credentials["token"]
        if not _token_works(url, token):  # revoked, or the database was replaced: a fresh token for the account
            token = _new_token(db_url, credentials["username"])
            _write_admin_file(folder / ADMIN_FILE, {**credentials, "token": token})
    except BaseException:
        process.terminate()
        process.wait()
        raise
    return EmbeddedServer(folder=folder, url=url, token=token, process=process, admin=credentials["username"],
                          stop_timeout=stop_timeout, client_options=dict(client_options))


def connect(url: str, token: str, **client_options: Any) -> FeedbackClient:
    """A client for a feedback app that is already running at `url`, checked: it answers (with the client's
    retries) and `token` is an admin's (the loop creates projects and accounts)."""
    client = FeedbackClient(url, token, **client_options)
    try:
        client.health()
        me = client.me()
    except BaseException:
        client.close()
        raise
    if me["role"] != "admin":
        client.close()
        raise UserError(f"feedback app at {url}: the token belongs to {me['username']!r} (role {me['role']}); the loop "
                        "needs an admin's token (`alinea users create NAME --role admin --token`).")
    return client
