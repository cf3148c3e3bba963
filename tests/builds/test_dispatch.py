"""Dispatch after a finished task: queued at once without pools, held by a full pool,
run in turn by the worker that gave the pool back."""

import pytest
from django.db import transaction

from builds.dispatch import Held, Taken, locked_capacity
from builds.models import ResourcePool
from builds.services import trigger_build
from tasks.models import Task
from tests.factories import make_pipeline, run_job

pytestmark = pytest.mark.django_db(transaction=True)

PIPELINE = "tasks:\n  a: {}\n  b: {needs: [a]}\n  c: {needs: [a]}\n"
TRUE = "{steps: [{run: 'true'}]}"
AFTER_A = "{needs: [a], steps: [{run: 'true'}]}"
BUSY = f"tasks:\n  a: {TRUE}\n  b: {AFTER_A}\n  c: {AFTER_A}\n  busy: {TRUE}\n"


@pytest.fixture
def jobs(monkeypatch):
    """The (task id, attempt) of every job sent to django-q2, whichever broker."""
    import builds.dispatch

    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(builds.dispatch, "enqueue", sent.extend)
    return sent


def run(task):
    assert run_job(task.id) == "succeeded"


def held_at_most(build, capacity):
    """Whether the build's events never show more than `capacity` tasks running."""
    running = 0
    for old, new in build.events.filter(type="task.state").values_list("old_state", "new_state"):
        running += (new == "running") - (old == "running")
        if running > capacity:
            return False
    return True


def run_through_one_cpu(project, jobs, pipeline, first="a"):
    """Triggers `pipeline` in a project with one cpu and runs the job of its first task
    (`first`): its worker settles each end and runs the rest in turn. Returns the
    build, checked to have succeeded with that one job, never over the pool."""
    ResourcePool.objects.create(project=project, name="cpu", capacity=1)
    make_pipeline(project, pipeline)
    build = trigger_build(user=None, project=project, pipeline="main")
    queued = Task.objects.get(build=build, state="queued")
    if first:
        assert queued.name == first
    assert run_job(queued.id) == "settled by its worker"
    build.refresh_from_db()
    assert build.state == "succeeded"
    assert len(jobs) == 1  # only the first task's
    assert held_at_most(build, 1)
    return build


def test_without_pools_unblocked_tasks_are_queued_with_their_jobs_at_once(project, jobs):
    make_pipeline(project, PIPELINE)
    build = trigger_build(user=None, project=project, pipeline="main")
    tasks = {t.name: t for t in Task.objects.filter(build=build)}
    assert jobs == [(tasks["a"].id, 1)]  # this test plays the worker
    run(tasks["a"])
    states = dict(Task.objects.filter(build=build).values_list("name", "state"))
    assert states == {"a": "succeeded", "b": "queued", "c": "queued"}
    assert sorted(jobs[1:]) == sorted([(tasks["b"].id, 1), (tasks["c"].id, 1)])
    moves = list(
        build.events.filter(task_name="b", type="task.state").values_list("old_state", "new_state")
    )
    assert moves == [("pending", "ready"), ("ready", "queued")]


def test_a_full_pool_holds_unblocked_tasks_ready(project, jobs, monkeypatch):
    import builds.execution

    monkeypatch.setattr(builds.execution, "CHAIN_SECONDS", 0)  # no task run in turn
    ResourcePool.objects.create(project=project, name="cpu", capacity=1)
    make_pipeline(project, BUSY)
    build = trigger_build(user=None, project=project, pipeline="main")
    tasks = {t.name: t for t in Task.objects.filter(build=build)}
    queued = [name for name, t in tasks.items() if t.state == "queued"]
    assert len(queued) == 1  # a and busy compete for the one cpu
    assert len(jobs) == 1
    first = tasks[queued[0]]
    run(first)
    # first's cpu is free again: exactly one more task may run, whichever is first.
    states = dict(Task.objects.filter(build=build).values_list("name", "state"))
    assert list(states.values()).count("queued") == 1
    assert len(jobs) == 2


