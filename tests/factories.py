"""Small helpers to make the objects tests need; every one goes through the services."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from django.test import Client

from builds.services import save_pipeline
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.services import create_project, create_token, set_membership

_seq = itertools.count(1)


def make_user(username: str | None = None, *, password: str = "pw-123456", **extra):
    username = username or f"user{next(_seq)}"
    return get_user_model().objects.create_user(username=username, password=password, **extra)


def make_project(*, owner=None, slug: str | None = None, name: str = "Project") -> Project:
    owner = owner or make_user()
    return create_project(creator=owner, slug=slug or f"proj{next(_seq)}", name=name)


def add_member(project: Project, user, role: Role | str) -> None:
    set_membership(actor=None, project=project, username=user.username, role=str(role))


def make_pipeline(project: Project, definition: str, *, name: str = "main"):
    return save_pipeline(user=None, project=project, name=name, definition=definition)


def api_client(user, project: Project | None = None) -> Client:
    """A test client that sends a real bearer token for `user`."""
    _, raw = create_token(user=user, project=project)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def run_build(project: Project, pipeline: str = "main", *, user=None, params=None, ticks: int = 50):
    """Trigger a build and drive it to the end with inline workers (needs the
    `inline_workers` fixture); tick() covers retries whose backoff is due."""
    import time

    from builds.maintenance import tick
    from builds.models import Build
    from builds.services import trigger_build

    build = trigger_build(user=user, project=project, pipeline=pipeline, params=params)
    for _ in range(ticks):
        build.refresh_from_db()
        if build.finished_at is not None:
            break
        tick()
        time.sleep(0.05)
    return Build.objects.get(id=build.id)


def task_states(build) -> dict[str, str]:
    return dict(build.tasks.values_list("name", "state"))


def run_job(task_id: int, attempt: int = 1) -> str:
    """What the cluster does with one task's job: a worker runs it, the monitor settles
    the end it reports. Returns the outcome, or why nothing was recorded."""
    from builds.attempts import TaskEnd
    from builds.execution import execute_task
    from builds.settle import settle

    result = execute_task(task_id=task_id, attempt=attempt)
    if isinstance(result, TaskEnd):
        return str(result.outcome) if settle([result]) else "not settled"
    return result


def finished_build(
    project: Project,
    pipeline: str = "main",
    *,
    state: str,
    created_at,
    seconds: float | None,
    commit_sha: str = "",
    tasks: dict[str, tuple] | None = None,
):
    """A build triggered through the service, then recorded as ended in `state`,
    created at `created_at` and running `seconds` (None: it never started). `tasks` maps
    a task name to (state, attempts, seconds) or (state, attempts, seconds, max_retries)
    for its last attempt; the other tasks keep the state the trigger gave them."""
    from datetime import timedelta

    from builds.models import Build
    from builds.services import trigger_build
    from tasks.models import Task

    build = trigger_build(user=None, project=project, pipeline=pipeline)
    started = created_at if seconds is None else created_at + timedelta(seconds=1)
    Build.objects.filter(id=build.id).update(
        state=state,
        commit_sha=commit_sha,
        created_at=created_at,
        started_at=None if seconds is None else started,
        finished_at=started if seconds is None else started + timedelta(seconds=seconds),
    )
    for name, (task_state, attempts, task_seconds, *rest) in (tasks or {}).items():
        fields = {"state": task_state, "attempts": attempts}
        if task_seconds is not None:
            fields["started_at"] = started
            fields["finished_at"] = started + timedelta(seconds=task_seconds)
        if rest:
            fields["max_retries"] = rest[0]
        assert Task.objects.filter(build=build, name=name).update(**fields) == 1, name
    return Build.objects.get(id=build.id)
