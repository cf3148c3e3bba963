"""One attempt of a task, from its claim to its end: the only place that knows the rules.

    QUEUED --claim--> RUNNING (lease, renewed by the heartbeat) --end--> SUCCEEDED
                                                                     --> FAILED
                                                                     --> RETRYING (backoff)
                                                                     --> CANCELLED

- a job names the attempt it is for; it is current while its task is QUEUED with one
  attempt fewer (`queued_for`), and an end is current while the task is RUNNING that
  attempt (`running`), so a late or repeated job or end never touches the next attempt;
- the claim is one conditional step, QUEUED -> RUNNING with the attempt count, the
  worker and a fresh lease (`claim_change`), taken by a worker for a task with steps and
  by settling for a task with nothing to run;
- the heartbeat renews the lease while the attempt is current, and tells the worker
  when it is not (cancelled, reaped);
- an end is one conditional step from the state the task was read in (`end_changes`),
  recorded by `builds/settle.py` for workers, the reaper, deadlines alike;
- a failed or lost attempt is retried while retries remain (`outcome_after_failure`),
  after an exponential backoff (`backoff_seconds`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import connection
from django.utils import timezone

from tasks import rawsql
from tasks.models import Task
from tasks.services import Change, TaskRow
from tasks.states import TaskState, can_transition

log = logging.getLogger(__name__)
S = TaskState


class AttemptRow(Protocol):
    """What the attempt rules read of a task: a model instance or a loaded row alike."""

    id: int | None
    state: str
    attempts: int


@dataclass(frozen=True)
class TaskEnd:
    """How one attempt ended, as its worker reports it (the job's result, carried to
    the monitor through django-q2's result queue)."""

    task_id: int
    attempt: int
    outcome: str
    outputs: dict[str, Any]
    error: str = ""
    # False for a task with nothing to run: the worker left it QUEUED, and settling
    # claims and ends it at once.
    claimed: bool = True
    worker: str = ""
    # The output since the task log's last flush: written as a `log` event by settling,
    # in its transaction, before the end's own events (one write fewer per task).
    log: str = ""
    # Stopped with its cluster (RETRYING): not the task's failure, so not one of its tries.
    interrupted: bool = False
    # The files it hands on, already in the artifact store (`builds/artifacts.py`).
    artifacts: tuple[dict[str, Any], ...] = ()

    def __str__(self) -> str:
        return f"task {self.task_id} attempt {self.attempt}: {self.outcome}"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- is this attempt current ---------------------------------------------------------------
def queued_for(attempt: int, state: str, attempts: int) -> bool:
    """A job for `attempt` may start: its task waits for exactly that attempt."""
    return state == S.QUEUED and attempts == attempt - 1


def running(attempt: int, state: str, attempts: int) -> bool:
    """`attempt` is the one running now."""
    return state == S.RUNNING and attempts == attempt


def end_is_current(end: TaskEnd, task: AttemptRow) -> bool:
    if end.claimed:
        return running(end.attempt, task.state, task.attempts)
    return queued_for(end.attempt, task.state, task.attempts)


# --- claim -----------------------------------------------------------------------------------
def claim_fields(attempt: int, now: datetime, worker: str) -> dict[str, Any]:
    return {
        "attempts": attempt,
        "started_at": now,
        "worker": worker,
        "lease_expires_at": now + timedelta(seconds=settings.BUILDSITE["LEASE_SECONDS"]),
        "error": "",
    }


def claim_change(task: TaskRow, attempt: int, now: datetime, worker: str) -> Change:
    """QUEUED -> RUNNING for `attempt`, only while the task waits for that attempt."""
    return Change(
        task,
        S.QUEUED,
        S.RUNNING,
        claim_fields(attempt, now, worker),
        {"attempt": attempt, "worker": worker},
        attempts=attempt - 1,
    )


# --- end -------------------------------------------------------------------------------------
def backoff_seconds(attempt: int) -> float:
    base = float(settings.BUILDSITE["RETRY_BACKOFF_SECONDS"])
    cap = float(settings.BUILDSITE["RETRY_BACKOFF_MAX_SECONDS"])
    return float(min(base * 2 ** max(0, attempt - 1), cap))


def outcome_after_failure(*, attempts: int, max_retries: int) -> TaskState:
    """After a failed or lost attempt: another try while retries remain."""
    return S.RETRYING if attempts <= max_retries else S.FAILED


def failure_outcome(task: Task) -> TaskState:
    return outcome_after_failure(attempts=task.attempts, max_retries=task.max_retries)


@dataclass
class Ending:
    """An end to record for a task read by the caller; the change starts from the
    state the task was read in."""

    task: Task
    outcome: TaskState
    outputs: dict[str, Any]
    error: str = ""
    claim: int | None = None  # claim (QUEUED -> RUNNING, this attempt) and end at once
    worker: str = ""
    interrupted: bool = False  # see TaskEnd.interrupted
    artifacts: list[dict[str, Any]] = field(default_factory=list)


def end_changes(ending: Ending, now: datetime) -> list[Change]:
    """The conditional steps that record `ending` (none when the table forbids it)."""
    task, outcome = ending.task, ending.outcome
    fields: dict[str, Any] = {
        "outputs": ending.outputs,
        "error": ending.error,
        "lease_expires_at": None,
    }
    if outcome == S.RETRYING:
        attempt = ending.claim if ending.claim is not None else task.attempts
        fields["not_before"] = now + timedelta(seconds=backoff_seconds(attempt))
        if ending.interrupted:  # the retry rule counts attempts: give this one back
            fields["max_retries"] = task.max_retries + 1
    else:
        fields["finished_at"] = now
    if ending.artifacts and outcome == S.SUCCEEDED:
        fields["artifacts"] = ending.artifacts
    data = {"error": ending.error} if ending.error else None
    if ending.claim is not None:
        if not can_transition(S.RUNNING, outcome):
            return []
        claim = claim_change(task, ending.claim, now, ending.worker)
        return [claim, Change(task, S.RUNNING, outcome, fields, data)]
    if not can_transition(task.state, outcome):
        return []
    return [Change(task, TaskState(task.state), outcome, fields, data, attempts=task.attempts)]


# --- lease -----------------------------------------------------------------------------------
class Heartbeat:
    """Renews the attempt's lease every LEASE_SECONDS/3 and notices, within
    HEARTBEAT_SECONDS, that the attempt is no longer current (cancelled, reaped);
    `on_beat` runs on every beat (the task log flushes its events there).

    The beats run in one thread per worker process (`_Beater`), which serves the
    process's attempts one after another: starting and joining a thread for each
    attempt cost about as much as a short step."""

    def __init__(self, task_id: int, attempt: int, on_beat: Any, beat_seconds: float) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.on_beat = on_beat
        self.lost = threading.Event()
        self.interval = min(float(settings.BUILDSITE["HEARTBEAT_SECONDS"]), beat_seconds)
        self.lease = float(settings.BUILDSITE["LEASE_SECONDS"])
        self.last_renew = self.next_beat = time.monotonic()

    def start(self) -> None:
        self.last_renew = time.monotonic()
        self.next_beat = self.last_renew + self.interval
        _beater().watch(self)

    def stop(self) -> None:
        """Stop beating; returns once no beat of this attempt is running."""
        _beater().unwatch(self)

    def tick(self) -> None:
        renew = time.monotonic() - self.last_renew >= self.lease / 3
        try:
            current = self.beat(renew=renew)
        except Exception:  # a passing database error: try again next beat
            log.warning("heartbeat of task %s failed", self.task_id, exc_info=True)
            connection.close()
            current = time.monotonic() - self.last_renew < self.lease * 2 / 3
            if not current:
                log.error("task %s: lease not renewed in time, stopping", self.task_id)
        else:
            if current and renew:
                self.last_renew = time.monotonic()
        if not current:
            # Not ours any more (cancelled, reaped), or the lease may lapse before we can
            # renew it: stop the step rather than run beside a retry.
            self.lost.set()

    def beat(self, *, renew: bool) -> bool:
        """Flush the log, then renew the lease (or check the attempt is current)."""
        self.on_beat()
        if renew:
            until = timezone.now() + timedelta(seconds=self.lease)
            where = {"id": self.task_id, "state": S.RUNNING, "attempts": self.attempt}
            return bool(rawsql.update(Task, {"lease_expires_at": until}, where))
        return bool(
            rawsql.fetch(
                f"SELECT 1 FROM {rawsql.table(Task)} WHERE id = %s AND state = %s "
                "AND attempts = %s",
                [self.task_id, S.RUNNING, self.attempt],
            )
        )


STOP_WAIT_SECONDS = 10.0


class _Beater(threading.Thread):
    """The heartbeat thread of a worker process: beats the attempt it watches."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.pid = os.getpid()
        self.lock = threading.Lock()  # held by a beat, so `unwatch` waits for it
        self.wake = threading.Event()
        self.current: Heartbeat | None = None

    def watch(self, heartbeat: Heartbeat) -> None:
        with self.lock:
            self.current = heartbeat
        self.wake.set()

    def unwatch(self, heartbeat: Heartbeat) -> None:
        # A beat stuck in the database must not hold the worker for ever (as joining a
        # thread per attempt gave up after 10 s, so does this).
        if not self.lock.acquire(timeout=STOP_WAIT_SECONDS):
            # Once the stuck beat returns, the next finds the attempt ended and stops.
            log.warning("heartbeat of task %s is stuck; going on without it", heartbeat.task_id)
            return
        try:
            if self.current is heartbeat:
                self.current = None
        finally:
            self.lock.release()

    def run(self) -> None:
        while True:
            self.wake.clear()  # before looking: a `watch` from now on wakes the wait below
            with self.lock:
                heartbeat = self.current
                wait = None if heartbeat is None else heartbeat.next_beat - time.monotonic()
                if heartbeat is not None and wait is not None and wait <= 0:
                    heartbeat.tick()
                    heartbeat.next_beat = time.monotonic() + heartbeat.interval
                    if heartbeat.lost.is_set():
                        self.current = None
                    continue
            if heartbeat is None:
                connection.close()  # idle: hold no database connection meanwhile
            self.wake.wait(wait)


_the_beater: _Beater | None = None
_beater_lock = threading.Lock()


def _beater() -> _Beater:
    """This process's heartbeat thread, started on first use (a worker is forked from
    its cluster: a thread of the parent does not exist in the child)."""
    global _the_beater
    with _beater_lock:
        if _the_beater is None or _the_beater.pid != os.getpid() or not _the_beater.is_alive():
            _the_beater = _Beater()
            _the_beater.start()
        return _the_beater
