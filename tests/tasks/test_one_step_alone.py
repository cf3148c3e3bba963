"""One step of one task as a transaction of its own (a worker's claim): applied only
while the task is where the step starts, with exactly one event, published with the
id it was stored under. On PostgreSQL, one statement."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from builds.attempts import claim_change
from builds.services import trigger_build
from tasks import services
from tasks.events import serialize
from tasks.models import Event, Task
from tests.factories import make_pipeline

pytestmark = pytest.mark.django_db(transaction=True)
# Run by the PostgreSQL + Redis lane of .ci/run; the SQLite lane has no such statement.
postgres_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="one statement is PostgreSQL's path"
)


@pytest.fixture
def queued(project):
    """A QUEUED task of a RUNNING build (its job waits in the queue: no cluster runs)."""
    make_pipeline(project, "tasks:\n  one: {steps: [{run: 'true'}]}\n")
    build = trigger_build(user=None, project=project, pipeline="main")
    build.__class__.objects.filter(id=build.id).update(state="running")
    task = Task.objects.get(build=build, name="one")
    assert task.state == "queued"
    return task


def claim(task, attempt=1):
    change = claim_change(task, attempt, timezone.now(), "host:1")
    applied = services.apply_transitions(project_id=task.build.project_id, changes=[change])
    return applied == [change]


def test_a_claim_moves_the_task_and_writes_its_one_event(queued):
    before = Event.objects.filter(task_id=queued.id).count()
    assert claim(queued)
    fresh = Task.objects.get(id=queued.id)
    assert (fresh.state, fresh.attempts, fresh.worker) == ("running", 1, "host:1")
    assert fresh.lease_expires_at is not None and (queued.state, queued.attempts) == ("running", 1)
    event = Event.objects.filter(task_id=queued.id).latest("id")
    assert Event.objects.filter(task_id=queued.id).count() == before + 1
    assert (event.old_state, event.new_state, event.task_name) == ("queued", "running", "one")
    assert event.data == {"attempt": 1, "worker": "host:1"}
    assert event.build_id == queued.build_id and event.project_id == queued.build.project_id


def test_a_claim_of_a_task_that_moved_on_changes_nothing(queued):
    stale = Task.objects.get(id=queued.id)
    assert claim(queued)
    before = Event.objects.count()
    assert not claim(stale)  # the same attempt again: the task is RUNNING now
    Task.objects.filter(id=queued.id).update(state="queued")
    assert not claim(Task.objects.get(id=queued.id), attempt=1)  # attempt 1 was taken
    assert Event.objects.count() == before
    assert Task.objects.get(id=queued.id).attempts == 1


def test_the_published_event_carries_the_id_it_was_stored_under(queued, settings, monkeypatch):
    settings.BUILDSITE = {**settings.BUILDSITE, "EVENT_RELAY": False}
    published = []
    monkeypatch.setattr(services, "publish_payloads_on_commit", published.extend)
    assert claim(queued)
    event = Event.objects.filter(task_id=queued.id).latest("id")
    assert published == [serialize(event)]


@postgres_only
def test_on_postgresql_a_claim_is_one_statement(queued):
    assert queued.build.project_id  # read before
    with CaptureQueriesContext(connection) as queries:
        assert claim(queued)
    assert len(queries.captured_queries) == 1


@postgres_only
def test_on_postgresql_a_prepared_claim_moves_and_records_as_the_first(project):
    """The hot path's statements are prepared on their second run in a connection
    (`rawsql`): the second claim runs the prepared statement, with the same result."""
    make_pipeline(
        project, "tasks:\n  one: {steps: [{run: 'true'}]}\n  two: {steps: [{run: 'true'}]}\n"
    )
    build = trigger_build(user=None, project=project, pipeline="main")
    build.__class__.objects.filter(id=build.id).update(state="running")
    tasks = list(Task.objects.filter(build=build).select_related("build").order_by("name"))
    assert [t.state for t in tasks] == ["queued", "queued"]
    assert all(claim(task) for task in tasks)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any(text.startswith("WITH moved AS (UPDATE") for text in prepared)
    for task in tasks:
        assert Task.objects.get(id=task.id).state == "running"
        running = Event.objects.filter(task_id=task.id, new_state="running")
        assert list(running.values_list("data", flat=True)) == [{"attempt": 1, "worker": "host:1"}]
