"""notifications.sending against receivers that never finish answering."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from notifications import sending


def dripping_receiver(what: str) -> tuple[socket.socket, threading.Event]:
    """A receiver that answers one byte (of its headers or of its body) at a time,
    often enough that no per-read timeout ever fires."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        head = b"HTTP/1.1 200 OK\r\n"
        if what == "body":
            conn.sendall(head + b"Content-Length: 100000\r\n\r\n")
        else:
            conn.sendall(head)
        drip = b"x" if what == "body" else b"X-A: b\r\n"
        while not stop.is_set():
            try:
                conn.sendall(drip)
            except OSError:
                return
            time.sleep(0.1)

    threading.Thread(target=serve, daemon=True).start()
    return server, stop


@pytest.mark.parametrize("what", ["headers", "body"])
def test_a_dripping_receiver_holds_no_thread_or_socket_past_the_deadline(what):
    server, stop = dripping_receiver(what)
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
        attempt = sending.post(url, b"{}", {}, timeout=0.5, allow_private=True)
        assert not attempt.ok and attempt.retry and "timeout" in attempt.error
        # The abandoned call's connection is shut down, so its thread ends with it
        # (it used to read one dripped byte after another for as long as they came).
        time.sleep(0.3)
        assert [t for t in threading.enumerate() if t.name == "notify-post"] == []
    finally:
        stop.set()
        server.close()
