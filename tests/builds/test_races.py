"""Concurrency against the real database: racing workers and dispatchers."""

import contextlib
import subprocess
import sys
import threading

import pytest
from django.db import connection

from builds.dispatch import dispatch_ready_tasks
from builds.models import ResourcePool
from builds.services import mark_build_running, trigger_build
from tasks.models import Task
from tests.cluster import ROOT, database_env
from tests.factories import make_pipeline, run_job

pytestmark = pytest.mark.django_db(transaction=True)


def race(n, fn):
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(fn())
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


@pytest.fixture
def no_enqueue(monkeypatch):
    """Dispatch marks tasks QUEUED but sends no job: the tests play the workers."""
    import builds.dispatch

    monkeypatch.setattr(builds.dispatch, "enqueue", lambda jobs: None)


def queued_task(project, tmp_path):
    runs = tmp_path / "runs"
    make_pipeline(project, f"tasks:\n  once: {{steps: [{{run: 'echo ran >> {runs}'}}]}}\n")
    build = trigger_build(user=None, project=project, pipeline="main")
    task = Task.objects.get(build=build)
    assert task.state == "queued"
    return task, runs


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_threads_racing_for_one_task_run_it_exactly_once(project, tmp_path, no_enqueue):
    task, runs = queued_task(project, tmp_path)
    results = race(8, lambda: run_job(task.id))
    assert sorted(results).count("succeeded") == 1
    assert runs.read_text() == "ran\n"
    assert task.events.filter(new_state="running").count() == 1


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_processes_racing_for_one_task_run_it_exactly_once(project, tmp_path, no_enqueue):
    task, runs = queued_task(project, tmp_path)
    code = (
        "import django, sys; django.setup(); from tests.factories import run_job; "
        f"print(run_job({task.id}))"
    )
    import os

    env = {**os.environ, **database_env(), "DJANGO_SETTINGS_MODULE": "buildsite.settings"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert [out.strip().splitlines()[-1] for out, _ in outputs].count("succeeded") == 1
    assert runs.read_text() == "ran\n"


def test_concurrent_dispatchers_never_over_commit_a_pool(project, no_enqueue, monkeypatch):
    import builds.services

    ResourcePool.objects.create(project=project, name="cpu", capacity=3)
    tasks = "\n".join(f"  t{i}: {{steps: [{{run: 'true'}}]}}" for i in range(20))
    make_pipeline(project, f"tasks:\n{tasks}\n")
    # Hold every task READY until the race starts.
    monkeypatch.setattr(builds.services, "dispatch_on_commit", lambda project_id: None)
    build = trigger_build(user=None, project=project, pipeline="main")
    assert Task.objects.filter(build=build, state="ready").count() == 20
    counts = race(6, lambda: dispatch_ready_tasks(project_id=project.id))
    assert sum(counts) == 3
    assert Task.objects.filter(build=build, state="queued").count() == 3


def test_threads_racing_for_one_stepless_task_finish_it_once(project, no_enqueue):
    """A task with nothing to run is started and ended in one UPDATE: still once."""
    make_pipeline(project, "tasks:\n  gate: {}\n")
    build = trigger_build(user=None, project=project, pipeline="main")
    task = Task.objects.get(build=build)
    results = race(8, lambda: run_job(task.id))
    assert sorted(results).count("succeeded") == 1
    states = list(task.events.values_list("old_state", "new_state"))
    assert states.count(("queued", "running")) == 1
    assert states.count(("running", "succeeded")) == 1


def test_parents_finishing_together_always_unlock_their_child(project, no_enqueue, monkeypatch):
    """Both parents of `join` end at the same moment in two threads; whichever commits
    last must see the other's end and move `join` on. Each finishing thread waits (up to
    a second) for the other before it reads the dependents' states, so without the
    per-build lock both would read before either commits, which under READ COMMITTED
    (PostgreSQL) leaves `join` PENDING for ever."""
    import builds.settle

    make_pipeline(project, "tasks:\n  a: {}\n  b: {}\n  join: {needs: [a, b]}\n")
    for _ in range(3):
        build = trigger_build(user=None, project=project, pipeline="main")
        tasks = {t.name: t for t in Task.objects.filter(build=build)}
        assert tasks["a"].state == tasks["b"].state == "queued"
        mark_build_running(build=build)  # as mid-build: no write to the build row itself
        start, before_read = threading.Barrier(2), threading.Barrier(2, timeout=1)
        load = builds.settle.BuildTasks

        def load_after_the_other(*args, before_read=before_read, load=load, **kwargs):
            # A broken barrier: the other thread is held by the lock, read alone.
            with contextlib.suppress(threading.BrokenBarrierError):
                before_read.wait()
            return load(*args, **kwargs)

        monkeypatch.setattr(builds.settle, "BuildTasks", load_after_the_other)

        def finish(name, tasks=tasks, start=start):
            start.wait()
            try:
                return run_job(tasks[name].id)
            finally:
                connection.close()

        threads = [threading.Thread(target=finish, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        tasks["join"].refresh_from_db()
        assert tasks["join"].state == "queued", build.id


def test_a_dispatch_that_waited_for_a_resize_counts_the_new_capacity(project, no_enqueue):
    """The resize holds the project's lock until it commits; the dispatch waiting for
    that lock must then see the new capacity, not the one from before it waited (on
    PostgreSQL a statement that waits for a row lock keeps its older view of the
    other tables)."""
    import time

    from django.db import transaction

    from builds.dispatch import lock_project

    ResourcePool.objects.create(project=project, name="cpu", capacity=1)
    make_pipeline(project, f"tasks:\n  a: {TRUE_CPU}\n  b: {TRUE_CPU}\n")
    build = trigger_build(user=None, project=project, pipeline="main")
    assert sorted(Task.objects.filter(build=build).values_list("state", flat=True)) == [
        "queued",
        "ready",
    ]  # one cpu, held by whichever went first
    resizing = threading.Event()

    def resize():
        try:
            with transaction.atomic():
                lock_project(project.id)
                ResourcePool.objects.filter(project=project).update(capacity=2)
                resizing.set()
                time.sleep(0.5)  # the dispatch is waiting for the lock meanwhile
        finally:
            connection.close()

    resizer = threading.Thread(target=resize)
    resizer.start()
    try:
        assert resizing.wait(10)
        assert dispatch_ready_tasks(project_id=project.id) == 1  # the second cpu's task
    finally:
        resizer.join(10)
    assert Task.objects.filter(build=build, state="queued").count() == 2


TRUE_CPU = "{resources: {cpu: 1}, steps: [{run: 'true'}]}"
