"""A cluster's pusher pulls jobs only for its idle workers (builds/pusher.py)."""

from __future__ import annotations

import queue
import threading
import time

import django_q.cluster
import pytest
from django_q.signing import SignedPackage

from builds import pusher
from builds.services import trigger_build
from buildsite.broker import SQLBroker
from tests.builds.test_workers import finished
from tests.cluster import Cluster, wait_for
from tests.factories import make_pipeline


class RecordingBroker(SQLBroker):
    """Hands out the jobs it is given, recording what the pusher asked for."""

    def __init__(self, jobs: list[tuple[int, str]]) -> None:  # no connection needed
        self.list_key = "test"
        self.jobs = jobs
        self.asked_for: list[int | None] = []
        self.failed: list[int] = []

    def dequeue(self, up_to: int | None = None) -> list[tuple[int, str]] | None:
        self.asked_for.append(up_to)
        taken, self.jobs = self.jobs[: up_to or 10], self.jobs[up_to or 10 :]
        if not taken:
            time.sleep(0.01)
        return taken or None

    def fail(self, task_id: int) -> None:
        self.failed.append(task_id)


def job(number: int) -> tuple[int, str]:
    return number, SignedPackage.dumps({"id": str(number), "func": "math.floor", "args": [1]})


@pytest.fixture
def idle_pulling(settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "PULL": "idle"}
    pusher.prepare()
    yield
    pusher._demand = None


def run_pusher(
    broker: RecordingBroker, task_queue: queue.Queue | None = None
) -> tuple[queue.Queue, threading.Event, threading.Thread]:
    task_queue = queue.Queue() if task_queue is None else task_queue
    stop = threading.Event()
    thread = threading.Thread(target=pusher.pusher, args=(task_queue, stop, broker), daemon=True)
    thread.start()
    return task_queue, stop, thread


@pytest.mark.usefixtures("idle_pulling")
def test_the_pusher_pulls_nothing_until_a_worker_asks_then_only_for_the_askers():
    broker = RecordingBroker([job(n) for n in range(1, 8)])
    task_queue, stop, thread = run_pusher(broker)
    try:
        time.sleep(0.3)
        assert broker.asked_for == [] and task_queue.empty()
        worker_view = pusher._AskingQueue(task_queue, pusher._demand)
        first, second = worker_view.get(timeout=5), worker_view.get(timeout=5)
        assert (first["ack_id"], second["ack_id"]) == (1, 2)
        time.sleep(0.3)
        assert task_queue.empty(), "nothing pulled beyond what two asks wanted"
        assert broker.asked_for and all(up_to in (1, 2) for up_to in broker.asked_for)
        assert len(broker.jobs) == 5
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive(), "the pusher stops while no worker asks"


@pytest.mark.usefixtures("idle_pulling")
def test_a_new_pusher_answers_the_asks_its_dead_predecessor_had_taken():
    """The sentinel starts a new pusher when one dies: what the old one owed is in
    shared memory, so the workers that asked still get their jobs."""
    task_queue: queue.Queue = queue.Queue()
    worker_view = pusher._AskingQueue(task_queue, pusher._demand)
    for _ in range(2):
        worker_view.demand.ask()
    empty = RecordingBroker([])
    first = threading.Event()
    thread = threading.Thread(target=pusher.pusher, args=(task_queue, first, empty), daemon=True)
    thread.start()
    wait_for(lambda: empty.asked_for, timeout=5, message="the first pusher to take the asks")
    first.set()
    thread.join(timeout=5)
    assert pusher._demand.room() == 2
    _, stop, second = run_pusher(RecordingBroker([job(n) for n in range(1, 5)]), task_queue)
    try:
        wait_for(lambda: task_queue.qsize() == 2, timeout=5, message="two jobs for two asks")
        time.sleep(0.2)
        assert task_queue.qsize() == 2
    finally:
        stop.set()
        second.join(timeout=5)


@pytest.mark.usefixtures("idle_pulling")
def test_a_job_that_cannot_be_read_is_failed_and_still_leaves_the_worker_asking():
    broker = RecordingBroker([(1, "not a signed package"), job(2)])
    task_queue, stop, thread = run_pusher(broker)
    try:
        worker_view = pusher._AskingQueue(task_queue, pusher._demand)
        assert worker_view.get(timeout=5)["ack_id"] == 2
        assert broker.failed == [1]
    finally:
        stop.set()
        thread.join(timeout=5)


def test_pulling_ahead_asks_for_a_full_batch(settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "PULL": "ahead"}
    pusher.prepare()
    broker = RecordingBroker([job(n) for n in range(1, 4)])
    task_queue, stop, thread = run_pusher(broker)
    try:
        wait_for(lambda: task_queue.qsize() == 3, timeout=5, message="all three jobs pulled")
    finally:
        stop.set()
        thread.join(timeout=5)
    assert broker.asked_for[0] is None


def test_django_q2_runs_this_pusher_and_worker_loop():
    assert django_q.cluster.pusher is pusher.pusher
    assert django_q.cluster.worker is pusher.worker


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("unsandboxed")  # talks to its steps through host files
def test_a_busy_cluster_keeps_no_job_from_another_clusters_idle_workers(project, tmp_path):
    """Host A (one worker) runs one of six waiting tasks; host B (five workers) starts
    later and runs the other five at once. Pulling ahead (10 a claim), A's pusher took all
    five for its one busy worker; with a claim per worker, two, until their lease ended."""
    release, started = tmp_path / "release", tmp_path / "started"
    started.mkdir()
    tasks = "\n".join(
        f"  t{i}: {{steps: [{{run: 'touch {started}/t{i}; "
        f"until [ -f {release} ]; do sleep 0.1; done'}}]}}"
        for i in range(6)
    )
    make_pipeline(project, f"tasks:\n{tasks}\n")
    env = {"BUILDSITE_Q_PULL": "idle", "BUILDSITE_LEASE_SECONDS": "60"}
    with Cluster(workers=1, extra_env=env):
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(lambda: any(started.iterdir()), timeout=60, message="A to start a task")
        time.sleep(1.5)  # time for A's pusher to pull ahead, if it did
        with Cluster(workers=5, extra_env=env):
            wait_for(lambda: len(list(started.iterdir())) == 6, timeout=30, message="B's five")
            release.touch()
            build = wait_for(lambda: finished(build.id), timeout=60, message="build to finish")
    assert build.state == "succeeded"
