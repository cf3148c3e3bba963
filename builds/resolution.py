"""Moving a build forward: which PENDING tasks become READY, CACHED or UPSTREAM_FAILED.

The same walk serves a new build (rows not yet written) and a finished task (only its
dependents are looked at), so a fully cached build is resolved at trigger time and
dispatches no job at all.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from django.utils import timezone

from buildsite.templating import TemplateError, has_markup, render_value
from repositories.checkout import wants_checkout
from tasks import rawsql
from tasks.bulk import column_value
from tasks.dag import dependents, topological_order
from tasks.models import Task
from tasks.services import Change, TaskRow
from tasks.states import DONE_BAD, DONE_OK, TERMINAL, TaskState
from vault.selectors import secret_versions

from . import cache
from .artifacts import ArtifactError, input_hashes, received_files, touch_blobs
from .cache_key import canonical, digest, key_from_parts
from .models import Build

S = TaskState


@lru_cache(maxsize=256)
def version_spec(version_id: int) -> dict[str, Any]:
    """A pipeline version's spec; versions are immutable, so a per-process cache is safe
    and tasks need not copy their definition into every row."""
    from .models import PipelineVersion

    spec: dict[str, Any] = PipelineVersion.objects.values_list("spec", flat=True).get(id=version_id)
    return spec


def task_spec(build: Build, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = version_spec(build.pipeline_version_id)["tasks"][name]
    return spec


@lru_cache(maxsize=16)
def encoded_spec_columns(version_id: int) -> dict[str, tuple[Any, Any]]:
    """Each task's `needs` and `claims` of a pipeline version as `insert_rows` takes
    them (`bulk.column_value`): the same in every build of the version, so a 10,000-task
    build does not encode 20,000 JSON values again."""
    tasks = version_spec(version_id)["tasks"]
    encode = column_value
    return {
        name: (encode(Task, "needs", t["needs"]), encode(Task, "claims", t["resources"]))
        for name, t in tasks.items()
    }


def nothing_to_run(version_id: int, name: str) -> bool:
    """A task without steps: it is ended where it is taken, holding no pool for any
    time and needing no workspace."""
    return not version_spec(version_id)["tasks"][name].get("steps")


@lru_cache(maxsize=256)
def graph_of(version_id: int) -> tuple[dict[str, list[str]], dict[str, list[str]], list[str]]:
    """needs, dependents and topological order of a pipeline version."""
    spec = version_spec(version_id)
    needs = {name: t["needs"] for name, t in spec["tasks"].items()}
    return needs, dependents(needs), topological_order(needs)


@lru_cache(maxsize=65536)
def has_templates(version_id: int, name: str) -> bool:
    """Whether a task's steps or env use `{{ }}` at all; most do not, and building a
    template context for each of 10,000 tasks is the expensive part of a cached build."""
    spec = version_spec(version_id)["tasks"][name]
    return has_markup(json.dumps([spec["steps"], spec.get("env", {})]))


class GraphTask(TaskRow, Protocol):
    """What resolution reads and moves of a task: a `Task` or a `TaskNode`."""

    needs: list[str]
    outputs: dict[str, Any]
    cache_key: str
    artifacts: list[dict[str, Any]]


@dataclass
class TaskNode:
    """A task as resolution sees it (a build being triggered, before its rows exist, or
    the neighbourhood of a finished task): resolving thousands of tasks in memory is
    much cheaper with these than with model instances."""

    name: str
    needs: list[str]
    build_id: int
    state: str = TaskState.PENDING
    outputs: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    attempts: int = 0
    id: int = 0  # 0 until its row is inserted
    artifacts: list[dict[str, Any]] = field(default_factory=list)


def template_context(
    build: Build, task: GraphTask, tasks: Mapping[str, GraphTask]
) -> dict[str, Any]:
    """What `{{ ... }}` can see in a task's steps: params, the build, and the outputs
    of the tasks this task needs."""
    return {
        "params": build.params,
        "build": {"id": build.id},
        "project": {"slug": build.project.slug},
        "task": {"name": task.name, "attempt": task.attempts, "outputs": {}},
        "tasks": {
            name: {"outputs": tasks[name].outputs, "state": str(tasks[name].state)}
            for name in task.needs
            if name in tasks
        },
    }


def cache_key_for(
    build: Build,
    task: GraphTask,
    tasks: Mapping[str, GraphTask],
    dep_keys: Mapping[str, str] | None = None,
) -> str | None:
    """None when the key cannot be computed (a template error): the task then runs
    and fails with that error in its log. `dep_keys` gives the keys of dependencies
    that are not done yet (a look-ahead that assumes they will be cache hits)."""
    spec = task_spec(build, task.name)
    if has_templates(build.pipeline_version_id, task.name):
        context = template_context(build, task, tasks)
        try:
            steps = _work(render_value(spec["steps"], context), spec)
            env = canonical(render_value(spec.get("env", {}), context))
        except TemplateError:
            return None
    else:
        steps, env = _static_parts(build.pipeline_version_id, task.name)
    ahead = dep_keys or {}
    deps = {
        name: ahead.get(name) or tasks[name].cache_key or result_digest(tasks[name])
        for name in task.needs
    }
    inputs: dict[str, str] = {}
    if patterns := spec.get("inputs"):
        # The files the task will be given are its needs' artifacts: hashed already.
        given = received_files(task.needs, {n: tasks[n].artifacts for n in task.needs})
        try:
            inputs = input_hashes(patterns, given)
        except ArtifactError:
            return None  # the worker finds the same and fails the task, saying why
    if wants_checkout(build, spec):
        # Its workspace starts with the commit's files: another commit, another key.
        # Under "", which no file path can be.
        inputs[""] = build.commit_sha
    declared = spec.get("secrets")
    return key_from_parts(
        steps=steps,
        env=env,
        params=_canonical_params(build),
        inputs=canonical(inputs) if inputs else b"{}",
        deps=canonical(deps),
        secrets=canonical(secret_part(build, declared)) if declared else None,
    )


def result_digest(task: GraphTask) -> str:
    """What a finished task without a cache key hands on, as a key part: its outputs
    and the content of its artifacts (a dependency that writes new bytes each build
    must make its cached dependents run again)."""
    if not task.artifacts:
        return digest(task.outputs)
    files = {a["path"]: [a["sha256"], a.get("mode", 0)] for a in task.artifacts}
    return digest({"outputs": task.outputs, "artifacts": files})


@lru_cache(maxsize=65536)
def _static_parts(version_id: int, name: str) -> tuple[bytes, bytes]:
    """Canonical steps and env of a task without templates: the same in every build."""
    spec = version_spec(version_id)["tasks"][name]
    return _work(spec["steps"], spec), canonical(spec.get("env", {}))


def _work(steps: Any, spec: dict[str, Any]) -> bytes:
    """The key part for what a task does: its steps, and the files it hands on when it
    declares any (a hit must restore what its dependents now expect)."""
    if not spec.get("artifacts"):
        return canonical(steps)
    return canonical({"artifacts": spec["artifacts"], "steps": steps})


def secret_part(build: Build, declared: list[str]) -> dict[str, list[int] | None]:
    """The key part of the secrets a task declares: each one's id and version, never
    its value. A new value is a new version (and a secret deleted and set again a new
    id), so it re-runs the task; a missing secret is None (the task runs, and fails
    saying so). Read once per Build instance: resolving one build asks once."""
    versions: dict[str, tuple[int, int]] | None = getattr(build, "_secret_versions", None)
    if versions is None:
        versions = secret_versions(project_id=build.project_id)
        build._secret_versions = versions
    return {name: list(versions[name]) if name in versions else None for name in declared}


def _canonical_params(build: Build) -> bytes:
    """A build's params in canonical form, encoded once per build (not per task)."""
    cached: tuple[dict[str, Any], bytes] | None = getattr(build, "_canonical_params", None)
    if cached is None or cached[0] is not build.params:
        cached = (build.params, canonical(build.params))
        build._canonical_params = cached
    return cached[1]


