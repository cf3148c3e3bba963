"""Artifact benchmark: what handing files from task to task costs, on the embedded default
or the scaled-out set-up.

A 100-task DAG (10 layers x 10; each task needs two tasks of the layer before, 180 edges)
in which every task's step writes 1 MiB of random bytes to `out-<task>.bin`:

- with artifacts: each task declares its file (`artifacts: [out-<task>.bin]`), so it is
  hashed and stored after the step, and copied into the fresh workspace of each task
  that needs it (100 MiB stored, 180 MiB restored);
- without: the same steps, nothing declared.

Both run end to end through a real worker cluster, from trigger to build finished,
alternately, after one unmeasured build of each; the figures are medians, with the
worker cluster's CPU time (its steps included, PostgreSQL and Redis not). Then the parts
of the artifact path (what a worker does around the steps, `builds/execution.py:
_attempt`) are timed in this process on tasks of the last build, to show where the
difference goes.

Run: .venv/bin/python bench/artifacts.py [--setup embedded|scaled] [--repeats 11]
`--setup scaled` uses PostgreSQL (a throwaway database on 127.0.0.1:5432), Redis
(127.0.0.1:6379) and a `file://` artifact store in the throwaway data dir; the set-up
code is bench/scheduler.py's, imported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import NamedTuple

TASKS, WIDTH, FILE_BYTES = 100, 10, 1 << 20
MIB = 1 << 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--setup", choices=["embedded", "scaled"], default="embedded")
    parser.add_argument("--repeats", type=int, default=11, help="measured builds per variant")
    return parser.parse_args()


ARGS = parse_args()  # before the import below, which sets up Django for ARGS.setup

import scheduler as bench  # noqa: E402  (bench/scheduler.py: environment, Django, cluster)
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from builds import artifacts  # noqa: E402
from builds.execution import _needs  # noqa: E402
from builds.models import Build  # noqa: E402
from builds.resolution import task_spec  # noqa: E402
from buildsite.models import Project  # noqa: E402


class Run(NamedTuple):
    wall: float  # seconds from trigger to build finished
    cpu: float  # CPU seconds of the worker cluster meanwhile (its steps included)


def pipeline_yaml(needs: dict[str, list[str]], *, declare: bool) -> str:
    lines = ["tasks:"]
    for name, deps in needs.items():
        step = f"head -c {FILE_BYTES} /dev/urandom > out-{name}.bin"
        extra = f", artifacts: [out-{name}.bin]" if declare else ""
        lines.append(f"  {name}: {{needs: [{', '.join(deps)}], steps: [{{run: '{step}'}}]{extra}}}")
    return "\n".join(lines) + "\n"


def moved_bytes(build: Build) -> tuple[int, int]:
    """Bytes stored and bytes restored by a finished build, from its task rows (and a
    check that every task stored its one file)."""
    tasks = {t.name: t for t in build.tasks.all()}
    for task in tasks.values():
        sizes = [f["size"] for f in task.artifacts]
        if sizes != [FILE_BYTES]:
            raise SystemExit(f"{task.name} stored {sizes}, expected one file of {FILE_BYTES}")
    stored = sum(f["size"] for t in tasks.values() for f in t.artifacts)
    restored = sum(f["size"] for t in tasks.values() for n in t.needs for f in tasks[n].artifacts)
    return stored, restored


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, including the
    children they have reaped (a worker's step processes)."""
    parent: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        cpu[pid] = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, ppid in parent.items() if ppid in frontier]
        tree.update(frontier)
    return sum(cpu.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def measured(project: Project, name: str, definition: str, cluster: bench.Cluster) -> Run:
    pid = cluster.procs[0].pid
    before = tree_cpu_seconds(pid)
    wall = bench.run_seconds(project, name, definition)
    return Run(wall, tree_cpu_seconds(pid) - before)


def last_build(project: Project) -> Build:
    return Build.objects.filter(project=project).latest("id")


LOOKUP = "look up the needs' artifacts (database)"
RESTORE = "restore 2 files into the workspace"
COLLECT = "collect: walk, copy out + SHA-256 of 1 MiB"
UPLOAD = "upload: Blob rows + rename into the store"
COPY = "  (a 1 MiB copy, timed alone)"
REMOVE = "remove the workspace"


def parts_ms(build: Build, samples: int = 20) -> dict[str, float]:
    """Median ms of each part of the artifact path, for tasks of a finished build, done
    here as a worker does them (with new random bytes, so every upload stores a blob)."""
    spec_of = {t.name: task_spec(build, t.name) for t in build.tasks.all()}
    tasks = list(build.tasks.exclude(needs=[]).order_by("id")[:samples])
    times: dict[str, list[float]] = {}
    for task in tasks:
        workspace = bench.DATA / "parts-workspace"
        workspace.mkdir()
        clock = time.perf_counter()

        def lap(part: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            times.setdefault(part, []).append((now - clock) * 1000)
            clock = now

        needs = _needs(build, task)
        given = artifacts.received_files(task.needs, {n: needs[n].artifacts for n in needs})
        lap(LOOKUP)
        artifacts.restore(workspace, given)
        lap(RESTORE)
        (workspace / f"out-{task.name}.bin").write_bytes(os.urandom(FILE_BYTES))
        clock = time.perf_counter()  # the step's work: not timed
        room = settings.BUILDSITE["ARTIFACT_MAX_BUILD_BYTES"] - build.artifact_bytes
        picked = artifacts.collect(workspace, spec_of[task.name]["artifacts"], room=room)
        lap(COLLECT)
        artifacts.upload(picked)
        lap(UPLOAD)
        scratch = bench.DATA / "parts-copy"
        shutil.copyfile(workspace / f"out-{task.name}.bin", scratch)
        lap(COPY)  # the same bytes copied once more, alone: the rest is database work
        scratch.unlink()
        shutil.rmtree(workspace)
        lap(REMOVE)
    return {part: statistics.median(ms) for part, ms in times.items()}


def main() -> None:
    call_command("migrate", verbosity=0)
    project = Project.objects.create(slug="artifacts", name="Artifacts")
    workers = settings.Q_CLUSTER["workers"]
    needs = bench.layered_dag(TASKS, width=WIDTH)
    edges = sum(len(deps) for deps in needs.values())
    variants = {
        "without": pipeline_yaml(needs, declare=False),
        "with": pipeline_yaml(needs, declare=True),
    }
    where = "PostgreSQL + Redis (channels)" if ARGS.setup == "scaled" else "SQLite WAL"
    print(
        f"setup {ARGS.setup}: {where}; store {settings.BUILDSITE['ARTIFACTS_URL']}; "
        f"{workers} workers; median of {ARGS.repeats}"
    )

    runs: dict[str, list[Run]] = {name: [] for name in variants}
    cluster = bench.Cluster()
    try:
        for name, definition in variants.items():  # warm-up, not counted
            bench.run_seconds(project, name, definition)
        for _ in range(ARGS.repeats):  # alternately, so drift hits both alike
            for name, definition in variants.items():
                runs[name].append(measured(project, name, definition, cluster))
    finally:
        cluster.stop()
    build = last_build(project)
    stored, restored = moved_bytes(build)
    wall = {name: statistics.median(r.wall for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r.cpu for r in rs) for name, rs in runs.items()}
    extra = wall["with"] - wall["without"]

    print(
        f"{TASKS} tasks ({TASKS // WIDTH} layers x {WIDTH}, {edges} edges), each step writing "
        f"{FILE_BYTES // MIB} MiB of random bytes:"
    )
    for name in variants:
        print(
            f"  {name + ' artifacts:':19} {wall[name]:6.2f} s wall, cluster CPU {cpu[name]:5.2f} s"
            f"   (runs: {', '.join(f'{r.wall:.2f}' for r in runs[name])})"
        )
    print(f"  ratio with / without: {wall['with'] / wall['without']:6.2f}x")
    print(
        f"  extra per task:       {extra / TASKS * 1000:6.1f} ms wall, "
        f"{(cpu['with'] - cpu['without']) / TASKS * 1000:.1f} ms cluster CPU"
    )
    print(
        f"  moved per build: {stored / MIB:.0f} MiB stored (hashed, copied into the store) + "
        f"{restored / MIB:.0f} MiB restored into workspaces = {(stored + restored) / MIB:.0f} MiB"
    )
    print("parts of the artifact path per task, in this process (median ms of 20 tasks):")
    parts = parts_ms(build)
    for part, ms in parts.items():
        print(f"  {part + ':':42} {ms:6.2f} ms")
    database = parts[LOOKUP] + parts[UPLOAD]  # the rename into the store is ~free
    files = parts[RESTORE] + parts[COLLECT] + parts[REMOVE]
    print(
        f"  total {database + files:.2f} ms: database {database:.2f} ms, "
        f"files (copy, hash, remove) {files:.2f} ms"
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        bench.cleanup()
