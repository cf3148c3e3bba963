"""State changes of tasks. Every change is a conditional UPDATE plus an Event row,
in the caller's transaction, so two workers can never both start or finish one task."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, Protocol, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import rawsql
from .bulk import column_value, insert_rows
from .events import (
    payload,
    publish_deferred_on_commit,
    publish_on_commit,
    publish_payloads_on_commit,
)
from .models import Event, Task
from .states import InvalidTransition, TaskState, check_transition


class TaskRow(Protocol):
    """What moving a task needs of it: a `Task` instance, or a plain node the hot path
    loads instead (`builds.resolution.TaskNode`) alike."""

    id: int
    build_id: int
    name: str
    state: str
    attempts: int


class EventRow(NamedTuple):
    """An Event before it is stored, in the order of EVENT_COLUMNS; the hot path writes
    several per task, and model instances cost more to build than the INSERT."""

    project_id: int
    build_id: int
    task_id: int
    task_name: str
    type: str
    old_state: str
    new_state: str
    data: dict[str, Any]
    created_at: Any


def _event(
    task: TaskRow, project_id: int, old: str, new: str, data: dict[str, Any] | None, now: datetime
) -> EventRow:
    return EventRow(
        project_id,
        task.build_id,
        task.id,
        task.name,
        Event.Type.TASK_STATE,
        str(old),
        str(new),
        data or {},
        now,
    )


_pending = threading.local()  # rows held by `events_in_one_insert`, per thread


@contextmanager
def events_in_one_insert() -> Iterator[None]:
    """The events `write_events` is given inside the block are stored together as it
    ends, in their order: one INSERT instead of one per step. A worker settling its
    own end writes a log, the end, the dependents made READY and the next task's claim,
    each a round trip to PostgreSQL made under the build's lock. `record_event` stores
    what is held first, so the ids keep the order of the changes. Nested blocks join
    the outer one; after an exception nothing is stored (the transaction is undone)."""
    if getattr(_pending, "rows", None) is not None:
        yield
        return
    rows: list[EventRow] = []
    _pending.rows = rows
    try:
        yield
    finally:
        _pending.rows = None
    _store_events(rows)


def _store_pending() -> None:
    rows = getattr(_pending, "rows", None)
    if rows:
        _store_events(rows[:])
        rows.clear()


def record_event(
    *,
    project_id: int,
    type: str,
    build_id: int | None = None,
    task: Task | None = None,
    old_state: str = "",
    new_state: str = "",
    data: dict[str, Any] | None = None,
) -> Event:
    _store_pending()  # the events held so far come first
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


def write_events(events: list[EventRow]) -> None:
    """Store events and have them published after commit. With the embedded relay the
    web process reads them back by id, so a plain multi-row INSERT does (much cheaper
    than saving models, and this runs several times per task); publishing directly
    needs the ids, so the rows are created with RETURNING."""
    held = getattr(_pending, "rows", None)
    if held is not None:
        held.extend(events)
    else:
        _store_events(events)


def _store_events(events: list[EventRow]) -> None:
    if not events:
        return
    if settings.BUILDSITE["EVENT_RELAY"]:
        insert_rows(Event, EVENT_COLUMNS, events)
        return
    ids = insert_rows(Event, EVENT_COLUMNS, events, returning="id")
    publish_payloads_on_commit([_payload(i, e) for i, e in zip(ids, events, strict=True)])


def _payload(event_id: int, row: EventRow) -> dict[str, Any]:
    """What is published of an event stored from `row` (the task's id is not part of it)."""
    columns = row._asdict()
    del columns["task_id"]
    return payload(id=event_id, **columns)


def transition(
    *,
    task: Task,
    to: TaskState,
    project_id: int,
    fields: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
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
        updated = rawsql.update(Task, {"state": to, **fields}, {"id": task.id, "state": old})
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
    "project_id",
    "build_id",
    "task_id",
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

    task: TaskRow
    old: TaskState
    new: TaskState
    fields: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | None = None  # the event's data
    # On a task's first step: also require this attempt count, so the end of one attempt
    # can never be recorded on the next.
    attempts: int | None = None


def events_for(changes: Iterable[Change], project_id: int) -> list[EventRow]:
    now = timezone.now()
    return [_event(c.task, project_id, c.old, c.new, c.data, now) for c in changes]


def record_new_tasks(*, project_id: int, build_id: int, changes: list[Change]) -> None:
    """Events for tasks inserted in this transaction already in their resolved state.

    Each step is checked against the table; a task that took several steps while its
    build was created (pending -> ready -> cached) gets one event for the whole way,
    with the states it passed through in `data.via`. A new build can hold thousands
    of tasks, so the rows go in one multi-row INSERT."""
    now = timezone.now()
    ways: dict[str, list[Change]] = {}
    first_of_step: dict[tuple[TaskState, TaskState], str] = {}
    for c in changes:
        first_of_step.setdefault((c.old, c.new), c.task.name)
        ways.setdefault(c.task.name, []).append(c)
    for (old, new), name in first_of_step.items():  # each kind of step once, not per task
        check_transition(old, new, name)
    # One data object per distinct way, converted once.
    shared: dict[tuple[str, ...], dict[str, Any]] = {(): {}}
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
        # Nobody else can write events for a build created in this transaction, and one
        # INSERT (or COPY) numbers its rows in their order: their ids are read back, not
        # 10,000 models.
        ids = rawsql.fetch(
            f"SELECT id FROM {rawsql.table(Event)} WHERE build_id = %s AND id > %s ORDER BY id",
            [build_id, after],
        )
        if len(ids) != len(rows):  # not ours alone after all: publish what is there
            publish_on_commit(list(Event.objects.filter(build_id=build_id, id__gt=after)))
            return

        def make() -> list[dict[str, Any]]:
            return [_payload(i, EventRow(*row)) for (i,), row in zip(ids, rows, strict=True)]

        publish_deferred_on_commit(
            project_id=project_id, build_id=build_id, size=len(rows), make=make
        )


def apply_transitions(*, project_id: int, changes: Iterable[Change]) -> list[Change]:
    """Bulk form of `transition` for existing rows. Each task's steps are checked
    against the table and applied with one conditional UPDATE per group of tasks that
    share their way; a task another process moved meanwhile is left alone. Returns the
    steps that were applied. A single step outside any transaction is, on PostgreSQL,
    one statement with its event (`_apply_in_one_statement`)."""
    changes = list(changes)
    if not changes:
        return []
    ways: dict[int, list[Change]] = {}
    for change in changes:
        way = ways.setdefault(change.task.id, [])
        if way and way[-1].new != change.old:
            raise ValueError(f"{change.task.name}: steps do not follow each other")
        check_transition(change.old, change.new, change.task.name)
        way.append(change)
    groups: dict[tuple[TaskState, int | None, TaskState, Any], list[int]] = {}
    merged: dict[int, dict[str, Any]] = {}
    for tid, way in ways.items():
        fields = merged[tid] = {k: v for c in way for k, v in c.fields.items()}
        key = (way[0].old, way[0].attempts, way[-1].new, _hashable(fields))
        groups.setdefault(key, []).append(tid)
    if len(changes) == 1 and _in_one_statement():  # a worker's claim, most often
        applied = changes if _apply_in_one_statement(project_id, changes[0]) else []
    else:
        applied = _apply_in_one_transaction(project_id, changes, groups, merged)
    for tid in {c.task.id for c in applied}:
        task = ways[tid][0].task
        task.state = ways[tid][-1].new
        for name, value in merged[tid].items():
            setattr(task, name, value)
    return applied


def _apply_in_one_transaction(
    project_id: int,
    changes: list[Change],
    groups: dict[tuple[TaskState, int | None, TaskState, Any], list[int]],
    merged: dict[int, dict[str, Any]],
) -> list[Change]:
    """One conditional UPDATE per group of tasks that share their way, and their events."""
    moved: set[int] = set()
    with transaction.atomic(savepoint=False):
        for (old, attempts, new, _frozen), tids in groups.items():
            values = {"state": new, **merged[tids[0]]}
            where = {"state": old} if attempts is None else {"state": old, "attempts": attempts}
            for chunk in _chunks(tids, 500):
                moved.update(_conditional_update(values, chunk, where))
        applied = [c for c in changes if c.task.id in moved]
        write_events(events_for(applied, project_id))
    return applied


def _in_one_statement() -> bool:
    """Whether one step may go as one autocommitted statement: on PostgreSQL, and only
    where the caller holds no transaction and no held events (`events_in_one_insert`)."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and getattr(_pending, "rows", None) is None
    )


def _apply_in_one_statement(project_id: int, change: Change) -> bool:
    """One step of one task as one statement: the conditional UPDATE and the event's
    INSERT in a data-modifying WITH (the event is written exactly when the row moved),
    atomic without BEGIN and COMMIT. A worker's claim took four round trips for it."""
    task = change.task
    values = {"state": change.new, **change.fields}
    where: dict[str, Any] = {"state": change.old}
    if change.attempts is not None:
        where["attempts"] = change.attempts
    event = _event(task, project_id, change.old, change.new, change.data, timezone.now())
    update = rawsql.update_sql(Task, tuple(values), tuple(where))
    params = [rawsql.to_db(Task, n, v) for n, v in (*values.items(), *where.items())]
    rows = rawsql.fetch(
        f"WITH moved AS ({update} AND id = %s RETURNING id) {_insert_event_of_moved_sql()}",
        [*params, task.id, *_event_params(event)],
    )
    if rows:
        publish_payloads_on_commit([_payload(rows[0][0], event)])
    return bool(rows)


@lru_cache(maxsize=1)
def _insert_event_of_moved_sql() -> str:
    """INSERT of one event for the task row in `moved`, its values as typed parameters
    (in a SELECT list PostgreSQL would take an untyped one for text)."""
    fields = [Event._meta.get_field(name) for name in EVENT_COLUMNS]
    values = [
        "moved.id" if f.attname == "task_id" else f"%s::{f.db_type(connection)}" for f in fields
    ]
    columns = ", ".join(rawsql.col(Event, f.attname) for f in fields)
    return (
        f"INSERT INTO {rawsql.table(Event)} ({columns}) "
        f"SELECT {', '.join(values)} FROM moved RETURNING id"
    )


def _event_params(event: EventRow) -> list[Any]:
    """`event`'s values for `_insert_event_of_moved_sql` (the task id comes from the row)."""
    return [
        column_value(Event, name, value) if name == "data" else rawsql.to_db(Event, name, value)
        for name, value in event._asdict().items()
        if name != "task_id"
    ]


def _conditional_update(values: dict[str, Any], ids: list[int], where: dict[str, Any]) -> list[int]:
    """Set `values` on those of `ids` still matching `where`; returns the ids changed."""
    changed: list[int] = rawsql.update_ids(Task, values, ids, where, returning="id")
    return changed


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


_T = TypeVar("_T")


def _chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