def test_a_task_with_nothing_to_run_claims_no_pool(project, jobs):
    """It holds a pool for no time, so it never waits for one (its default claim does
    not apply); one that names `resources` itself keeps them."""
    ResourcePool.objects.create(project=project, name="cpu", capacity=1)
    make_pipeline(
        project, f"tasks:\n  busy: {TRUE}\n  gate: {{}}\n  named: {{resources: {{cpu: 1}}}}\n"
    )
    build = trigger_build(user=None, project=project, pipeline="main")
    tasks = {t.name: t for t in Task.objects.filter(build=build)}
    assert tasks["gate"].state == "queued" and tasks["gate"].claims == {}
    assert tasks["named"].claims == {"cpu": 1}
    assert sorted(t.state for t in (tasks["busy"], tasks["named"])) == ["queued", "ready"]


def test_the_worker_of_a_pooled_task_runs_what_the_pool_admits_next(project, jobs):
    """With the pool full, the worker that ends a task settles it itself and runs the
    next task the pool admits, one at a time, without a job for it."""
    build = run_through_one_cpu(project, jobs, BUSY, first="")  # a or busy
    states = dict(Task.objects.filter(build=build).values_list("name", "state"))
    assert states == {"a": "succeeded", "b": "succeeded", "c": "succeeded", "busy": "succeeded"}
    names = [
        name
        for name, new in build.events.filter(type="task.state", new_state="running")
        .order_by("id")
        .values_list("task_name", "new_state")
    ]
    assert sorted(names) == ["a", "b", "busy", "c"]
    assert names.index("a") < names.index("b") and names.index("a") < names.index("c")


NAMED = "{needs: [a], resources: {cpu: 1}}"  # nothing to run, but a claim of its own


def test_the_worker_ends_tasks_with_nothing_to_run_the_pool_admits_together(
    project, jobs, monkeypatch
):
    """They hold the pool for no time: the worker that gave the pool back ends all of
    those the pool admits at once, then runs the task they unblock."""
    import builds.settle

    monkeypatch.setattr(builds.settle, "STEPLESS_SECONDS", 60.0)  # however slow this host
    build = run_through_one_cpu(
        project,
        jobs,
        f"tasks:\n  a: {TRUE}\n  j1: {NAMED}\n  j2: {NAMED}\n  j3: {NAMED}\n"
        "  b: {needs: [j1, j2, j3], steps: [{run: 'true'}]}\n",
    )
    joins = Task.objects.filter(build=build, name__startswith="j")
    assert {t.finished_at for t in joins} == {joins[0].finished_at}  # in one settling
    assert {t.worker for t in joins} == {Task.objects.get(build=build, name="a").worker}
    moves = list(
        build.events.filter(task_name="j2", type="task.state").values_list("old_state", "new_state")
    )
    assert moves[-3:] == [("ready", "queued"), ("queued", "running"), ("running", "succeeded")]


def test_a_task_to_run_taken_beside_ones_with_nothing_to_run_keeps_the_pool(project, jobs):
    build = run_through_one_cpu(
        project,
        jobs,
        f"tasks:\n  a: {TRUE}\n  j: {NAMED}\n  s: {AFTER_A}\n"
        "  c: {needs: [j], steps: [{run: 'true'}]}\n",
    )
    order = list(
        build.events.filter(type="task.state", new_state="running")
        .order_by("id")
        .values_list("task_name", flat=True)
    )
    assert order == ["a", "j", "s", "c"]  # c waited for s to give the cpu back


