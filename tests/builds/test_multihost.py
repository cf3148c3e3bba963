"""Web plus two worker hosts that share nothing but PostgreSQL, Redis and an S3 artifact
store (a real S3-protocol server on 127.0.0.1): builds behave as on one host.

Each process has a data dir of its own, as separate machines would. Runs in the
PostgreSQL + Redis lane of `.ci/run`; a SQLite file cannot be shared between hosts."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from builds.demo import DEMO_PIPELINE
from builds.services import trigger_build
from tasks.models import Task
from tests.builds.test_artifacts import FALSE_HIT as CHANGING
from tests.cluster import Cluster, WebServer, wait_for
from tests.factories import create_token, make_pipeline, task_states
from tests.s3 import S3Server

pytestmark = pytest.mark.slow


@pytest.fixture
def hosts(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        reason = "several hosts share a PostgreSQL server, not a SQLite file"
        if os.environ.get("BUILDSITE_REQUIRE_MULTIHOST") == "1":
            pytest.fail(reason)  # the PostgreSQL lane of .ci/run: it must run there
        pytest.skip(reason)
    s3 = S3Server(tmp_path)
    shared = {**s3.env, "DJANGO_SECRET_KEY": settings.SECRET_KEY, "BUILDSITE_TICK_SECONDS": "0.5"}

    def host(name: str) -> dict[str, str]:
        return {**shared, "BUILDSITE_DATA_DIR": str(tmp_path / name)}

    web = WebServer(extra_env=host("web"))
    clusters = [Cluster(workers=1, extra_env=host(name)).start() for name in ("b", "c")]
    try:
        yield web, s3, tmp_path
    finally:
        for cluster in clusters:
            cluster.stop()
        web.stop()
        s3.stop()


def _finished(build_id: int):
    from builds.models import Build

    build = Build.objects.get(id=build_id)
    return build if build.finished_at else None


def _run(project, pipeline: str):
    build = trigger_build(user=None, project=project, pipeline=pipeline)
    return wait_for(lambda: _finished(build.id), timeout=120, message=f"build #{build.id}")


def _data_dir_of(worker: str) -> str:
    """Which host ran a task: its worker process's BUILDSITE_DATA_DIR."""
    pid = worker.rsplit(":", 1)[1]
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"BUILDSITE_DATA_DIR="):
            return Path(entry.split(b"=", 1)[1].decode()).name
    return "?"


def test_the_demo_is_green_every_time_on_two_hosts(hosts, project, user):
    web, s3, _ = hosts
    _, token = create_token(user=user, project=project)
    api = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    make_pipeline(project, DEMO_PIPELINE, name="demo")
    ran_on: set[str] = set()
    for round_ in range(3):
        build = _run(project, "demo")
        states = task_states(build)
        assert build.state == "succeeded", (states, Task.objects.filter(build=build).values())
        # The package task's files reached its dependent on whichever host it ran.
        report = api.get(f"/api/builds/{build.id}/tasks/report/log")
        assert report.status_code == 200 and "src/app.py" in report.text
        for task in Task.objects.filter(build=build).exclude(state="cached"):
            log = api.get(f"/api/builds/{build.id}/tasks/{task.name}/log")
            assert log.status_code == 200 and log.text.strip(), task.name  # any host's log
            ran_on.add(_data_dir_of(task.worker))
        listed = api.get(f"/api/builds/{build.id}/artifacts").json()
        tarball = next(a for a in listed if a["task"] == "package")
        body = api.get(f"/api/builds/{build.id}/artifacts/package/{tarball['path']}").content
        assert hashlib.sha256(body).hexdigest() == tarball["sha256"]
        # Same source every time: from the second build on, package is a cache hit
        # whose restored tarball the report task still receives.
        assert states["package"] == ("succeeded" if round_ == 0 else "cached")
    assert ran_on == {"b", "c"}, "both worker hosts took tasks"
    assert any(key.startswith("buildsite/sha256/") for key in s3.object_keys())


def test_a_changed_input_reruns_its_cached_consumer_across_hosts(hosts, project):
    make_pipeline(project, CHANGING, name="changing")
    seen = []
    for _ in range(3):
        build = _run(project, "changing")
        assert task_states(build) == {"generate": "succeeded", "consume": "succeeded"}
        seen.append(Task.objects.get(build=build, name="consume").outputs["seen"])
    assert len(set(seen)) == 3
