"""The hot path's plain SQL writes and reads rows exactly as the ORM does."""

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from builds.services import trigger_build
from tasks import rawsql
from tasks.bulk import insert_rows
from tasks.models import Event, Task
from tests.factories import make_pipeline

pytestmark = pytest.mark.django_db

COLUMNS = ("id", "state", "outputs", "claims", "started_at", "deadline", "attempts")


@pytest.fixture
def task(project):
    """`one` is READY (its dispatch waits for a commit this test never makes)."""
    make_pipeline(project, "tasks:\n  one: {steps: [{run: 'true'}]}\n  two: {needs: [one]}\n")
    build = trigger_build(user=None, project=project, pipeline="main")
    return Task.objects.get(build=build, name="one")


def test_an_update_is_read_back_by_the_orm_as_written(task):
    started = timezone.now().replace(microsecond=123456)
    outputs = {"exit_code": 0, "nested": {"list": [1, "two", None]}, "text": "é ✓"}
    changed = rawsql.update(
        Task,
        {"state": "running", "outputs": outputs, "started_at": started, "deadline": None},
        {"id": task.id, "state": "ready"},
    )
    assert changed == 1
    fresh = Task.objects.get(id=task.id)
    assert (fresh.state, fresh.outputs, fresh.started_at, fresh.deadline) == (
        "running",
        outputs,
        started,
        None,
    )


def test_rows_read_in_plain_sql_equal_the_orms_values(task):
    Task.objects.filter(id=task.id).update(
        outputs={"k": [1, 2]}, started_at=timezone.now(), attempts=3
    )
    sql = f"SELECT {', '.join(COLUMNS)} FROM {rawsql.table(Task)} WHERE id = %s"
    (row,) = rawsql.from_db(Task, COLUMNS, rawsql.fetch(sql, [task.id]))
    assert row == list(Task.objects.filter(id=task.id).values_list(*COLUMNS).get())


def test_a_conditional_update_changes_nothing_once_the_condition_is_gone(task):
    assert rawsql.update(Task, {"state": "queued"}, {"id": task.id, "state": "pending"}) == 0
    assert Task.objects.get(id=task.id).state == "ready"


def test_update_ids_returns_only_the_rows_it_changed(task):
    other = Task.objects.get(build_id=task.build_id, name="two")  # pending, not ready
    changed = rawsql.update_ids(
        Task, {"state": "queued"}, [task.id, other.id], {"state": "ready"}, returning="id"
    )
    assert changed == [task.id]
    assert Task.objects.get(id=other.id).state == "pending"


def test_inserted_events_read_back_by_the_orm(task):
    now = timezone.now()
    rows = [
        (task.build.project_id, task.build_id, task.id, task.name, "task.state", "a", "b", d, now)
        for d in ({"via": ["ready"]}, {})
    ]
    before = Event.objects.count()
    insert_rows(
        Event,
        ("project_id", "build_id", "task_id", "task_name", "type", "old_state", "new_state")
        + ("data", "created_at"),
        rows,
    )
    stored = list(Event.objects.order_by("-id")[:2])[::-1]
    assert Event.objects.count() == before + 2
    assert [(e.data, e.created_at, e.task_id) for e in stored] == [
        ({"via": ["ready"]}, now, task.id),
        ({}, now, task.id),
    ]


def test_prepared_values_are_stored_as_given_and_may_serve_again(task):
    """A version's encoded `needs` go into every build of it: the same prepared value,
    inserted twice, reads back as the ORM wrote it."""
    now = timezone.now()
    data = rawsql.to_db(Event, "data", {"via": ["ready", "queued"]})
    columns = ("project_id", "build_id", "task_id", "task_name", "type", "old_state")
    columns += ("new_state", "data", "created_at")
    for _ in range(2):
        row = (task.build.project_id, task.build_id, task.id, task.name, "task.state", "a", "b")
        insert_rows(Event, columns, [row + (data, now)] * 2, prepared=frozenset({"data"}))
    stored = list(Event.objects.order_by("-id")[:4])
    assert [e.data for e in stored] == [{"via": ["ready", "queued"]}] * 4


def test_database_errors_arrive_as_djangos_own(task):
    with pytest.raises(DatabaseError):
        rawsql.fetch(f"SELECT no_such_column FROM {rawsql.table(Task)}")


def test_datetimes_compare_in_sql_as_in_the_orm(task):
    """Dispatch compares `not_before <= now` in SQL with values prepared by rawsql."""
    now = timezone.now()
    Task.objects.filter(id=task.id).update(not_before=now - timedelta(seconds=1))
    sql = f"SELECT id FROM {rawsql.table(Task)} WHERE not_before <= %s"
    assert rawsql.fetch(sql, [rawsql.to_db(Task, "not_before", now)]) == [(task.id,)]
    assert rawsql.fetch(sql, [rawsql.to_db(Task, "not_before", now - timedelta(hours=1))]) == []


def test_plain_sql_is_seen_by_djangos_execute_wrappers(db):
    """So assertNumQueries and APM hooks count the hot path's statements too."""
    from django.db import connection

    from tasks import rawsql
    from tasks.models import Task

    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        rawsql.fetch(f"SELECT COUNT(*) FROM {rawsql.table(Task)} WHERE id = %s", [1])
        rawsql.execute(f"UPDATE {rawsql.table(Task)} SET name = name WHERE id = %s", [1])
    assert len(seen) == 2


postgres_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="prepared statements are PostgreSQL's (the PostgreSQL + Redis lane)",
)


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@postgres_only
def test_the_hot_paths_statements_are_prepared_and_the_orms_are_not(task):
    sql = f"SELECT state FROM {rawsql.table(Task)} WHERE id = %s"
    for _ in range(3):
        assert rawsql.fetch(sql, [task.id]) == [("ready",)]
    assert (
        rawsql.execute(f"UPDATE {rawsql.table(Task)} SET priority = %s WHERE id = %s", [3, task.id])
        == 1
    )
    for _ in range(3):
        Task.objects.filter(id=task.id).values_list("state", flat=True).get()
    ids = f"SELECT id FROM {rawsql.table(Task)} WHERE id = ANY(%s)"
    for _ in range(3):
        assert rawsql.fetch(ids, [[task.id]]) == [(task.id,)]
    statements = prepared_statements()
    assert not any("ANY" in s for s in statements)  # an array: planned for its values
    assert f"SELECT state FROM {rawsql.table(Task)} WHERE id = $1" in statements
    assert not any("tasks_task" in s and "priority" in s for s in statements)  # run once
    assert not any('"tasks_task"."state"' in s for s in statements)  # the ORM's


@postgres_only
def test_prepared_statements_can_be_turned_off(task, settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "PG_PREPARE": False}
    sql = f"SELECT name FROM {rawsql.table(Task)} WHERE id = %s"
    for _ in range(3):
        assert rawsql.fetch(sql, [task.id]) == [("one",)]
    assert not any("SELECT name FROM" in s for s in prepared_statements())


def test_inserted_rows_return_their_ids_in_the_rows_order(task):
    now = timezone.now()
    columns = ("project_id", "build_id", "task_id", "task_name", "type", "old_state")
    columns += ("new_state", "data", "created_at")
    rows = [
        (task.build.project_id, task.build_id, task.id, task.name, "log", "", "", {"n": n}, now)
        for n in range(7)
    ]
    ids = insert_rows(Event, columns, rows, returning="id")
    assert len(ids) == 7 and ids == sorted(ids)
    stored = dict(Event.objects.filter(id__in=ids).values_list("id", "data"))
    assert [stored[i] for i in ids] == [{"n": n} for n in range(7)]
