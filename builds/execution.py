"""The worker side of a task: claim its attempt, run its steps, report the end (the
attempt's rules are `builds/attempts.py`; `builds/settle.py` records the end)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from buildsite.errors import DomainError
from buildsite.templating import render_value
from repositories.checkout import CheckoutFailed, check_out, wants_checkout
from tasks import rawsql
from tasks.models import Event, Task
from tasks.services import EventRow, apply_transitions, write_events
from tasks.states import BuildState, TaskState
from vault.masking import Masker
from vault.models import Secret
from vault.rules import masking_terms
from vault.selectors import secret_values

from . import artifacts
from .artifacts import ArtifactError, FileRecord
from .attempts import Heartbeat, TaskEnd, claim_change, failure_outcome, queued_for, worker_id
from .cluster import RELEASED, fresh_workspace, remove_workspace, stopping
from .dispatch import pool_capacity
from .models import Build, ResourcePool
from .resolution import (
    BuildTasks,
    GraphTask,
    has_templates,
    nothing_to_run,
    task_spec,
    template_context,
    version_spec,
)
from .services import mark_build_running
from .settle import load_tasks, settle_and_take
from .steps import StepCancelled, StepContext, StepFailed, executor_for, kind_of, sandbox

log = logging.getLogger(__name__)
S = TaskState
WORKER_STOPPED = "worker stopped"
SETTLED = "settled by its worker"
# How long after its job began a worker may still take its pools' next task itself,
# before it returns to the job queue (where other projects' jobs wait in order). A job
# then lasts its first attempt, up to this, and the attempt of the last task taken.
CHAIN_SECONDS = 10.0


class TaskLog:
    """The task's output as `log` events: batched (every FLUSH_SECONDS or FLUSH_BYTES),
    so the log endpoint and live viewers see it grow while the task runs, from any
    host: the events are the log, in the database every host shares.

    No value of the project's secrets gets into it: they are read once per attempt,
    here or by the worker before (the steps get the declared ones from `secrets`), and
    masked as the text is written. What could be the start of a value split across two
    writes is held back until the next write or `end_of_output`."""

    FLUSH_SECONDS = 0.25
    FLUSH_BYTES = 16_384

    def __init__(
        self, task: Task, project_id: int, secrets: dict[str, str | None] | None = None
    ) -> None:
        self.task = task
        self.project_id = project_id
        self.pending: list[str] = []
        self.pending_len = 0
        self.last_flush = time.monotonic()
        self.lock = threading.Lock()  # guards `pending`
        # One flush at a time, from taking the text to its INSERT: the heartbeat's timed
        # flush and the step's size flush must not store chunks out of order.
        self.flushing = threading.Lock()
        # None for a value that cannot be decrypted (nobody can read it, so nor print it).
        # Read here unless the caller did (or knows there are none).
        self.secrets = secret_values(project_id=project_id) if secrets is None else secrets
        self.masker = Masker(
            term for value in self.secrets.values() if value for term in masking_terms(value)
        )  # its stream is guarded by `lock` too

    def write(self, text: str) -> None:
        with self.lock:
            text = self.masker.feed(text)
            self.pending.append(text)
            self.pending_len += len(text)
            due = self.pending_len >= self.FLUSH_BYTES
        if due:
            self.flush()

    def flush(self) -> None:
        with self.flushing:
            text = self.take()
            self.last_flush = time.monotonic()
            if not text:
                return
            try:
                # A plain INSERT (as transitions write theirs): a model save costs more
                # than the statement, and a short step writes one of these.
                write_events(
                    [
                        EventRow(
                            self.project_id,
                            self.task.build_id,
                            self.task.id,
                            self.task.name,
                            Event.Type.LOG,
                            "",
                            "",
                            {"text": text, "attempt": self.task.attempts},
                            timezone.now(),
                        )
                    ]
                )
            except Exception:
                with self.lock:  # not stored: it goes out with the next flush or the end
                    self.pending.insert(0, text)
                    self.pending_len += len(text)
                raise

    def flush_if_due(self) -> None:
        if time.monotonic() - self.last_flush >= self.FLUSH_SECONDS:
            self.flush()

    def take(self) -> str:
        """What was written since the last flush, for the caller to store."""
        with self.lock:
            text, self.pending, self.pending_len = "".join(self.pending), [], 0
        return text

    def end_of_output(self) -> None:
        """A step's output has ended: what was held back can no longer be the start
        of a value, so it goes out (masked) with the next flush."""
        with self.lock:
            rest = self.masker.flush()
            self.pending.append(rest)
            self.pending_len += len(rest)

    def take_rest(self) -> str:
        """The rest, once no flush can run any more (the heartbeat has stopped)."""
        with self.flushing:
            self.end_of_output()
            return self.take()

    def mask(self, text: str) -> str:
        """`text` (an error message) with the secrets' values masked; stateless."""
        return self.masker.mask(text)


