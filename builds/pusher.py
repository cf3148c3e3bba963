"""django-q2's pusher and worker loop, with the pusher pulling jobs only for idle workers.

django-q2's pusher pulls jobs as fast as its cluster's queue takes them: a queue of
`queue_limit` jobs, plus the batch in its hand while the queue is full. Those jobs are
leased to this cluster; where several clusters share the database, a cluster whose
workers are all busy kept them from another cluster's idle workers until their lease
ended (30 s), or until its own workers were free.

With `BUILDSITE["PULL"] == "idle"` (the default where clusters can share the database,
i.e. not on SQLite) the pusher pulls no more jobs than the cluster has workers waiting
for one. Each worker asks (`_Demand.ask`) each time it takes from the queue; the pusher
owes a job per ask, pulls up to what it owes (and at most `bulk`) per write, and sleeps
until a worker asks when it owes none. So a busy cluster holds no job that another
cluster's idle worker could run. A stopping cluster's pusher claims nothing (its
workers hand jobs back meanwhile).

With "ahead" (SQLite, one host) the pusher pulls as django-q2's does; there no other
cluster can be kept waiting, and pulling ten at a time is a third of SQLite's no-op
throughput.

`install()` (from `BuildsConfig.ready`) puts both in place of django-q2's;
`prepare()` runs in the cluster's main process before it forks.
"""

from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.process import current_process
from time import sleep
from typing import Any

from django.conf import settings
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf, setproctitle
from django_q.signing import SignedPackage

from buildsite.broker import SQLBroker

from .cluster import stopping

log = logging.getLogger("django-q")
WAIT_SECONDS = 0.5  # how often a pusher with nothing to do checks whether to stop


class _Demand:
    """Workers' asks for jobs, and how many of them the pusher still owes a job.

    `asks` is a semaphore only as an atomic counter: a worker's `release` takes no lock
    it could die holding (a worker killed inside a lock would stop the whole cluster).
    The pusher moves asks into `owed`, shared memory only it writes, so a pusher the
    sentinel starts anew carries on with what the dead one owed. A worker that dies
    asking, or a pusher killed between putting a job and counting it, leaves one ask
    too many: a job pulled that waits for a busy worker, as with pulling ahead. A
    pusher SIGKILLed while a job it put is still in the queue's buffer (not yet in its
    pipe) loses the job (its lease brings it back) and leaves one ask unanswered: the
    cluster runs one job fewer at a time until it restarts, as django-q2's own bounded
    queue loses a slot then."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self.asks = context.Semaphore(0)
        self.owed = context.RawValue("q", 0)

    def ask(self) -> None:
        self.asks.release()

    def room(self, wait: float = 0.0) -> int:
        """Jobs owed, taking in new asks; waits up to `wait` seconds for one if none."""
        while self.asks.acquire(False):
            self.owed.value += 1
        if self.owed.value == 0 and wait and self.asks.acquire(timeout=wait):
            self.owed.value += 1
        return int(self.owed.value)

    def given(self) -> None:
        self.owed.value -= 1


_demand: _Demand | None = None


def prepare() -> None:
    """Create the counters in the cluster's main process, before it forks (with "ahead",
    none: the pusher pulls as django-q2's)."""
    global _demand
    _demand = _Demand() if settings.BUILDSITE["PULL"] == "idle" else None


class _AskingQueue:
    """A worker's view of the task queue: each `get` counts as asking for a job."""

    def __init__(self, task_queue: Any, demand: _Demand) -> None:
        self.task_queue = task_queue
        self.demand = demand

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.demand.ask()
        return self.task_queue.get(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task_queue, name)


def worker(task_queue: Any, result_queue: Any, timer: Any, timeout: int | None = None) -> None:
    """django-q2's worker loop, asking for each job it takes."""
    from django_q.worker import worker as django_q_worker

    queue = task_queue if _demand is None else _AskingQueue(task_queue, _demand)
    django_q_worker(queue, result_queue, timer, Conf.TIMEOUT if timeout is None else timeout)


def pusher(task_queue: Any, event: Any, broker: Broker | None = None) -> None:
    """Pull jobs and put them in the cluster's queue (with "idle", only as many as
    workers wait for) until the cluster stops."""
    if broker is None:
        broker = get_broker()
    name = current_process().name
    if setproctitle:
        setproctitle.setproctitle(f"qcluster {name} pusher")
    log.info("%s pushing tasks at %s", name, current_process().pid)
    # Only our broker can be asked for fewer jobs (django-q2's own, for benchmarks, not).
    demand = _demand if isinstance(broker, SQLBroker) else None
    if _demand is not None and demand is None:
        log.warning("%s pulls ahead: only Buildsite's broker pulls for idle workers", name)
    while not event.is_set():
        room = None if demand is None else demand.room(wait=WAIT_SECONDS)
        if room == 0:
            continue
        if stopping():  # a stopping cluster hands jobs back: claim none meanwhile
            sleep(Conf.POLL)
            continue
        try:
            jobs = broker.dequeue() if room is None else broker.dequeue(up_to=room)
        except Exception:
            log.exception("Failed to pull task from broker")
            sleep(10)  # the broker is probably down: the sentinel starts a new pusher
            break
        for ack_id, package in jobs or ():
            try:
                task = SignedPackage.loads(package)
            except Exception:  # not only a bad signature: a class gone in a deploy
                log.exception("Failed to push task to queue")
                broker.fail(ack_id)
                continue
            task["cluster"] = Conf.CLUSTER_NAME
            task["ack_id"] = ack_id
            task_queue.put(task)
            if demand is not None:
                demand.given()
    log.info("%s stopped pushing tasks", name)


def install() -> None:
    """Use this pusher and worker loop in django-q2's clusters."""
    import django_q.cluster

    django_q.cluster.pusher = pusher
    django_q.cluster.worker = worker
