"""Real worker processes for tests: `manage.py qcluster` (which does its own upkeep)
started against the test database, so races, SIGKILL and live updates are tested for real."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

from buildsite.processes import process_commands

ROOT = Path(__file__).resolve().parent.parent


def database_env() -> dict[str, str]:
    """Environment that points a child process at the database this test uses."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"BUILDSITE_SQLITE_PATH": str(db["NAME"]), "DATABASE_URL": ""}
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return {"DATABASE_URL": f"postgres://{user}@{host}:{port}/{db['NAME']}"}


class Cluster:
    """A django-q2 cluster; `kill()` SIGKILLs its whole process group, `stop()` sends
    SIGTERM to its main process, as a service manager does."""

    def __init__(self, *, workers: int = 2, extra_env: dict[str, str] | None = None) -> None:
        self.env = {
            **os.environ,
            **database_env(),
            "BUILDSITE_DATA_DIR": str(settings.DATA_DIR),
            "BUILDSITE_WORKERS": str(workers),
            "BUILDSITE_Q_NAME": settings.Q_CLUSTER["name"],
            "BUILDSITE_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _spawn(self, *args: str) -> subprocess.Popen:
        log = Path(settings.DATA_DIR) / f"cluster-{uuid.uuid4().hex[:8]}-{args[0]}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), *args],
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.logs.append(log)
        self.procs.append(proc)
        return proc

    def start(self) -> Cluster:
        self._spawn("qcluster")
        return self

    def kill(self) -> None:
        """SIGKILL every process (and its children, shell steps included)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.procs = []

    def stop(self) -> None:
        """SIGTERM to each main process, as a service manager sends it; SIGKILL to what
        is still there after 12 s (qcluster promises to be gone within 10)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 12
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs = []

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class WebServer:
    """daphne serving buildsite.asgi on 127.0.0.1:<free port> for the test database."""

    def __init__(self, *, extra_env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(settings.DATA_DIR) / f"daphne-{self.port}.log"
        env = {
            **os.environ,
            **database_env(),
            "BUILDSITE_DATA_DIR": str(settings.DATA_DIR),
            "BUILDSITE_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                process_commands(host="127.0.0.1", port=self.port)["web"],
                cwd=ROOT,
                env=env,
                start_new_session=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("daphne did not start listening within 30 s")

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.1, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
