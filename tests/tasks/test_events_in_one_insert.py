"""Events held for one INSERT (a worker's settling transaction): stored in the order
they were written, with the build's own events in their place, and only on success."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tasks.models import Event
from tasks.services import EventRow, events_in_one_insert, record_event, write_events


def row(project, name: str) -> EventRow:
    return EventRow(
        project.id, None, None, name, Event.Type.TASK_STATE, "ready", "queued", {}, timezone.now()
    )


def names(project) -> list[str]:
    stored = Event.objects.filter(project_id=project.id).order_by("id")
    return [e.task_name or e.type for e in stored]


@pytest.mark.parametrize("relay", [True, False])
def test_held_events_go_in_one_insert_in_their_order(project, settings, relay):
    settings.BUILDSITE = {**settings.BUILDSITE, "EVENT_RELAY": relay}
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record), events_in_one_insert():
        write_events([row(project, "a"), row(project, "b")])
        with events_in_one_insert():  # joins the outer block
            write_events([row(project, "c")])
        assert names(project) == []  # nothing stored yet
    writes = [sql for sql in statements if not sql.startswith("SELECT")]  # INSERT or COPY
    assert len(writes) == 1
    assert names(project) == ["a", "b", "c"]


def test_an_event_recorded_meanwhile_comes_after_those_held(project):
    with events_in_one_insert():
        write_events([row(project, "a")])
        record_event(project_id=project.id, type=Event.Type.BUILD_STATE, new_state="succeeded")
        write_events([row(project, "b")])
    assert names(project) == ["a", Event.Type.BUILD_STATE, "b"]


def test_nothing_held_is_stored_when_the_block_fails(project):
    with pytest.raises(RuntimeError), transaction.atomic(), events_in_one_insert():
        write_events([row(project, "a")])
        raise RuntimeError("settling failed")
    write_events([row(project, "b")])  # and later writes are not held
    assert names(project) == ["b"]