class ToRun(NamedTuple):
    """What a worker reads of a task first (`what_to_run`)."""

    state: str
    attempts: int
    name: str
    version_id: int
    project_id: int
    has_pools: bool
    has_secrets: bool


def what_to_run(task_id: int) -> ToRun | None:
    """A task's state, attempts, name, pipeline version, project, and whether the project
    has pools and secrets: enough for a worker to see whether the job is current,
    whether the task has steps at all, whether it might take the next task in turn
    (`then_next`) and whether its log has anything to mask (most projects have no
    secrets: a query per attempt to find none was a tenth of a worker's time per step
    on PostgreSQL)."""
    of_project = "WHERE x.project_id = b.project_id"
    pools = f"EXISTS (SELECT 1 FROM {rawsql.table(ResourcePool)} x {of_project})"
    secrets = f"EXISTS (SELECT 1 FROM {rawsql.table(Secret)} x {of_project})"
    rows = rawsql.fetch(
        f"SELECT t.state, t.attempts, t.name, b.pipeline_version_id, b.project_id, {pools}, "
        f"{secrets} FROM {rawsql.table(Task)} t "
        f"JOIN {rawsql.table(Build)} b ON b.id = t.build_id WHERE t.id = %s",
        [task_id],
    )
    if not rows:
        return None
    state, attempts, name, version_id, project_id, has_pools, has_secrets = rows[0]
    # SQLite answers EXISTS with 0 or 1.
    return ToRun(state, attempts, name, version_id, project_id, bool(has_pools), bool(has_secrets))


def execute_task(*, task_id: int, attempt: int) -> TaskEnd | str:
    """Run one attempt of a task (and, for a pooled task, those it takes in turn:
    `then_next`). Returns how the last one ended, for the monitor to settle
    (`builds/settle.py`), or why there is nothing to settle."""
    started = time.monotonic()
    if stopping():
        return RELEASED  # not started: the monitor hands the job back
    close_old_connections()
    found = what_to_run(task_id)
    if found is None or not queued_for(attempt, found.state, found.attempts):
        return "skipped: not queued for this attempt"
    name, version_id, project_id = found.name, found.version_id, found.project_id
    if nothing_to_run(version_id, name):
        # Nothing to run: the task stays QUEUED here and settling starts and ends it
        # in one step (the events still show queued -> running -> succeeded).
        nothing = TaskEnd(task_id, attempt, S.SUCCEEDED, {}, claimed=False, worker=worker_id())
        if not found.has_pools:
            return nothing
        resources = version_spec(version_id)["tasks"][name].get("resources") or {}
        return then_next(nothing, resources, project_id, started)
    task = load_tasks([task_id], with_projects=True)[task_id]
    build = task.build
    claim = claim_change(task, attempt, timezone.now(), worker_id())
    if build.state == BuildState.QUEUED:  # its first start: the build moves with it
        with transaction.atomic(savepoint=False):
            if not apply_transitions(project_id=build.project_id, changes=[claim]):
                return "skipped: claimed elsewhere"  # or moved since the first read
            mark_build_running(build=build)
    elif not apply_transitions(project_id=build.project_id, changes=[claim]):
        return "skipped: claimed elsewhere"  # alone, on PostgreSQL one statement
    end = run_attempt(task, attempt, secrets=None if found.has_secrets else {})
    if not found.has_pools:
        return end
    return then_next(end, task.claims, build.project_id, started)


