"""Build end -> webhook receipt latency on the default (embedded) set-up.

Starts, on a throw-away data dir, a real django-q2 cluster (`manage.py qcluster`, which
also runs upkeep, where outbox events become deliveries) and a webhook receiver on
127.0.0.1. A project gets a signed webhook target for `build.failed` and
`build.succeeded`; builds are triggered one after another (alternately failing and
passing), and for every message received the bench computes
`receipt time - build.finished_at` and checks its signature.

    .venv/bin/python bench/notify_latency.py [--builds 10] [--workers 2]

The target is 5 s; upkeep ticks every BUILDSITE_TICK_SECONDS (1 s), so expect about
a second.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(tempfile.mkdtemp(prefix="buildsite-bench-notify-"))
os.environ["BUILDSITE_DATA_DIR"] = str(DATA)
os.environ["BUILDSITE_ALLOW_PRIVATE_URLS"] = "1"  # the receiver is on 127.0.0.1
# --setup scaled: PostgreSQL + Redis on 127.0.0.1 (a throw-away database), as
# bench/scheduler.py does; the default is the embedded set-up (SQLite, no Redis).
SETUP = "scaled" if "--setup=scaled" in sys.argv or "scaled" in sys.argv[1:] else "embedded"
PG_DB = f"bench_notify_{os.getpid()}"
if SETUP == "scaled":
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", PG_DB], check=True)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_DB}"
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:6379/{os.getpid() % 14 + 1}"
    os.environ["BUILDSITE_CHANNEL_PREFIX"] = f"bench{os.getpid()}"
    os.environ["DJANGO_SECRET_KEY"] = "bench-notify-" + str(os.getpid()) * 4
    os.environ["BUILDSITE_ARTIFACTS_URL"] = (DATA / "artifact-store").as_uri()
else:
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildsite.settings")
sys.path.insert(0, str(ROOT))

DESCRIPTION = {
    "embedded": "SQLite (WAL), django-q2 ORM broker",
    "scaled": "PostgreSQL + Redis (django-q2 Redis broker)",
}
SECRET = "bench-signing-secret"
PIPELINE = (
    "params: {code: 0}\n"
    "tasks:\n  check: {steps: [{run: 'echo checking; exit {{ params.code }}'}]}\n"
)


class Receipts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[float, dict[str, Any], bool]] = []

    def add(self, when: float, body: bytes, signature: str) -> None:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        with self.lock:
            self.got.append((when, json.loads(body), hmac.compare_digest(expected, signature)))

    def count(self) -> int:
        with self.lock:
            return len(self.got)


def start_receiver(receipts: Receipts) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receipts.add(time.time(), body, self.headers.get("X-Buildsite-Signature-256", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/buildsite-hook"


def setup(url: str) -> Any:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from builds.services import save_pipeline
    from buildsite.services import create_project
    from notifications.outbox import _position
    from notifications.services import create_target

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench", password="bench-pw-1")
    project = create_project(creator=owner, slug="bench", name="Bench")
    save_pipeline(user=None, project=project, name="main", definition=PIPELINE)
    create_target(
        user=None,
        project=project,
        name="bench",
        kind="webhook",
        url=url,
        secret=SECRET,
        events=["build.failed", "build.succeeded"],
    )
    _position()  # start reading the outbox now
    return project


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--setup", choices=["embedded", "scaled"], default="embedded")
    parser.add_argument("--builds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    receipts = Receipts()
    server, url = start_receiver(receipts)
    project = setup(url)
    from builds.models import Build
    from builds.services import trigger_build
    from buildsite.processes import process_commands

    env = {**os.environ, "BUILDSITE_WORKERS": str(args.workers), "BUILDSITE_LOG_LEVEL": "WARNING"}
    cluster = subprocess.Popen(
        process_commands(host="127.0.0.1", port=0)["workers"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    builds: list[int] = []
    try:
        time.sleep(2.0)  # let the cluster's workers start
        deadline = time.monotonic() + args.timeout
        for i in range(args.builds):
            build = trigger_build(
                user=None, project=project, pipeline="main", params={"code": i % 2}
            )
            builds.append(build.id)
            while time.monotonic() < deadline and receipts.count() < len(builds):
                time.sleep(0.02)
        finished = dict(Build.objects.filter(id__in=builds).values_list("id", "finished_at"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
        server.shutdown()
        shutil.rmtree(DATA, ignore_errors=True)
        if SETUP == "scaled":
            from django.db import connections

            connections.close_all()
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", PG_DB], check=False)
    delays = []
    for when, body, _ in receipts.got:
        ended: datetime | None = finished.get(body["build"]["id"])
        if ended is not None:
            delays.append(when - ended.timestamp())
    signed = sum(1 for *_, ok in receipts.got if ok)
    print(
        f"{SETUP} set-up: {DESCRIPTION[SETUP]}, {args.workers} workers; "
        f"{args.builds} builds (half failing), one signed webhook target on 127.0.0.1"
    )
    print(f"messages received {len(receipts.got)} of {len(builds)}; signature valid {signed}")
    if delays:
        print(
            f"build finished_at -> webhook received: n={len(delays)} "
            f"p50={statistics.median(delays) * 1000:.0f} ms  "
            f"p95={percentile(delays, 95) * 1000:.0f} ms  max={max(delays) * 1000:.0f} ms"
        )
    if len(receipts.got) < len(builds) or signed < len(receipts.got) or max(delays or [99]) > 5:
        print("FAILED: a message is missing, badly signed, or later than the 5 s target")
        sys.exit(1)


if __name__ == "__main__":
    main()
