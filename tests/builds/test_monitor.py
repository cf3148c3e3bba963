"""The cluster's monitor: job results in batches, task ends settled together with the
acknowledgement of their jobs."""

import queue

import django_q.cluster
import django_q.monitor
import pytest
from django_q.models import OrmQ

from builds import dispatch, monitor
from builds import settle as settling
from builds.attempts import Ending, TaskEnd
from builds.dispatch import job_package
from builds.execution import execute_task
from builds.services import cancel_build, trigger_build
from buildsite.broker import SQLBroker
from tasks.models import Task
from tests.factories import make_pipeline, task_states

pytestmark = pytest.mark.django_db(transaction=True)

PIPELINE = "tasks:\n  a: {}\n  b: {}\n  after: {needs: [a, b]}\n"


@pytest.fixture
def broker():
    return SQLBroker(list_key="monitor-test")


def job_results(broker, task_ids):
    """What the workers send the monitor for these tasks' jobs, as the cluster would:
    each job stored, claimed, run."""
    broker.enqueue_many([f"job-{task_id}" for task_id in task_ids])
    claimed = [row for _ in task_ids for row in broker.dequeue() or []]
    results = []
    for (ack_id, _), task_id in zip(claimed, task_ids, strict=True):
        package = job_package(task_id, 1)
        package.update(ack_id=ack_id, success=True)
        package["result"] = execute_task(task_id=task_id, attempt=1)
        results.append(package)
    return results


def queued(project, pipeline="main"):
    build = trigger_build(user=None, project=project, pipeline=pipeline)
    return build, {t.name: t for t in Task.objects.filter(build=build)}


def test_a_batch_settles_the_ends_of_several_builds_and_acknowledges_every_job(
    project, broker, monkeypatch
):
    sent = []
    monkeypatch.setattr(dispatch, "enqueue", sent.extend)
    make_pipeline(project, PIPELINE)
    first, first_tasks = queued(project)
    second, second_tasks = queued(project)
    ids = [first_tasks["a"].id, first_tasks["b"].id, second_tasks["a"].id]
    results = job_results(broker, ids)
    assert all(isinstance(r["result"], TaskEnd) for r in results)
    raw = job_package(0, 1) | {"func": "builds.jobs.noop", "success": True, "result": None}
    raw["ack_id"] = broker.enqueue("raw job")
    monitor.handle_results([*results, raw], broker)
    assert task_states(first) == {"a": "succeeded", "b": "succeeded", "after": "queued"}
    assert task_states(second) == {"a": "succeeded", "b": "queued", "after": "pending"}
    assert (first_tasks["after"].id, 1) in sent
    assert not OrmQ.objects.filter(key="monitor-test").exists()


def test_an_end_whose_task_moved_on_is_dropped_but_its_job_is_acknowledged(
    project, broker, monkeypatch
):
    monkeypatch.setattr(dispatch, "enqueue", lambda jobs: None)
    make_pipeline(project, PIPELINE)
    build, tasks = queued(project)
    results = job_results(broker, [tasks["a"].id])
    cancel_build(user=None, build=build)
    monitor.handle_results(results, broker)
    assert task_states(build)["a"] == "cancelled"
    assert not OrmQ.objects.exists()


def test_two_ends_of_one_attempt_in_a_batch_record_it_once(project, monkeypatch):
    monkeypatch.setattr(dispatch, "enqueue", lambda jobs: None)
    make_pipeline(project, PIPELINE)
    build, tasks = queued(project)
    end = execute_task(task_id=tasks["a"].id, attempt=1)
    assert settling.settle([end, end]) == 1
    moves = tasks["a"].events.filter(type="task.state").values_list("old_state", "new_state")
    assert list(moves)[-2:] == [("queued", "running"), ("running", "succeeded")]


def test_a_failing_end_does_not_cost_the_others_theirs(project, broker, monkeypatch, caplog):
    monkeypatch.setattr(dispatch, "enqueue", lambda jobs: None)
    make_pipeline(project, PIPELINE)
    first, first_tasks = queued(project)
    second, second_tasks = queued(project)
    results = job_results(broker, [first_tasks["a"].id, second_tasks["a"].id])
    finish = settling.finish_tasks

    def broken_for_the_first_build(*, build, endings, **options):
        if build.id == first.id:
            raise RuntimeError("boom")
        return finish(build=build, endings=endings, **options)

    monkeypatch.setattr(settling, "finish_tasks", broken_for_the_first_build)
    monitor.handle_results(results, broker)
    assert task_states(first)["a"] == "queued"  # left to the requeue check
    assert task_states(second)["a"] == "succeeded"
    assert not OrmQ.objects.exists()
    assert "settling" in caplog.text