def advance(
    build: Build, tasks: Mapping[str, GraphTask], start: list[str], *, look_ahead: bool = False
) -> list[Change]:
    """Walk from `start` (tasks that may have become unblocked) towards the leaves,
    deciding READY / CACHED / UPSTREAM_FAILED in memory. Tasks are mutated; the
    returned changes say what moved, in order. Cache lookups go one query per wave;
    with `look_ahead` (every task is in `tasks`), the keys of the cacheable tasks the
    walk can reach are computed first and looked up together (`keys_ahead`)."""
    _, children, _ = graph_of(build.pipeline_version_id)
    ahead = keys_ahead_of_new_build(build, tasks, start) if look_ahead else {}
    known = (
        cache.lookup_many(project_id=build.project_id, keys=list(ahead.values())) if ahead else {}
    )
    now = timezone.now()
    changes: list[Change] = []
    used: list[int] = []  # cache entries hit, touched once at the end
    restored: list[str] = []  # digests of the artifacts those hits hand on
    wave = list(dict.fromkeys(start))
    while wave:
        ready: list[GraphTask] = []
        next_wave: list[str] = []
        for name in wave:
            task = tasks[name]
            if task.state != S.PENDING:
                continue
            dep_states = [tasks[d].state for d in task.needs]
            if any(s in DONE_BAD for s in dep_states):
                for doomed in _pending_downstream(name, tasks, children):
                    changes.append(
                        Change(doomed, S.PENDING, S.UPSTREAM_FAILED, {"finished_at": now})
                    )
                    doomed.state = S.UPSTREAM_FAILED
            elif all(s in DONE_OK for s in dep_states):
                changes.append(Change(task, S.PENDING, S.READY, {"ready_at": now}))
                task.state = S.READY
                ready.append(task)
        cacheable = [t for t in ready if task_spec(build, t.name).get("cache")]
        # A key computed ahead is the key: its dependencies are done now, as hits
        # with exactly the keys it assumed.
        keys = {t.name: ahead.get(t.name) or cache_key_for(build, t, tasks) for t in cacheable}
        unknown = [k for name, k in keys.items() if k and name not in ahead]
        # Not a merged copy per wave: with every key known ahead, copying the hits into
        # a new dict for each of a deep DAG's waves cost more than the walk itself.
        hits = known
        if unknown:
            hits = {**known, **cache.lookup_many(project_id=build.project_id, keys=unknown)}
        for task in cacheable:
            key = keys[task.name]
            if not key:
                continue
            task.cache_key = key
            fields: dict[str, Any] = {"cache_key": key}
            if key in hits:
                entry_id, outputs, artifacts = hits[key]
                used.append(entry_id)
                fields.update(outputs=outputs, finished_at=now)
                if artifacts:
                    fields["artifacts"] = artifacts
                    restored.extend(a["sha256"] for a in artifacts)
                changes.append(Change(task, S.READY, S.CACHED, fields))
                task.state = S.CACHED
                task.outputs = outputs
                task.artifacts = artifacts
                next_wave.extend(children[task.name])
            else:
                # The key travels with the READY step so the worker can store the result.
                _merge_into_last(changes, task, fields)
        wave = list(dict.fromkeys(next_wave))
    cache.touch(used)
    if restored:  # retention must not take these while the hit is being recorded
        touch_blobs(list(dict.fromkeys(restored)))
    return changes


