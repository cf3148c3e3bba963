"""Periodic upkeep (run by one worker cluster at a time, `builds/upkeep.py`): lost
workers, stale jobs, deadlines, due retries, cache, files, and whatever other apps
register (`register_upkeep`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tasks.models import Event, Task
from tasks.services import record_event
from tasks.states import TERMINAL, TaskState

from . import artifacts, cache
from .attempts import failure_outcome
from .dispatch import dispatch_ready_tasks, enqueue
from .models import Blob, Build, CacheEntry
from .resolution import task_spec
from .services import lock_build
from .settle import finish_task

log = logging.getLogger(__name__)
S = TaskState
_last_run: dict[str, float] = {}
# Upkeep of other apps (schedules fire due builds): the engine imports none of them.
_registered: dict[str, Callable[[], int]] = {}


def register_upkeep(name: str, fn: Callable[[], int]) -> None:
    """Run `fn` on every tick; what it returns is reported under `name`. It must be
    safe to overlap with another cluster's run while the upkeep lease changes hands."""
    _registered[name] = fn


def reap_expired_leases() -> int:
    """A RUNNING task whose worker stopped renewing its lease ends its attempt as
    "worker lost": RETRYING while retries remain, else FAILED."""
    reaped = 0
    for task in Task.objects.select_related("build__project").filter(
        state=S.RUNNING, lease_expires_at__lt=timezone.now()
    ):
        reaped += finish_task(
            task=task,
            build=task.build,
            outcome=failure_outcome(task),
            outputs=task.outputs,
            error="worker lost",
        )
    return reaped


def requeue_stale() -> int:
    """A QUEUED task whose job never started (its worker died holding it) gets a new
    job; a duplicate job is harmless because claiming is a conditional update."""
    cutoff = timezone.now() - timedelta(seconds=settings.BUILDSITE["REQUEUE_SECONDS"])
    stale = list(
        Task.objects.filter(state=S.QUEUED, queued_at__lt=cutoff).values_list("id", "attempts")
    )
    if stale:
        Task.objects.filter(id__in=[i for i, _ in stale], state=S.QUEUED).update(
            queued_at=timezone.now()
        )
        enqueue([(i, a + 1) for i, a in stale])
    return len(stale)


def check_deadlines() -> int:
    now = timezone.now()
    missed = 0
    for task in (
        Task.objects.select_related("build__project")
        .filter(deadline__lt=now, deadline_missed=False)
        .exclude(state__in=list(TERMINAL))
    ):
        build = task.build
        with transaction.atomic():
            lock_build(build)  # before the task row, in the order settling locks them
            if not Task.objects.filter(id=task.id, deadline_missed=False).update(
                deadline_missed=True
            ):
                continue
            missed += 1
            action = task_spec(build, task.name).get("on_deadline", "record")
            record_event(
                project_id=build.project_id,
                type=Event.Type.DEADLINE_MISSED,
                task=task,
                data={"deadline": task.deadline.isoformat(), "action": action},
            )
            if action == "cancel":
                finish_task(
                    task=task,
                    build=build,
                    outcome=S.CANCELLED,
                    outputs=task.outputs,
                    error="deadline missed",
                )
    return missed


def clean_old_files() -> int:
    """Builds finished longer ago than RETENTION_DAYS lose their logs and artifacts
    (the build and its tasks stay, marked `files_purged`); then the stored blobs that
    nothing names any more are deleted from the artifact store."""
    cutoff = timezone.now() - timedelta(days=settings.BUILDSITE["RETENTION_DAYS"])
    old = Build.objects.filter(finished_at__lt=cutoff, files_purged=False)
    cleaned = 0
    for build_id in old.values_list("id", flat=True):
        with transaction.atomic():
            Event.objects.filter(build_id=build_id, type=Event.Type.LOG).delete()  # the logs
            Task.objects.filter(build_id=build_id).exclude(artifacts=[]).update(artifacts=[])
            Build.objects.filter(id=build_id).update(files_purged=True)
        cleaned += 1
    delete_unused_blobs()
    return cleaned


def delete_unused_blobs() -> int:
    """Delete blobs no task and no cache entry names that were not touched for
    BLOB_GRACE_SECONDS. The rows go in the same transaction as their bytes: a worker
    that touches a blob meanwhile waits for it, finds the row gone and stores the
    bytes again (`artifacts.upload`)."""
    grace = timedelta(seconds=settings.BUILDSITE["BLOB_GRACE_SECONDS"])
    stale = Blob.objects.filter(last_used_at__lt=timezone.now() - grace)
    if not stale.exists():
        return 0  # nothing could go: no need to read every task's list
    named: set[str] = set()
    for rows in (
        Task.objects.exclude(artifacts=[]).values_list("artifacts", flat=True),
        CacheEntry.objects.exclude(artifacts=[]).values_list("artifacts", flat=True),
    ):
        for files in rows.iterator(chunk_size=2000):
            named.update(f["sha256"] for f in files)
    unused = [d for d in stale.values_list("sha256", flat=True) if d not in named]
    deleted = 0
    for digest in unused:
        # One blob per transaction: a failed delete in the store keeps its row, and no
        # row is kept for bytes that are gone.
        try:
            with transaction.atomic():
                # The DELETE re-checks the grace and holds the row until the bytes are gone.
                cutoff = timezone.now() - grace
                if Blob.objects.filter(sha256=digest, last_used_at__lt=cutoff).delete()[0]:
                    artifacts.delete_blobs([digest])
                    deleted += 1
        except Exception:
            log.warning("could not delete blob %s from the artifact store", digest, exc_info=True)
    return deleted


def _every(name: str, seconds: float) -> bool:
    """Due when it never ran in this process, or ran `seconds` ago or more."""
    now = time.monotonic()
    last = _last_run.get(name)
    if last is None or now - last >= seconds:
        _last_run[name] = now
        return True
    return False


def tick() -> dict[str, int]:
    """One round of upkeep; idempotent, so an overlap while the lease changes hands is harmless."""
    done = {
        "reaped": reap_expired_leases(),
        "requeued": requeue_stale(),
        "deadlines": check_deadlines(),
        "dispatched": dispatch_ready_tasks(),
        "hits": cache.fold_hits(),
    }
    if _every("cache", 60):
        done["evicted"] = cache.evict()
    if _every("retention", 3600):
        done["cleaned"] = clean_old_files()
    for name, fn in list(_registered.items()):
        try:
            done[name] = fn()
        except Exception:  # one app's failure must not stop the engine's upkeep
            log.warning("upkeep of %s failed", name, exc_info=True)
    return done
