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
    shared = {
        **s3.env,
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "BUILDSITE_TICK_SECONDS": "0.5",
        "BUILDSITE_ALLOW_PRIVATE_URLS": "1",  # the test's git server is on 127.0.0.1
    }

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


REPOSITORY_PIPELINE = """\
tasks:
""" + "".join(
    f"""  t{i}:
    steps:
      - run: cat hello.txt && git rev-parse HEAD
        output: seen
"""
    for i in range(6)
)


def test_a_push_builds_its_commit_on_whichever_host_runs_each_task(hosts, project, user):
    import hmac
    import json

    from tests.gitserver import GitServer, WorkingCopy

    web, _, tmp_path = hosts
    forge = GitServer(tmp_path / "forge")
    copy = WorkingCopy(tmp_path / "forge" / "app.git", tmp_path / "work")
    _, token = create_token(user=user, project=project)
    api = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        created = api.post(
            "/api/projects/acme/repositories", json={"name": "app", "url": forge.url("app")}
        ).json()
        for text in ("first\n", "second\n"):
            sha = copy.commit({".buildsite.yml": REPOSITORY_PIPELINE, "hello.txt": text})
            copy.push()
            body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
            digest = hmac.new(created["webhook_secret"].encode(), body, "sha256").hexdigest()
            hook = httpx.post(
                created["webhook_url"],
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": sha,
                    "X-Hub-Signature-256": f"sha256={digest}",
                },
            )
            assert hook.status_code == 202, hook.text
            build_id = hook.json()["build"]
            build = wait_for(
                lambda b=build_id: _finished(b), timeout=120, message="repository build"
            )
            assert build.state == "succeeded", build.error
            assert build.commit_sha == sha
            tasks = Task.objects.filter(build=build)
            assert {t.outputs["seen"] for t in tasks} == {f"{text}{sha}".strip()}
        hosts_used = {_data_dir_of(t.worker) for t in tasks}
        for name in hosts_used:  # each host fetched into its own mirror
            assert (tmp_path / name / "mirrors" / f"{created['id']}.git").is_dir()
    finally:
        forge.stop()