def then_next(
    end: TaskEnd | str, claims: Mapping[str, int], project_id: int, started: float
) -> TaskEnd | str:
    """After an attempt of a task that held the project's pools: settle its end here and
    run the task those pools admit next, claimed for this worker in the same
    transaction, and so on while the job (which began at `started`, monotonic) is
    younger than CHAIN_SECONDS. A pool as wide as the workers would otherwise stand
    idle for each end's round trip through the monitor, the job queue and a worker's
    claim. Returns the last end, for the monitor."""
    capacity = pool_capacity(project_id)  # then as each dispatch read it, under its lock
    while (
        isinstance(end, TaskEnd)
        and holds_pools(claims, capacity)
        and not stopping()
        and time.monotonic() - started < CHAIN_SECONDS
    ):
        try:
            taken = settle_and_take(
                end, project_id=project_id, worker=worker_id(), capacity=capacity
            )
        except Exception:  # the monitor settles it as any other end
            log.warning("settling task %s in its worker failed", end.task_id, exc_info=True)
            return end
        if taken is None:
            return SETTLED
        claims, capacity = taken.task.claims, taken.capacity
        end = run_attempt(taken.task, taken.attempt)  # as claimed, not as read since
    return end


def holds_pools(claims: Mapping[str, int] | None, capacity: Mapping[str, int]) -> bool:
    return any(amount and pool in capacity for pool, amount in (claims or {}).items())


def run_attempt(
    task: Task, attempt: int, *, secrets: dict[str, str | None] | None = None
) -> TaskEnd | str:
    """Run the steps of an attempt claimed by this worker; returns its end. `secrets`:
    the project's, when the caller read them (or knows there are none)."""
    build = task.build
    if nothing_to_run(build.pipeline_version_id, task.name):  # taken in turn
        return TaskEnd(task.id, attempt, S.SUCCEEDED, {}, worker=worker_id())
    task_log = TaskLog(task, build.project_id, secrets)
    if attempt > 1:
        task_log.write(f"--- attempt {attempt} ---\n")
    heartbeat = Heartbeat(task.id, attempt, task_log.flush_if_due, TaskLog.FLUSH_SECONDS)
    workspace = fresh_workspace()
    try:
        heartbeat.start()
        outcome, outputs, error, files = _attempt(task, build, task_log, heartbeat, workspace)
    except BaseException:
        task_log.flush()
        raise
    finally:
        heartbeat.stop()
        remove_workspace(workspace)
    interrupted = outcome == S.CANCELLED and stopping() and not heartbeat.lost.is_set()
    if interrupted:
        # Killed because its cluster is stopping: the attempt goes back for retry.
        outcome, error = S.RETRYING, WORKER_STOPPED
    elif outcome == S.CANCELLED:
        task_log.flush()  # the task was cancelled: nothing to settle
        return "cancelled"
    elif outcome == S.FAILED:
        outcome = failure_outcome(task)
    return TaskEnd(
        task.id,
        attempt,
        outcome,
        outputs,
        error,
        worker=worker_id(),
        log=task_log.take_rest(),
        interrupted=interrupted,
        artifacts=tuple(files),
    )


StepsResult = tuple[TaskState, dict[str, Any], str]  # outcome, outputs, error


def _attempt(
    task: Task, build: Build, task_log: TaskLog, heartbeat: Heartbeat, workspace: Path
) -> tuple[TaskState, dict[str, Any], str, list[FileRecord]]:
    """Prepare the workspace with what the task is given, run its steps, store what it
    hands on: the outcome, outputs, error and stored artifacts."""
    spec = task_spec(build, task.name)
    needs = _needs(build, task)
    try:
        if wants_checkout(build, spec):  # the source first: needs' artifacts go on top
            check_out(build=build, workspace=workspace, log=task_log.write)
        given = artifacts.received_files(task.needs, {n: needs[n].artifacts for n in needs})
        if spec.get("inputs"):
            artifacts.input_hashes(spec["inputs"], given)  # the key was made from these
        artifacts.restore(workspace, given)
        if sandbox.mode() == "bwrap":
            sandbox.prepare_workspace(workspace)  # the step user's, to write in
    except (ArtifactError, CheckoutFailed) as exc:
        return (*_fail(task_log, {}, task_log.mask(str(exc))), [])
    outcome, outputs, error = _run_steps(task, build, task_log, heartbeat, workspace, needs)
    if outcome != S.SUCCEEDED or not spec.get("artifacts"):
        return outcome, outputs, error, []
    try:
        # As of the claim: tasks storing at the same moment may pass it by their own size.
        room = settings.BUILDSITE["ARTIFACT_MAX_BUILD_BYTES"] - build.artifact_bytes
        files = artifacts.upload(artifacts.collect(workspace, spec["artifacts"], room=room))
    except ArtifactError as exc:
        return (*_fail(task_log, outputs, task_log.mask(str(exc))), [])
    size = sum(f["size"] for f in files)
    task_log.write(f"artifacts: stored {len(files)} file(s), {size} bytes\n")
    return outcome, outputs, error, files


