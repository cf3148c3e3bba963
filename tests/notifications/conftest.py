"""A webhook receiver on 127.0.0.1 started by the test, and settings that let the
server call it quickly (private addresses allowed, no backoff wait)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    # Status codes to answer, in order; 200 once they are used up.
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.requests)} requests received, expected {count}")


@pytest.fixture
def receiver():
    state: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            rec: Receiver = state["receiver"]
            with rec.lock:
                rec.requests.append(Received(self.path, dict(self.headers.items()), body))
                status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            answer = f"answer {status}".encode()
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    state["receiver"] = rec
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def notify_settings(settings):
    settings.BUILDSITE = {
        **settings.BUILDSITE,
        "ALLOW_PRIVATE_URLS": True,
        "NOTIFY_BACKOFF_SECONDS": 0.0,
        "NOTIFY_TIMEOUT_SECONDS": 3.0,
        "NOTIFY_MAX_ATTEMPTS": 3,
        # On PostgreSQL the test database's sequences keep the ids rolled-back tests
        # used, so each test's first event follows a hole that upkeep would otherwise
        # wait out (test_outbox.py tests that wait itself).
        "NOTIFY_GAP_SECONDS": 0.0,
    }
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings.BUILDSITE


@pytest.fixture
def outbox(transactional_db):
    """Start reading the outbox at the events that exist now."""
    from notifications.outbox import _position

    return _position()
