"""django-q2's result monitor, handling results in batches.

django-q2's monitor is one process per cluster that receives every finished job from
the workers. Its own loop takes one result at a time: one transaction to acknowledge
each job, and (before this) each worker wrote its task's end in a transaction of its
own. This loop does the same work per result (save it if asked, acknowledge it, send
`post_execute`, log it), but takes every result that is waiting, up to `BATCH`, and
records the task ends among them (`builds/settle.py`) and the acknowledgements of the
whole batch in one transaction. When results come one by one it behaves as the stock
monitor; under load, one write settles many tasks.

`install()` (from `BuildsConfig.ready`) puts it in place of django-q2's, for the
cluster and for inline (sync) jobs alike. In a cluster the monitor process also runs
the cluster's share of upkeep (`builds/upkeep.py`), so no separate process is needed.
"""

from __future__ import annotations

import logging
import queue
from multiprocessing import current_process
from typing import Any, Protocol

from django.db import transaction
from django_q.brokers import Broker, get_broker
from django_q.conf import setproctitle
from django_q.monitor import save_cached, save_task
from django_q.signals import post_execute
from django_q.utils import get_func_repr

from .attempts import TaskEnd
from .cluster import RELEASED
from .settle import SETTLE_COLUMNS, load_tasks, settle, write_logs

log = logging.getLogger("django-q")
BATCH = 200
STOP = "STOP"


class ResultQueue(Protocol):
    """What the monitor needs of django-q2's result queue (a multiprocessing queue)."""

    def get(self) -> Any: ...

    def get_nowait(self) -> Any: ...


def monitor(result_queue: ResultQueue, broker: Broker | None = None) -> None:
    if broker is None:
        broker = get_broker()
    name = current_process().name
    if setproctitle:
        setproctitle.setproctitle(f"qcluster {name} monitor")
    log.info("%s monitoring at %s", name, current_process().pid)
    stopping = False
    while not stopping:
        results = next_batch(result_queue)
        if results and results[-1] == STOP:
            results.pop()
            stopping = True
        if results:
            handle_results(results, broker)
    log.info("%s stopped monitoring results", name)


def cluster_monitor(result_queue: ResultQueue, broker: Broker | None = None) -> None:
    """The monitor of a cluster: results, and upkeep while this cluster holds its lease."""
    from django_q.conf import Conf

    from .upkeep import UpkeepThread

    upkeep = UpkeepThread(workers=int(Conf.WORKERS or 0))
    upkeep.start()
    try:
        monitor(result_queue, broker)
    finally:
        upkeep.stop()


def next_batch(result_queue: ResultQueue) -> list[Any]:
    """Wait for one result, then take what else is waiting (up to BATCH), stopping at
    STOP (which is returned last)."""
    results = [result_queue.get()]
    while results[-1] != STOP and len(results) < BATCH:
        try:
            results.append(result_queue.get_nowait())
        except queue.Empty:
            break
    return results


def handle_results(results: list[dict[str, Any]], broker: Broker) -> None:
    ends: list[TaskEnd] = []
    acks: list[Any] = []  # ack ids: whatever the broker uses
    released: list[Any] = []
    for task in results:
        if task.get("cached", False):
            save_cached(task, broker)
        else:
            save_task(task, broker)
        if task["success"] and isinstance(task.get("result"), TaskEnd):
            ends.append(task["result"])
        ack_id = task.pop("ack_id", False)
        if ack_id and task["success"] and task.get("result") == RELEASED:
            released.append(ack_id)  # handed back unstarted by a stopping worker
        elif ack_id and (task["success"] or task.get("ack_failure", False)):
            acks.append(ack_id)
    record(ends, acks, broker)
    if released and hasattr(broker, "release"):
        broker.release(released)
    verbose = log.isEnabledFor(logging.INFO)
    for task in results:
        post_execute.send(sender="django_q", task=task)
        if task["success"]:
            if verbose:
                log.info("Processed '%s' (%s)", get_func_repr(task["func"]), task["name"])
        else:
            log.error(
                "Failed '%s' (%s) - %s", get_func_repr(task["func"]), task["name"], task["result"]
            )


def record(ends: list[TaskEnd], acks: list[Any], broker: Broker) -> None:
    """Settle the ends and acknowledge the jobs; with a broker whose jobs are rows in
    our database, in the same transaction."""
    acknowledge_many = getattr(broker, "acknowledge_many", None)
    acknowledge = (lambda: acknowledge_many(acks)) if acknowledge_many and acks else None
    acknowledged = False
    try:
        if ends or acknowledge:  # no transaction (no write lock) for nothing
            settle(ends, then=acknowledge)
        acknowledged = acknowledge is not None
    except Exception:
        # One bad end must not cost the others theirs: settle them one by one. An end
        # that still fails leaves its task to the reaper (lease) or the requeue check.
        log.exception("settling %d task ends together failed; settling one by one", len(ends))
        for end in ends:
            try:
                settle([end])
            except Exception:
                log.exception("settling %s failed", end)
                keep_log(end)
    if acknowledged:
        return
    if acknowledge is not None:
        acknowledge()
    else:
        for ack_id in acks:
            broker.acknowledge(ack_id)


def keep_log(end: TaskEnd) -> None:
    """An end that could not be settled still has its last output stored (the reaper
    or the requeue check recovers the task itself)."""
    if not end.log:
        return
    try:
        with transaction.atomic():
            write_logs([end], load_tasks([end.task_id], SETTLE_COLUMNS))
    except Exception:
        log.exception("storing the log of %s failed", end)


def install() -> None:
    """Use this monitor wherever django-q2 starts its own: the cluster's sentinel
    spawns `django_q.cluster.monitor`, inline jobs call `django_q.monitor.monitor`."""
    import django_q.cluster
    import django_q.monitor

    django_q.cluster.monitor = cluster_monitor
    django_q.monitor.monitor = monitor
