"""Worker transition -> browser latency on the default (embedded) set-up.

Starts, on a throw-away data dir: daphne (the web process, which runs the event relay),
a django-q2 cluster and the ticker, exactly as `manage.py up` does. It connects one
WebSocket client to /ws/projects/<slug>/ (with a real session cookie and Origin, like a
browser), triggers builds, and for every event received computes
`receive time - Event.created_at` (the worker stamps created_at just before its commit).
Prints p50 / p95 / max for task transitions made by workers, log chunks, and everything.

    .venv/bin/python bench/live.py [--builds 10] [--tasks 6] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(tempfile.mkdtemp(prefix="buildsite-bench-live-"))
os.environ["BUILDSITE_DATA_DIR"] = str(DATA)
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildsite.settings")
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(tasks: int):
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from builds.services import save_pipeline
    from buildsite.services import create_project

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench-pw-1")
    project = create_project(creator=user, slug="bench", name="Bench")
    body = "\n".join(
        f"  t{i}:\n    needs: [{'root' if i else ''}]\n    steps: [{{run: 'echo step {i}'}}]"
        for i in range(tasks - 1)
    ).replace("needs: []", "needs: [root]")
    definition = f"tasks:\n  root:\n    steps: [{{run: 'echo root'}}]\n{body}\n"
    save_pipeline(user=None, project=project, name="fan", definition=definition)
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return user, project, f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


class MiniSocket:
    """Just enough of RFC 6455 for a client that listens (no extra dependency)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str, cookie: str) -> MiniSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
                f"Cookie: {cookie}\r\n\r\n"
            ).encode()
        )
        status = await reader.readline()
        if b" 101 " not in status:
            raise RuntimeError(f"websocket refused: {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        return cls(reader, writer)

    async def recv(self) -> str | None:
        while True:
            head = await self.reader.readexactly(2)
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(length)
            if opcode == 1:
                return payload.decode()
            if opcode == 8:
                return None
            if opcode == 9:  # ping -> pong (client frames are masked)
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                self.writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def describe(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<34} no samples"
    ms = [v * 1000 for v in values]
    return (
        f"{name:<34} n={len(ms):<5} p50={statistics.median(ms):6.1f} ms  "
        f"p95={percentile(ms, 95):6.1f} ms  max={max(ms):6.1f} ms"
    )


async def measure(port, cookie, project, builds, timeout):
    from asgiref.sync import sync_to_async

    from builds.models import Build
    from builds.services import trigger_build
    from tasks.models import Event

    after = await sync_to_async(
        lambda: Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    )()
    ws = await MiniSocket.connect(port, f"/ws/projects/{project.slug}/?after={after}", cookie)
    samples: dict[str, list[float]] = {"worker": [], "log": [], "all": []}
    ids: list[int] = []

    async def listen():
        while True:
            text = await ws.recv()
            if text is None:
                return
            received = time.time()
            event = json.loads(text)
            if "id" not in event:
                continue
            ids.append(event["id"])
            lag = received - datetime.fromisoformat(event["time"]).timestamp()
            samples["all"].append(lag)
            if event["type"] == "log":
                samples["log"].append(lag)
            elif event["type"] == "task.state" and event["state"] in (
                "running",
                "succeeded",
                "failed",
            ):
                samples["worker"].append(lag)

    listener = asyncio.create_task(listen())
    started = []
    for _ in range(builds):
        started.append(
            await sync_to_async(trigger_build)(user=None, project=project, pipeline="fan")
        )
        await asyncio.sleep(0.3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = await sync_to_async(
            lambda: Build.objects.filter(
                id__in=[b.id for b in started], finished_at__isnull=False
            ).count()
        )()
        if done == len(started):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # the last events' relay
    listener.cancel()
    expected = await sync_to_async(
        lambda: Event.objects.filter(project=project, id__gt=after).count()
    )()
    return samples, ids, expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    user, project, cookie = setup(args.tasks)
    port = free_port()
    env = {**os.environ, "BUILDSITE_WORKERS": str(args.workers), "BUILDSITE_LOG_LEVEL": "WARNING"}
    from buildsite.processes import process_commands  # after django.setup() in setup()

    commands = list(process_commands(host="127.0.0.1", port=port).values())
    procs = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in commands
    ]
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(2.0)  # let the cluster's workers start
        samples, ids, expected = asyncio.run(
            measure(port, cookie, project, args.builds, args.timeout)
        )
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(DATA, ignore_errors=True)
    print(
        f"embedded set-up: SQLite (WAL), django-q2 ORM broker, in-memory channel layer + relay; "
        f"{args.builds} builds x {args.tasks} tasks, {args.workers} workers, {os.cpu_count()} CPUs"
    )
    print(describe("worker task transition -> socket", samples["worker"]))
    print(describe("log chunk -> socket", samples["log"]))
    print(describe("every event -> socket", samples["all"]))
    in_order = ids == sorted(ids)
    print(
        f"events received {len(ids)} of {expected} written; duplicates {len(ids) - len(set(ids))};"
        f" in id order: {in_order}"
    )
    worker = [v * 1000 for v in samples["worker"]]
    if worker and percentile(worker, 95) > 100:
        print("p95 worker transition latency is above the 100 ms target")
        sys.exit(1)


if __name__ == "__main__":
    main()
