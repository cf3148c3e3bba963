"""django-q2's ORM broker with its per-job statements in plain SQL.

On the embedded default every job costs the broker three writes (enqueue, the pusher's
claim, the monitor's acknowledgement), each taking SQLite's single write lock. The stock
broker compiles an ORM query for each, deletes through the collector, and claims one
row per query. This one stores the same rows, in the same table, with the same meaning
(`lock` is when the row may be pulled again), but claims a batch of due jobs in a single
UPDATE ... RETURNING, so the lock is held for less time and taken less often.
Selected by `Q_CLUSTER["broker_class"]` (the default on every deployment).

A pulled job is leased, not popped: it stays in the table, locked for the job lease
(`BUILDSITE["LEASE_SECONDS"]`), until the monitor acknowledges it. If the host that
pulled it dies before the job ran, another cluster pulls it once the lease is over.
If the job is still running then, the second copy finds its task no longer QUEUED
and is dropped (claiming a task is a conditional update). On PostgreSQL, pushers of
several clusters skip each other's locked rows (`FOR UPDATE SKIP LOCKED`) instead of
queueing behind them.
"""

from __future__ import annotations

import multiprocessing
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from time import sleep
from typing import Any

from django import db
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ

from tasks import rawsql


def _names() -> tuple[str, str, str]:
    """The queue table and its `key` and `lock` columns, quoted (keywords in PostgreSQL)."""
    return rawsql.table(OrmQ), rawsql.col(OrmQ, "key"), rawsql.col(OrmQ, "lock")


# Set by a cluster's main process before it forks (`prepare_wakeup`): the monitor, which
# queues the dependents' jobs as it settles, wakes its own cluster's pusher at once
# instead of leaving the jobs until the pusher's next poll. (A pool as wide as the
# workers keeps only that many jobs in flight, so every poll interval showed.)
_wake: Any = None


def prepare_wakeup() -> None:
    global _wake
    _wake = multiprocessing.get_context("fork").Event()


def _wake_on_commit() -> None:
    if _wake is not None:
        transaction.on_commit(_wake.set)


def _one_write() -> AbstractContextManager[object]:
    """What a single-statement write runs in. On SQLite a transaction: `BEGIN IMMEDIATE`
    takes the write lock without the busy handler's sleeps (`buildsite/sqlite_backend`).
    On PostgreSQL the statement is atomic by itself, and BEGIN and COMMIT would be two
    more round trips: an idle pusher polls a hundred times a second."""
    if connection.vendor == "sqlite":
        atomic: AbstractContextManager[object] = transaction.atomic(savepoint=False)
        return atomic
    return nullcontext()


class SQLBroker(ORM):  # type: ignore[misc]  # django-q2 is untyped (Any base)
    def _fresh(self) -> None:
        # As the stock broker: outside a transaction, drop connections that went stale.
        if transaction.get_autocommit(using=Conf.ORM):
            db.close_old_connections()

    def enqueue(self, task: str) -> int:
        self._fresh()
        now = rawsql.to_db(OrmQ, "lock", timezone.now())
        table, key, lock = _names()
        with _one_write():
            rows = rawsql.fetch(
                f"INSERT INTO {table} ({key}, payload, {lock}) VALUES (%s, %s, %s) RETURNING id",
                [self.list_key or Conf.CLUSTER_NAME, task, now],
            )
            _wake_on_commit()
        job_id: int = rows[0][0]
        return job_id

    def enqueue_many(self, tasks: list[str]) -> None:
        """Store a batch of signed jobs in one statement."""
        self._fresh()
        now = rawsql.to_db(OrmQ, "lock", timezone.now())
        table, key, lock = _names()
        queue = self.list_key or Conf.CLUSTER_NAME
        with _one_write():
            rawsql.insert_many(
                f"INSERT INTO {table} ({key}, payload, {lock}) VALUES (%s, %s, %s)",
                [(queue, task, now) for task in tasks],
            )
            _wake_on_commit()

    def dequeue(self, up_to: int | None = None) -> list[tuple[int, str]] | None:
        """Claim up to `bulk` due jobs (and no more than `up_to`: the pusher's idle
        workers, `builds/pusher.py`), or wait a poll interval for some."""
        self._fresh()
        now = timezone.now()
        lease = settings.BUILDSITE["LEASE_SECONDS"]
        until = rawsql.to_db(OrmQ, "lock", now + timedelta(seconds=lease))
        due = rawsql.to_db(OrmQ, "lock", now)
        table, key, lock = _names()
        skip = (
            " FOR UPDATE SKIP LOCKED"
            if connection.features.has_select_for_update_skip_locked
            else ""
        )
        with _one_write():
            claimed = rawsql.fetch(
                f"UPDATE {table} SET {lock} = %s WHERE id IN (SELECT id FROM {table} "
                f"WHERE {key} = %s AND {lock} < %s ORDER BY id LIMIT %s{skip}) AND {lock} < %s "
                "RETURNING id, payload",
                [
                    until,
                    self.list_key,
                    due,
                    Conf.BULK if up_to is None else min(Conf.BULK, up_to),
                    due,
                ],
            )
        if claimed:
            return sorted(claimed)
        # Empty queue: spare the CPU until the next poll, or until this cluster's
        # monitor has queued jobs.
        if _wake is None:
            sleep(Conf.POLL)
        elif _wake.wait(Conf.POLL):
            _wake.clear()
        return None

    def delete(self, task_id: int) -> None:
        self._fresh()
        with _one_write():
            rawsql.execute(f"DELETE FROM {rawsql.table(OrmQ)} WHERE id = %s", [task_id])

    def acknowledge(self, task_id: int) -> None:
        self.delete(task_id)

    def acknowledge_many(self, task_ids: list[int]) -> None:
        """Acknowledge a batch of results in one statement (the monitor's batches)."""
        self._fresh()
        with transaction.atomic(savepoint=False):
            for chunk in (task_ids[i : i + 500] for i in range(0, len(task_ids), 500)):
                rawsql.execute(
                    f"DELETE FROM {rawsql.table(OrmQ)} WHERE id IN ({rawsql.marks(len(chunk))})",
                    chunk,
                )

    def release(self, task_ids: list[int]) -> None:
        """Make pulled jobs available again at once (a stopping cluster hands back the
        jobs it had not started), instead of when their lease ends."""
        self._fresh()
        due = rawsql.to_db(OrmQ, "lock", timezone.now() - timedelta(seconds=1))
        table, lock = rawsql.table(OrmQ), rawsql.col(OrmQ, "lock")
        with _one_write():
            rawsql.execute(
                f"UPDATE {table} SET {lock} = %s WHERE id IN ({rawsql.marks(len(task_ids))})",
                [due, *task_ids],
            )
