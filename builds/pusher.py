"""django-q2's pusher and worker loop, with the pusher pulling jobs only for idle workers.

django-q2's pusher pulls jobs as fast as its cluster's queue takes them: a queue of
`queue_limit` jobs, plus the batch in its hand while the queue is full. Those jobs are
leased to this cluster; where several clusters share the database, a cluster whose
workers are all busy kept them from another cluster's idle workers until their lease
ended (30 s), or until its own workers were free.

With `BUILDSITE["PULL"] == "idle"` (the default where clusters can share the database,
i.e. not on SQLite) the pusher pulls no more jobs than the cluster has workers waiting
for one. Each worker counts itself in (`wanted`) each time it asks the queue for a job;
the pusher counts each job it puts in the queue (`given`); it pulls up to
`wanted - given` jobs (and at most `bulk`) per write, and sleeps until a worker asks
when that is zero. Two counters that only grow rather than a semaphore: a pusher that
dies between pulling and putting (its jobs come back after the lease) or a worker that
dies asking leaves the count too high by its jobs, never too low, so no worker waits
for a job the pusher thinks it has.

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
from django_q.signing import BadSignature, SignedPackage

from buildsite.broker import SQLBroker

log = logging.getLogger("django-q")
WAIT_SECONDS = 0.5  # how often a pusher with nothing to do checks whether to stop


class _Demand:
    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self.wanted = context.Value("q", 0)  # jobs asked for by workers, ever
        self.given = context.Value("q", 0, lock=False)  # jobs put in the queue, ever
        self.asked = context.Event()  # a worker has asked since the pusher looked

    def room(self) -> int:
        return max(0, int(self.wanted.value) - int(self.given.value))

    def ask(self) -> None:
        with self.wanted.get_lock():
            self.wanted.value += 1
        self.asked.set()

    def wait(self) -> bool:
        """Sleep until a worker asks (True when the queue has room then)."""
        self.asked.clear()
        if self.room() == 0:  # cleared first, so an ask in between is not missed
            self.asked.wait(WAIT_SECONDS)
        return self.room() > 0


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
    while not event.is_set():
        if demand is not None and demand.room() == 0 and not demand.wait():
            continue
        try:
            jobs = broker.dequeue() if demand is None else broker.dequeue(up_to=demand.room())
        except Exception:
            log.exception("Failed to pull task from broker")
            sleep(10)  # the broker is probably down: the sentinel starts a new pusher
            break
        for ack_id, package in jobs or ():
            try:
                task = SignedPackage.loads(package)
            except (TypeError, BadSignature):
                log.exception("Failed to push task to queue")
                broker.fail(ack_id)
                continue
            task["cluster"] = Conf.CLUSTER_NAME
            task["ack_id"] = ack_id
            task_queue.put(task)
            if demand is not None:
                demand.given.value += 1  # only this process writes it
    log.info("%s stopped pushing tasks", name)


def install() -> None:
    """Use this pusher and worker loop in django-q2's clusters."""
    import django_q.cluster

    django_q.cluster.pusher = pusher
    django_q.cluster.worker = worker