def test_a_worker_takes_only_tasks_of_builds_it_holds_or_that_run(project, jobs):
    """Taking another build's task with nothing to run (ending it), or one of a QUEUED
    build (marking it RUNNING), would lock that build after the project: a deadlock on
    PostgreSQL beside a settler that holds it. Such a task gets its job instead."""
    from django.db import transaction

    from builds.dispatch import Held, dispatch_and_take
    from builds.models import Build

    ResourcePool.objects.create(project=project, name="cpu", capacity=1)
    make_pipeline(
        project,
        "tasks:\n  a: {priority: 1, steps: [{run: 'true'}]}\n  j: {resources: {cpu: 1}}\n",
    )
    first = trigger_build(user=None, project=project, pipeline="main")
    Task.objects.filter(build=first).update(state="cancelled")  # out of the way
    build = trigger_build(user=None, project=project, pipeline="main")
    j = Task.objects.get(build=build, name="j")
    assert j.state == "ready" and build.state == "queued"  # a holds the cpu
    Task.objects.filter(build=build, name="a").update(state="succeeded")  # free again

    one_cpu = {"cpu": 1}  # the capacity the dispatch went by

    def take(locked):
        with transaction.atomic():
            mark = transaction.savepoint()
            taken = dispatch_and_take(
                project_id=project.id, worker="w", held=Held(builds=locked), instant=True
            )
            state = Task.objects.get(id=j.id).state
            transaction.savepoint_rollback(mark)
        return taken, state

    to_end_at_once = Taken([(j.id, 1)], None, capacity=one_cpu)
    assert take({build.id}) == (to_end_at_once, "queued")
    sent = len(jobs)
    assert take({first.id}) == (Taken([], None, capacity=one_cpu), "queued")
    assert jobs[sent:] == [(j.id, 1)]  # its job, as any dispatch
    Build.objects.filter(id=build.id).update(state="running")
    assert take({first.id}) == (Taken([], j.id, 1, one_cpu), "running")  # a task to run, claimed


def test_a_batched_job_is_the_package_async_task_would_have_stored():
    from django_q.signals import pre_enqueue
    from django_q.tasks import async_task

    from builds.dispatch import JOB, job_package

    seen = []

    def keep(sender, task, **kwargs):
        seen.append(dict(task))

    pre_enqueue.connect(keep)
    try:
        async_task(JOB, 5, 2, task_name="task-5-2", save=False, broker=_NoBroker())
        ours = job_package(5, 2)
    finally:
        pre_enqueue.disconnect(keep)
    theirs = seen[0]
    for key in ("id", "started"):
        assert type(ours.pop(key)) is type(theirs.pop(key))
    assert list(ours.items()) == list(theirs.items())


class _NoBroker:
    list_key = "none"

    def enqueue(self, pack):
        return 0


def test_a_build_started_by_a_task_with_nothing_to_run_shows_running_before_the_next(project, jobs):
    """Ending a task with nothing to run starts its build (`finish_tasks`), so the
    worker that takes the next task in turn takes it from a RUNNING build."""
    build = run_through_one_cpu(
        project,
        jobs,
        "tasks:\n  j: {resources: {cpu: 1}}\n  c: {needs: [j], steps: [{run: 'true'}]}\n",
        first="j",
    )
    moves = list(build.events.order_by("id").values_list("type", "task_name", "new_state"))
    started = moves.index(("build.state", "", "running"))
    assert started < moves.index(("task.state", "c", "running"))
    assert build.started_at is not None


def test_reading_the_capacity_adds_the_busy_time_of_the_pools_used(project):
    ResourcePool.objects.create(project=project, name="cpu", capacity=2)
    ResourcePool.objects.create(project=project, name="gpu", capacity=1)
    with transaction.atomic():
        capacity = locked_capacity(project.id, busy={"cpu": 1.5, "removed": 4.0})
        assert capacity == {"cpu": 2, "gpu": 1}
        # Once read in a transaction, the capacity is kept; busy time is still added.
        held = Held()
        locked_capacity(project.id, held)
        assert locked_capacity(project.id, held, busy={"gpu": 0.25}) == capacity
    busy = dict(ResourcePool.objects.filter(project=project).values_list("name", "busy_seconds"))
    assert busy == {"cpu": 1.5, "gpu": 0.25}
