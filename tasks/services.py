"""State changes of tasks. Every change is a conditional UPDATE plus an Event row,
in the caller's transaction, so two workers can never both start or finish one task."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .bulk import insert_rows
from .events import publish_on_commit
from .models import Event, Task
from .states import InvalidTransition, TaskState, check_transition


def _event(task: Task, project_id: int, old: str, new: str, data: dict | None, now) -> Event:
    return Event(
        project_id=project_id,
        build_id=task.build_id,
        task_id=task.id,
        task_name=task.name,
        type=Event.Type.TASK_STATE,
        old_state=old,
        new_state=new,
        data=data or {},
        created_at=now,
    )


def record_event(
    *,
    project_id: int,
    type: str,
    build_id: int | None = None,
    task: Task | None = None,
    old_state: str = "",
    new_state: str = "",
    data: dict | None = None,
) -> Event:
    event = Event(
        project_id=project_id,
        build_id=build_id if build_id is not None else (task.build_id if task else None),
        task=task,
        task_name=task.name if task else "",
        type=type,
        old_state=old_state,
        new_state=new_state,
        data=data or {},
        created_at=timezone.now(),
    )
    event.save()
    publish_on_commit([event])
    return event


def write_events(events: list[Event]) -> None:
    """Store events and have them published after commit. With the embedded relay the
    web process reads them back by id, so a plain multi-row INSERT does (much cheaper
    than saving models, and this runs several times per task); publishing directly
    needs the ids, so the rows are created with RETURNING."""
    if not events:
        return
    if settings.BUILDSITE["EVENT_RELAY"]:
        insert_rows(
            Event,
            EVENT_COLUMNS,
            [
                (
                    e.project_id,
                    e.build_id,
                    e.task_id,
                    e.task_name,
                    e.type,
                    e.old_state,
                    e.new_state,
                    e.data,
                    e.created_at,
                )
                for e in events
            ],
        )
    else:
        Event.objects.bulk_create(events, batch_size=500)
        publish_on_commit(events)


def transition(
    *,
    task: Task,
    to: TaskState,
    project_id: int,
    fields: dict[str, Any] | None = None,
    data: dict | None = None,
    strict: bool = True,
) -> bool:
    """Move `task` from the state it was read in to `to`.

    Returns False (or raises InvalidTransition when `strict`) when the table forbids
    the move or another process changed the task first."""
    old = TaskState(task.state)
    try:
        check_transition(old, to, task.name)
    except InvalidTransition:
        if strict:
            raise
        return False
    fields = dict(fields or {})
    now = timezone.now()
    # No savepoint: callers inside a transaction raise on failure anyway.
    with transaction.atomic(savepoint=False):
        updated = Task.objects.filter(id=task.id, state=old).update(state=to, **fields)
        if not updated:
            if strict:
                current = Task.objects.filter(id=task.id).values_list("state", flat=True).first()
                raise InvalidTransition(str(current), str(to), task.name)
            return False
        event = _event(task, project_id, old, to, data, now)
        write_events([event])
    task.state = to
    for key, value in fields.items():
        setattr(task, key, value)
    return True


EVENT_COLUMNS = (
    "project",
    "build",
    "task",
    "task_name",
    "type",
    "old_state",
    "new_state",
    "data",
    "created_at",
)


@dataclass
class Change:
    """One step of a task's way through the table; a task may take several steps in
    one batch (pending -> ready -> cached)."""

    task: Task
    old: TaskState
    new: TaskState
    fields: dict[str, Any] = field(default_factory=dict)


def events_for(changes: Iterable[Change], project_id: int) -> list[Event]:
    now = timezone.now()
    return [_event(c.task, project_id, c.old, c.new, None, now) for c in changes]


def record_new_tasks(*, project_id: int, build_id: int, changes: list[Change]) -> None:
    """Events for tasks inserted in this transaction already in their resolved state.

    Each step is checked against the table; a task that took several steps while its
    build was created (pending -> ready -> cached) gets one event for the whole way,
    with the states it passed through in `data.via`. A new build can hold thousands
    of tasks, so the rows go in one multi-row INSERT."""
    now = timezone.now()
    ways: dict[str, list[Change]] = {}
    for c in changes:
        check_transition(c.old, c.new, c.task.name)
        ways.setdefault(c.task.name, []).append(c)
    shared: dict[tuple, dict] = {(): {}}  # one data object per distinct way, converted once
    rows = []
    for way in ways.values():
        first, last = way[0], way[-1]
        via = tuple(str(c.old) for c in way[1:])
        data = shared.setdefault(via, {"via": list(via)})
        rows.append(
            (
                project_id,
                build_id,
                first.task.id,
                first.task.name,
                Event.Type.TASK_STATE,
                str(first.old),
                str(last.new),
                data,
                now,
            )
        )
    newest = Event.objects.filter(build_id=build_id).order_by("-id").values_list("id", flat=True)
    after = newest.first() or 0
    insert_rows(Event, EVENT_COLUMNS, rows)
    if not settings.BUILDSITE["EVENT_RELAY"]:
        # Nobody else can write events for a build created in this transaction.
        publish_on_commit(list(Event.objects.filter(build_id=build_id, id__gt=after)))


def apply_transitions(*, project_id: int, changes: Iterable[Change]) -> list[Change]:
    """Bulk form of `transition` for existing rows. Rows are locked first (FOR UPDATE
    on PostgreSQL; SQLite's IMMEDIATE transaction already serialises writers), each
    step is checked against the table, and a task another process moved meanwhile is
    left alone. Returns the steps that were applied."""
    changes = list(changes)
    if not changes:
        return []
    applied: list[Change] = []
    with transaction.atomic(savepoint=False):
        ids = list({c.task.id for c in changes})
        current: dict[int, str] = {}
        for chunk in _chunks(ids, 500):
            current.update(
                Task.objects.select_for_update().filter(id__in=chunk).values_list("id", "state")
            )
        start = dict(current)
        final: dict[int, tuple[Task, dict[str, Any]]] = {}
        for change in changes:
            tid = change.task.id
            if current.get(tid) != change.old:
                continue
            check_transition(change.old, change.new, change.task.name)
            current[tid] = change.new
            merged = final.setdefault(tid, (change.task, {}))[1]
            merged.update(change.fields)
            applied.append(change)
        groups: dict[tuple, list[int]] = {}
        for tid, (_task, fields) in final.items():
            key = (start[tid], current[tid], _hashable(fields))
            groups.setdefault(key, []).append(tid)
        for (old, new, _frozen), tids in groups.items():
            fields = final[tids[0]][1]
            for chunk in _chunks(tids, 500):
                Task.objects.filter(id__in=chunk, state=old).update(state=new, **fields)
        for tid, (task, fields) in final.items():
            task.state = current[tid]
            for name, value in fields.items():
                setattr(task, name, value)
        events = events_for(applied, project_id)
        write_events(events)
    return applied


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]
