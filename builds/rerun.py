"""Re-running a finished build from one of its tasks.

A re-run is a new build of the same pipeline version, params and commit. The chosen
task and everything downstream of it run again; every other task that succeeded (or
was a cache hit) takes over the original's result as it is: created CACHED, with the
same outputs, artifacts and cache key, and `reused_from` naming the build whose run
produced it. A task that did not succeed has no result to take over, so it runs again
too, with everything downstream of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from audit.services import record_action
from buildsite.errors import Conflict, InvalidInput, Problem
from buildsite.roles import Role
from buildsite.selectors import require_role
from tasks.dag import downstream_of, topological_order
from tasks.models import Event, Task
from tasks.services import record_event
from tasks.states import DONE_OK, BuildState

from .models import Build
from .resolution import version_spec
from .services import Reused, check_claims, lock_build, start_tasks
from .signals import send_build_state_changed

ENDED = (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED)


def tasks_to_rerun(
    needs: Mapping[str, list[str]], start: str, states: Mapping[str, str]
) -> set[str]:
    """`start`, every task whose original state is not a success (`states` lacks the
    tasks that never got a row), and everything downstream of any of them."""
    roots = {start, *(name for name in needs if states.get(name) not in DONE_OK)}
    return roots | downstream_of(needs, roots)


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def rerun_build(*, user: Any, build: Build, from_task: str) -> Build:
    """A new build like `build` that runs `from_task` and its descendants again and
    reuses the results of the other tasks."""
    if user is not None:
        require_role(user=user, project=build.project, role=Role.EDITOR)
    # The caller's copy may be stale (a retry may have restarted it meanwhile).
    lock_build(build)
    current = Build.objects.values("state", "files_purged").get(id=build.id)
    build.state, build.files_purged = current["state"], current["files_purged"]
    if build.state not in ENDED:
        raise Conflict(
            f"build #{build.id} is still {build.state}; re-run it once it has ended",
            state=build.state,
        )
    if build.pipeline_version_id is None:
        raise Conflict(
            f"build #{build.id} never read its pipeline, so it has no tasks to re-run; "
            "trigger a new build",
            state=build.state,
        )
    if build.files_purged:
        raise Conflict(
            f"build #{build.id} ended too long ago: retention removed its logs and artifacts, "
            "which the reused tasks would hand on; trigger a new build",
            state=build.state,
        )
    spec = version_spec(build.pipeline_version_id)
    if from_task not in spec["tasks"]:
        raise InvalidInput([Problem(f"build #{build.id} has no task '{from_task}'", where="from")])
    check_claims(build.project, spec)  # pools may have shrunk since the original ran
    needs = {name: t["needs"] for name, t in spec["tasks"].items()}
    originals = {
        row["name"]: row
        for row in Task.objects.filter(build_id=build.id).values(
            "name", "state", "outputs", "artifacts", "cache_key", "reused_from_id"
        )
    }
    states = {name: row["state"] for name, row in originals.items()}
    again = tasks_to_rerun(needs, from_task, states)
    reused = _reused(build, (n for n in topological_order(needs) if n not in again), originals)
    new: Build = Build.objects.create(
        project=build.project,
        pipeline=build.pipeline,
        pipeline_version=build.pipeline_version,
        params=build.params,
        trigger="rerun",
        rerun_of=build,
        repository=build.repository,
        commit_sha=build.commit_sha,
        commit_ref=build.commit_ref,
        commit_author=build.commit_author,
        commit_message=build.commit_message,
        triggered_by=user if user is not None and user.is_authenticated else None,
    )
    record_event(
        project_id=new.project_id,
        build_id=new.id,
        type=Event.Type.BUILD_STATE,
        new_state=BuildState.QUEUED,
        data={
            "pipeline": build.pipeline.name,
            "version": build.pipeline_version.number,
            "rerun_of": build.id,
            "from": from_task,
        },
    )
    send_build_state_changed(build=new, old="", new=BuildState.QUEUED)
    record_action(
        actor=user,
        project=build.project,
        action="build.rerun",
        target=f"build {new.id}",
        detail=f"re-run of build {build.id} from task {from_task}",
    )
    start_tasks(build=new, spec=spec, reused=reused)
    return new


def _reused(
    build: Build, names: Iterable[str], originals: Mapping[str, Mapping[str, Any]]
) -> dict[str, Reused]:
    """The results taken over (successes only: `tasks_to_rerun` chose the rest), in
    dependency order, which their events follow. A result the original itself reused
    still names the build that produced it."""
    out: dict[str, Reused] = {}
    for name in names:
        row = originals[name]
        out[name] = Reused(
            build_id=row["reused_from_id"] or build.id,
            outputs=row["outputs"],
            artifacts=row["artifacts"],
            cache_key=row["cache_key"],
        )
    return out
