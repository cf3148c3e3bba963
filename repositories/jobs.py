"""django-q2 entry points of repositories: thin wrappers around the services."""

from __future__ import annotations

from django.db import transaction
from django_q.tasks import async_task

from builds.dispatch import jobs_are_transactional

PREPARE = "repositories.jobs.prepare"


def enqueue_preparation(build_id: int) -> None:
    """A job that reads the build's pipeline from its repository; written in the
    caller's transaction where jobs are rows (so it exists exactly when the build
    does), after the commit where they run inline."""

    def send() -> None:
        async_task(PREPARE, build_id, task_name=f"prepare-{build_id}", save=False)

    if jobs_are_transactional():
        send()
    else:
        transaction.on_commit(send)


def prepare(build_id: int) -> str:
    from .preparation import prepare_build_or_fail

    return prepare_build_or_fail(build_id=build_id)


def report_status(build_id: int, state: str) -> str:
    from .status import send_report

    return send_report(build_id=build_id, state=state)