class KeysAhead:
    """`keys_ahead` of new builds, remembered per process. For a build whose every task
    is PENDING the look-ahead reads nothing but the version, the params, the commit and
    the versions of the secrets its tasks declare (dependencies' keys are computed, not
    read; templates and inputs wait for finished dependencies), so a build with the
    same of those has the same keys: a rebuild of an unchanged commit computes none.
    The last `SIZE` versions' keys are kept (10,000 keys are ~1.5 MB)."""

    SIZE = 16

    def __init__(self) -> None:
        self.known: OrderedDict[tuple[Any, ...], dict[str, str]] = OrderedDict()
        self.lock = threading.Lock()  # requests of one web process run in threads

    def __call__(
        self, build: Build, tasks: Mapping[str, GraphTask], start: list[str]
    ) -> dict[str, str]:
        if any(task.state != S.PENDING for task in tasks.values()):
            return keys_ahead(build, tasks, start)
        declared = declared_secrets(build.pipeline_version_id)
        secrets = secret_part(build, list(declared)) if declared else {}
        inputs = (
            build.pipeline_version_id,
            _canonical_params(build),
            build.commit_sha,
            canonical(secrets),
            tuple(sorted(start)),
        )
        with self.lock:
            keys = self.known.get(inputs)
            if keys is not None:
                self.known.move_to_end(inputs)
                return keys  # read only: `advance` never changes it
        keys = keys_ahead(build, tasks, start)
        with self.lock:
            self.known[inputs] = keys
            while len(self.known) > self.SIZE:
                self.known.popitem(last=False)
        return keys

    def clear(self) -> None:
        with self.lock:
            self.known.clear()


keys_ahead_of_new_build = KeysAhead()


@lru_cache(maxsize=256)
def declared_secrets(version_id: int) -> frozenset[str]:
    """Every secret a cacheable task of the version declares (what its keys can read)."""
    tasks = version_spec(version_id)["tasks"].values()
    return frozenset(
        name for task in tasks if task.get("cache") for name in task.get("secrets") or ()
    )