def test_a_batch_is_what_is_waiting_up_to_the_limit_and_ends_at_stop(monkeypatch):
    monkeypatch.setattr(monitor, "BATCH", 3)
    results = queue.Queue()
    for item in [1, 2, 3, 4, "STOP", 5]:
        results.put(item)
    assert monitor.next_batch(results) == [1, 2, 3]
    assert monitor.next_batch(results) == [4, "STOP"]


def test_django_q2_starts_this_monitor_in_the_cluster_and_for_inline_jobs():
    assert django_q.cluster.monitor is monitor.cluster_monitor
    assert django_q.monitor.monitor is monitor.monitor


def test_the_end_of_one_attempt_is_never_recorded_on_the_next(project, monkeypatch):
    """Attempt 1 was reaped and attempt 2 is running when attempt 1's end is recorded
    from what was read before: the conditional UPDATE also checks the attempt."""
    from django.db import transaction

    monkeypatch.setattr(dispatch, "enqueue", lambda jobs: None)
    make_pipeline(project, "tasks:\n  slow: {steps: [{run: 'true'}]}\n")
    build, tasks = queued(project)
    task = settling.load_tasks([tasks["slow"].id])[tasks["slow"].id]
    Task.objects.filter(id=task.id).update(state="running", attempts=2)
    task.state, task.attempts = "running", 1  # as read while attempt 1 ran
    ending = Ending(task=task, outcome="succeeded", outputs={"from": "attempt 1"})
    with transaction.atomic():
        assert settling.finish_tasks(build=task.build, endings=[ending]) == 0
    task.refresh_from_db()
    assert (task.state, task.attempts, task.outputs) == ("running", 2, {})


def test_with_django_q2s_own_broker_jobs_are_acknowledged_one_by_one(project, monkeypatch):
    """Nothing to settle and no batch acknowledgement: no settling transaction (on
    SQLite it would take the write lock for nothing)."""
    from django_q.brokers.orm import ORM

    stock = ORM(list_key="monitor-test")
    results = []
    for name in ("one", "two"):
        raw = job_package(0, 1) | {"func": "builds.jobs.noop", "success": True, "result": None}
        raw["ack_id"] = stock.enqueue(name)
        results.append(raw)
    settled = []
    monkeypatch.setattr(monitor, "settle", lambda ends, then=None: settled.append(ends))
    monitor.handle_results(results, stock)
    assert not OrmQ.objects.exists()
    assert settled == []


def test_a_batch_reads_the_pools_only_of_projects_that_have_them(
    project, user, broker, monkeypatch
):
    """Whether a project has pools comes with its ended tasks; the capacity is read
    (under the project's lock) only where there are some, and there it still holds
    back what it does not admit."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from builds.models import ResourcePool
    from tests.factories import make_project

    other_project = make_project(owner=user, slug="other", name="Other")
    monkeypatch.setattr(dispatch, "enqueue", lambda jobs: None)
    ResourcePool.objects.create(project=other_project, name="cpu", capacity=1)
    make_pipeline(project, PIPELINE)
    pooled = "tasks:\n  a: {}\n  x: {needs: [a], resources: {cpu: 1}}\n"
    pooled += "  y: {needs: [a], resources: {cpu: 1}}\n"
    make_pipeline(other_project, pooled)
    plain, plain_tasks = queued(project)
    limited, limited_tasks = queued(other_project)
    results = job_results(broker, [plain_tasks["a"].id, plain_tasks["b"].id])
    results += job_results(broker, [limited_tasks["a"].id])
    with CaptureQueriesContext(connection) as queries:
        monitor.handle_results(results, broker)
    capacity_reads = [q["sql"] for q in queries.captured_queries if "capacity FROM" in q["sql"]]
    assert capacity_reads and all(
        sql.endswith(f"project_id = {other_project.id}") for sql in capacity_reads
    )
    assert task_states(plain)["after"] == "queued"
    assert sorted(task_states(limited).values()) == ["queued", "ready", "succeeded"]
