"""Reads of notifications: targets and their delivery log (maintainers only: answers of
receivers may be sensitive), and what a message says about a build, prompt or document."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse

from buildsite.errors import NotFound
from buildsite.models import Project
from tasks.models import Event, Task
from tasks.states import BuildState, TaskState

from .models import Delivery, NotificationTarget

ERROR_CHARS = 500
COMMIT_MESSAGE_CHARS = 500
FAILED_TASKS_LISTED = 50
LOG_LINES = 20
LOG_TASKS = 5


def targets_of(*, project: Project) -> QuerySet[NotificationTarget]:
    return NotificationTarget.objects.filter(project=project).order_by("name")


def get_target(*, project: Project, target_id: int) -> NotificationTarget:
    target: NotificationTarget | None = targets_of(project=project).filter(id=target_id).first()
    if target is None:
        raise NotFound(f"No notification target #{target_id} in '{project.slug}'.")
    return target


def deliveries_of(*, target: NotificationTarget, limit: int = 100) -> list[Delivery]:
    return list(Delivery.objects.filter(target=target).order_by("-id")[:limit])


def get_delivery(*, target: NotificationTarget, delivery_id: int) -> Delivery:
    delivery: Delivery | None = Delivery.objects.filter(target=target, id=delivery_id).first()
    if delivery is None:
        raise NotFound(f"No delivery #{delivery_id} for notification target '{target.name}'.")
    return delivery


def enabled_targets(project_ids: Iterable[int]) -> dict[int, list[NotificationTarget]]:
    by_project: dict[int, list[NotificationTarget]] = {}
    ids = list(set(project_ids))
    if not ids:
        return by_project
    for target in NotificationTarget.objects.filter(project_id__in=ids, enabled=True):
        by_project.setdefault(target.project_id, []).append(target)
    return by_project


def absolute(path: str) -> str:
    base: str = settings.BUILDSITE["BASE_URL"]
    return base + path


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def build_part(build: Any, *, state: str) -> dict[str, Any]:
    """The "build" object of a payload: `build` with its project and pipeline loaded."""
    failed = list(
        Task.objects.filter(build_id=build.id, state=TaskState.FAILED)
        .order_by("finished_at", "id")
        .values_list("name", "error")[:FAILED_TASKS_LISTED]
    )
    part: dict[str, Any] = {
        "id": build.id,
        "pipeline": build.pipeline.name,
        "state": state,
        "url": absolute(reverse("build", args=[build.id])),
        "started_at": _iso(build.started_at),
        "finished_at": _iso(build.finished_at),
        "failed_tasks": [{"name": n, "error": (e or "")[:ERROR_CHARS]} for n, e in failed],
    }
    if build.commit_sha or build.commit_ref:
        part["commit"] = {
            "sha": build.commit_sha,
            "ref": build.commit_ref,
            "author": build.commit_author[:300],
            "message": build.commit_message[:COMMIT_MESSAGE_CHARS],
        }
    return part


def previous_failed(build: Any) -> bool:
    """Whether the last build before `build` of the same pipeline and branch that
    succeeded or failed (cancelled ones say nothing about the code) failed. Builds
    without a repository share the branch ""."""
    from builds.models import Build

    earlier = Build.objects.filter(
        pipeline_id=build.pipeline_id,
        commit_ref=build.commit_ref,
        state__in=[BuildState.SUCCEEDED, BuildState.FAILED],
        id__lt=build.id,
    )
    state = earlier.order_by("-id").values_list("state", flat=True).first()
    return bool(state == BuildState.FAILED)


def event_payload(*, event: Event, name: str, build: Any | None) -> dict[str, Any]:
    """The stored payload of a delivery (`sent_at` and `delivery` are added when sent)."""
    project = event.project
    payload: dict[str, Any] = {"event": name, "project": project.slug}
    data = event.data or {}
    if build is not None:
        state = event.new_state if event.type == Event.Type.BUILD_STATE else build.state
        payload["build"] = build_part(build, state=state)
    if event.type == Event.Type.TASK_STATE:
        task = Task.objects.filter(id=event.task_id).values("name", "error", "attempts").first()
        task = task or {"name": event.task_name, "error": "", "attempts": 0}
        payload["task"] = {
            "name": task["name"],
            "error": (task["error"] or "")[:ERROR_CHARS],
            "attempts": task["attempts"],
        }
    elif event.type == Event.Type.DEADLINE_MISSED:
        payload["task"] = {
            "name": event.task_name,
            "deadline": data.get("deadline"),
            "action": data.get("action"),
        }
    elif event.type == Event.Type.LABEL_MOVED:
        prompt = str(data.get("prompt", ""))
        payload["prompt"] = {
            "name": prompt,
            "label": data.get("label"),
            "version": data.get("version"),
            "previous_version": data.get("previous_version"),
            "url": absolute(reverse("prompt-detail", args=[project.slug, prompt])),
        }
    elif event.type == Event.Type.DOCUMENT_PUBLISHED:
        path = str(data.get("path", ""))
        payload["document"] = {
            "path": path,
            "revision": data.get("revision"),
            "title": data.get("title", ""),
            "url": absolute(reverse("docs-reader", args=[project.slug, path])),
        }
    return payload


def failed_task_logs(build_id: int) -> list[dict[str, Any]]:
    """The last LOG_LINES lines of each failed task's log (up to LOG_TASKS tasks), as the
    build page reads them: log events are masked when written (vault), so no secret."""
    from builds.models import Build
    from builds.selectors import task_log_upto

    build = Build.objects.filter(id=build_id).first()
    if build is None or build.files_purged:
        return []
    names = list(
        Task.objects.filter(build_id=build_id, state=TaskState.FAILED)
        .order_by("finished_at", "id")
        .values_list("name", flat=True)[:LOG_TASKS]
    )
    upto = Event.objects.filter(build_id=build_id).order_by("-id").values_list("id", flat=True)
    last = upto.first() or 0
    logs = []
    for name in names:
        text, _ = task_log_upto(build=build, name=name, upto=last, max_chars=20_000)
        lines = text.rstrip("\n").splitlines()[-LOG_LINES:]
        logs.append({"name": name, "lines": lines})
    return logs