def forget_versions() -> None:
    """Drop everything this process remembers per pipeline version. Versions never
    change, but on SQLite the id of a version created in a transaction that is rolled
    back is given to the next one: whoever rolls back such a transaction calls this
    (and tests, which reuse ids all the time)."""
    for cached in (
        version_spec,
        graph_of,
        has_templates,
        _static_parts,
        declared_secrets,
        encoded_spec_columns,
    ):
        cached.cache_clear()
    keys_ahead_of_new_build.clear()


def keys_ahead(build: Build, tasks: Mapping[str, GraphTask], start: list[str]) -> dict[str, str]:
    """Cache keys of the cacheable tasks (without templates, which may read their
    dependencies' outputs) reachable from `start`, assuming every cacheable task on the
    way is a hit: a fully cached 10,000-task build then needs a handful of lookups, not
    one per wave. A task's key depends on its dependencies' keys, not on hit or miss."""
    _, children, order = graph_of(build.pipeline_version_id)
    reachable: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in reachable and tasks[name].state == S.PENDING:
            reachable.add(name)
            todo.extend(children[name])
    version = build.pipeline_version_id
    keys: dict[str, str] = {}
    for name in order:
        if name not in reachable:
            continue
        task = tasks[name]
        if not task_spec(build, name).get("cache") or has_templates(version, name):
            continue
        if not all(d in keys or tasks[d].state in DONE_OK for d in task.needs):
            continue
        if task_spec(build, name).get("inputs") and not all(
            tasks[d].state in DONE_OK for d in task.needs
        ):
            continue  # its inputs are among files a dependency has not handed on yet
        if key := cache_key_for(build, task, tasks, dep_keys=keys):
            keys[name] = key
    return keys


def _merge_into_last(changes: list[Change], task: GraphTask, fields: dict[str, Any]) -> None:
    for change in reversed(changes):
        if change.task is task:
            change.fields.update(fields)
            return


def _pending_downstream(
    name: str, tasks: Mapping[str, GraphTask], children: dict[str, list[str]]
) -> list[GraphTask]:
    out: list[GraphTask] = []
    queue = deque([name])
    seen = {name}
    while queue:
        current = queue.popleft()
        task = tasks[current]
        if task.state == S.PENDING:
            out.append(task)
        for child in children[current]:
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return out


def roots_and_unblocked(tasks: Mapping[str, GraphTask]) -> list[str]:
    """Every PENDING task whose dependencies are all finished (for new or retried builds)."""
    return [
        name
        for name, t in tasks.items()
        if t.state == S.PENDING and all(tasks[d].state in TERMINAL for d in t.needs)
    ]


LOAD_COLUMNS = ("id", "name", "state", "needs", "outputs", "cache_key", "attempts", "artifacts")


class BuildTasks(dict[str, GraphTask]):
    """The tasks of one build by name, loaded on first use: finishing one task of a
    large build reads its neighbourhood, not the whole build."""

    def __init__(
        self, build_id: int, preload: list[str] | None = None, everything: bool = False
    ) -> None:
        super().__init__()
        self.build_id = build_id
        if everything:
            self._load(None)
        elif preload:
            self._load(preload)

    def _load(self, names: list[str] | None) -> None:
        # Plain rows into TaskNodes: this runs after every finished task, and model
        # instances cost several times more to build.
        sql = f"SELECT {', '.join(LOAD_COLUMNS)} FROM {rawsql.table(Task)} WHERE build_id = %s"
        params: list[Any] = [self.build_id]
        if names is not None:
            names = [n for n in names if not dict.__contains__(self, n)]
            if not names:
                return
            sql += f" AND name IN ({rawsql.marks(len(names))})"
            params += names
        rows = rawsql.from_db(Task, LOAD_COLUMNS, rawsql.fetch(sql, params))
        for task_id, name, state, needs, outputs, cache_key, attempts, artifacts in rows:
            self[name] = TaskNode(
                name=name,
                needs=needs,
                build_id=self.build_id,
                state=state,
                outputs=outputs,
                cache_key=cache_key,
                attempts=attempts,
                id=task_id,
                artifacts=artifacts,
            )

    def __missing__(self, name: str) -> GraphTask:
        self._load([name])
        if not dict.__contains__(self, name):
            raise KeyError(name)
        return dict.__getitem__(self, name)