def _needs(build: Build, task: Task) -> Mapping[str, GraphTask]:
    """The tasks this one needs, read once, and only when it uses them: its templates
    read their outputs, and it is given their artifacts when any of them declares some."""
    spec = version_spec(build.pipeline_version_id)["tasks"]
    gives_files = any(spec[name].get("artifacts") for name in task.needs)
    if gives_files or has_templates(build.pipeline_version_id, task.name):
        return BuildTasks(build.id, preload=list(task.needs))
    return {}


def _run_steps(
    task: Task,
    build: Build,
    task_log: TaskLog,
    heartbeat: Heartbeat,
    workspace: Path,
    needs: Mapping[str, GraphTask],
) -> StepsResult:
    spec = task_spec(build, task.name)
    deadline = time.monotonic() + float(
        spec.get("timeout") or settings.BUILDSITE["STEP_TIMEOUT_SECONDS"]
    )
    context = template_context(build, task, needs)
    outputs: dict[str, Any] = {}
    masker = task_log.masker

    def fail(message: str) -> StepsResult:
        return _fail(task_log, outputs, masker.mask(message))

    declared = spec.get("secrets") or []
    if problem := _secrets_problem(declared, task_log.secrets, build):
        return fail(problem)
    given = {name: task_log.secrets[name] or "" for name in declared}
    try:
        env = render_value(spec.get("env", {}), context)
    except DomainError as exc:
        return fail(exc.message)
    for index, raw_step in enumerate(spec["steps"]):
        kind = kind_of(raw_step)
        where = f"steps[{index}]"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return fail(f"task timed out before {where}")
        if index and stopping():  # the cluster is stopping: start no further step
            return S.CANCELLED, outputs, "cancelled"
        ctx = StepContext(
            project=build.project,
            build=build,
            task=task,
            workspace=workspace,
            env=env,
            timeout=remaining,
            log=task_log.write,
            should_stop=lambda: heartbeat.lost.is_set() or stopping(),
            outputs=outputs,
            task_spec=spec,
            secrets=given,
            hidden=masker.values,
        )
        # Outputs are stored, cached, shown and read by later templates (a prompt's
        # variables): masked as a whole as soon as a step hands them on.
        try:
            step = render_value(raw_step, context, where=where)
            outputs.update(masker.mask_value(executor_for(kind)(step, ctx)))
        except StepCancelled:
            task_log.write("cancelled\n")
            return S.CANCELLED, outputs, "cancelled"
        except StepFailed as exc:
            outputs.update(masker.mask_value(exc.outputs))
            if heartbeat.lost.is_set():
                return S.CANCELLED, outputs, "cancelled"
            return fail(f"{where} ({kind}) failed: {exc}")
        except DomainError as exc:
            return fail(f"{where} ({kind}): {exc.message}")
        except Exception as exc:  # a bug in a step kind must still end the task
            # The traceback is for the operator (the worker's log), not for viewers.
            log.exception("step %s of task %s failed inside Buildsite", where, task.id)
            return fail(f"{where} ({kind}): internal error {type(exc).__name__}")
        finally:
            task_log.end_of_output()
        context["task"]["outputs"] = outputs
        if heartbeat.lost.is_set():
            return S.CANCELLED, outputs, "cancelled"
    return S.SUCCEEDED, outputs, ""


def _secrets_problem(
    declared: list[str], secrets: Mapping[str, str | None], build: Build
) -> str | None:
    """Why the task cannot have the secrets it declares (names only, never a value)."""
    missing = [name for name in declared if name not in secrets]
    if missing:
        names = ", ".join(missing)
        return (
            f"secret(s) {names} declared by the task are not set in project "
            f"'{build.project.slug}' (a maintainer sets them on the project's Secrets page)"
        )
    unreadable = [name for name in declared if secrets[name] is None]
    if unreadable:
        return (
            f"secret(s) {', '.join(unreadable)} cannot be decrypted (the server's encryption "
            "key changed); a maintainer must set them again"
        )
    return None


def _fail(task_log: TaskLog, outputs: dict[str, Any], message: str) -> StepsResult:
    task_log.write(f"error: {message}\n")
    return S.FAILED, outputs, message
