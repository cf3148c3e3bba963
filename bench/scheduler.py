"""Scheduler benchmark, on the embedded default or the scaled-out set-up.

Every figure is printed beside a baseline measured in the same run (median of 3):

1. No-op throughput: a 1,000-task no-op DAG, end to end through real worker processes,
   vs raw django-q2 no-op jobs on the same set-up (Buildsite's SQL broker, which makes
   raw jobs faster too) and on django-q2's own ORM broker. Target >= 0.6x raw.
2. Pools: the same DAG in a project whose `cpu` pool has capacity = workers (every task
   claims cpu: 1; the no-op tasks name the claim, as tasks without steps claim nothing
   by default) vs without pools, for the no-op DAG and for the shell-step DAG of 3.
   Target >= 0.85x.
3. Real steps: a 400-task DAG (8 layers x 50) of `true` shell steps vs `ninja -j<workers>`
   running `true` for the same graph (target <= 3x ninja's time), the per-step
   overhead (the same DAG with and without steps), and the same DAG on workers with
   BUILDSITE_SANDBOX=off (what of a step's time is the sandbox's).
4. Cached rebuild: a 10,000-task DAG whose every task is cached, triggered again, vs
   `ninja` doing a no-op build of the same graph. Target <= 10x (embedded), <= 20x (scaled).

Run: .venv/bin/python bench/scheduler.py [--setup embedded|scaled] [--tasks 1000]
        [--cached-tasks 10000] [--step-tasks 400]
`--setup scaled` uses PostgreSQL (a throwaway database on 127.0.0.1:5432) and Redis
(127.0.0.1:6379, channel layer only). It uses a throwaway data dir; nothing of yours is
touched.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(tempfile.mkdtemp(prefix="buildsite-bench-"))
PG_DB = f"buildsite_bench_{os.getpid()}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--setup", choices=["embedded", "scaled"], default="embedded")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--cached-tasks", type=int, default=10_000)
    parser.add_argument("--step-tasks", type=int, default=400)
    if __name__ != "__main__":  # imported by another bench script, which checks its own flags
        return parser.parse_known_args()[0]
    return parser.parse_args()


ARGS = parse_args()
os.environ["BUILDSITE_DATA_DIR"] = str(DATA)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildsite.settings")
os.environ["BUILDSITE_Q_NAME"] = f"bench-{os.getpid()}"
os.environ["BUILDSITE_LOG_LEVEL"] = "WARNING"
os.environ.setdefault("DJANGO_DEBUG", "0")
if ARGS.setup == "scaled":
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", PG_DB], check=True)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_DB}"
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:6379/{os.getpid() % 14 + 1}"
    os.environ["BUILDSITE_CHANNEL_PREFIX"] = f"bench{os.getpid()}"
    os.environ["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(40)
    # Required once the database is shared; a directory of the throwaway data dir here.
    os.environ["BUILDSITE_ARTIFACTS_URL"] = (DATA / "artifact-store").as_uri()
else:
    os.environ["DATABASE_URL"] = ""
    os.environ["REDIS_URL"] = ""
    os.environ.pop("BUILDSITE_ARTIFACTS_URL", None)  # the default: under the data dir
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django_q.brokers.orm import ORM  # noqa: E402
from django_q.models import OrmQ  # noqa: E402
from django_q.tasks import async_task  # noqa: E402

from builds.models import Build, ResourcePool  # noqa: E402
from builds.services import save_pipeline, trigger_build  # noqa: E402
from buildsite.models import Project  # noqa: E402
from tasks import rawsql  # noqa: E402
from tasks.models import Event  # noqa: E402


def layered_dag(n: int, width: int) -> dict[str, list[str]]:
    """`n` tasks in layers of `width`; each needs two tasks of the layer before."""
    needs: dict[str, list[str]] = {}
    for i in range(n):
        layer, pos = divmod(i, width)
        if layer == 0:
            needs[f"t{i}"] = []
        else:
            prev = (layer - 1) * width
            needs[f"t{i}"] = sorted({f"t{prev + pos}", f"t{prev + (pos + 1) % width}"})
    return needs


def pipeline_yaml(
    needs: dict[str, list[str]], *, cache: bool = False, step: str = "", claim: bool = False
) -> str:
    lines = ["tasks:"]
    for name, deps in needs.items():
        extra = ", cache: true" if cache else ""
        if claim:  # a task without steps claims no pool unless it names one
            extra += ", resources: {cpu: 1}"
        if step:
            extra += f", steps: [{{run: '{step}'}}]"
        lines.append(f"  {name}: {{needs: [{', '.join(deps)}]{extra}}}")
    return "\n".join(lines) + "\n"


class Cluster:
    def __init__(self, **extra_env: str) -> None:
        env = {**os.environ, "BUILDSITE_DATA_DIR": str(DATA), **extra_env}
        manage = [sys.executable, str(ROOT / "manage.py")]
        out = (DATA / "cluster.log").open("ab")
        self.procs = [
            subprocess.Popen(
                [*manage, "qcluster"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
                start_new_session=True,
            ),
        ]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)


def exists(sql: str, params: list) -> bool:
    """A plain query: the clock-watching loop must not take CPU from the workers."""
    return bool(rawsql.fetch(sql, params))


def wait_queue_empty(timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    sql = f"SELECT 1 FROM {OrmQ._meta.db_table} LIMIT 1"
    while exists(sql, []):
        if time.monotonic() > deadline:
            raise SystemExit("raw django-q2 jobs did not finish in time")
        time.sleep(0.01)


def build_finished(build_id: int) -> bool:
    sql = f"SELECT 1 FROM {Build._meta.db_table} WHERE id = %s AND finished_at IS NOT NULL"
    return exists(sql, [build_id])


def raw_django_q2(n: int, broker=None) -> float:
    """Jobs per second for `n` no-op jobs on a warm cluster, enqueue included."""
    async_task("builds.jobs.noop", save=False, broker=broker)
    wait_queue_empty()
    started = time.perf_counter()
    for _ in range(n):
        async_task("builds.jobs.noop", save=False, broker=broker)
    wait_queue_empty()
    return n / (time.perf_counter() - started)


def run_seconds(project: Project, name: str, definition: str) -> float:
    """Seconds from trigger to build finished (the build must succeed)."""
    save_pipeline(user=None, project=project, name=name, definition=definition)
    started = time.perf_counter()
    build = trigger_build(user=None, project=project, pipeline=name)
    while not build_finished(build.id):
        time.sleep(0.02)  # the watching must not take CPU from the workers
    elapsed = time.perf_counter() - started
    state = Build.objects.get(id=build.id).state
    if state != "succeeded":
        raise SystemExit(f"{name} build ended {state}")
    return elapsed


def unsandboxed_steps() -> int:
    """Steps of this run that ran without bubblewrap (each says so in its log): the
    figures of shell steps are only comparable when this is 0."""
    return Event.objects.filter(
        type=Event.Type.LOG, data__text__icontains="runs without a sandbox"
    ).count()


def buildsite_dag(project: Project, n: int, *, claim: bool = False) -> float:
    """Tasks per second for a no-op DAG of `n` tasks, trigger to build finished (with
    `claim`, every task claims cpu: 1)."""
    definition = pipeline_yaml(layered_dag(n, width=100), claim=claim)
    return n / run_seconds(project, "noop", definition)


def ninja_run_seconds(needs: dict[str, list[str]], jobs: int, repeats: int = 3) -> float:
    """`ninja -j<jobs>` running `true` for every node of the graph, from scratch."""
    ninja = shutil.which("ninja")
    if ninja is None:
        raise SystemExit("ninja is not installed (apt-get install ninja-build)")
    times = []
    for i in range(repeats):
        work = DATA / f"ninja-steps-{i}"
        work.mkdir()
        rules = ["rule true", "  command = true && touch $out", ""]
        for name, deps in needs.items():
            implicit = f" | {' '.join(deps)}" if deps else ""
            rules.append(f"build {name}: true{implicit}")
        (work / "build.ninja").write_text("\n".join(rules) + "\n")
        started = time.perf_counter()
        subprocess.run([ninja, "-C", str(work), f"-j{jobs}"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ninja_noop_seconds(needs: dict[str, list[str]], repeats: int = 7) -> float:
    ninja = shutil.which("ninja")
    if ninja is None:
        raise SystemExit("ninja is not installed (apt-get install ninja-build)")
    work = DATA / "ninja"
    work.mkdir(exist_ok=True)
    rules = ["rule touch", "  command = touch $out", ""]
    for name, deps in needs.items():
        implicit = f" | {' '.join(deps)}" if deps else ""
        rules.append(f"build {name}: touch{implicit}")
    (work / "build.ninja").write_text("\n".join(rules) + "\n")
    subprocess.run([ninja, "-C", str(work)], check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(
            [ninja, "-C", str(work)], check=True, capture_output=True, text=True
        )
        times.append(time.perf_counter() - started)
        assert "no work to do" in result.stdout, result.stdout
    return statistics.median(times)


def cached_rebuild_seconds(project: Project, needs: dict[str, list[str]]) -> tuple[float, float]:
    save_pipeline(
        user=None, project=project, name="cached", definition=pipeline_yaml(needs, cache=True)
    )
    started = time.perf_counter()
    first = trigger_build(user=None, project=project, pipeline="cached")
    while not build_finished(first.id):
        time.sleep(0.05)
    first_seconds = time.perf_counter() - started
    times = []
    for _ in range(3):
        started = time.perf_counter()
        build = trigger_build(user=None, project=project, pipeline="cached")
        times.append(time.perf_counter() - started)
        build.refresh_from_db()
        cached = build.tasks.filter(state="cached").count()
        if build.state != "succeeded" or cached != len(needs):
            raise SystemExit(f"rebuild was not fully cached: {build.state}, {cached} cached")
    return first_seconds, statistics.median(times)


def main() -> None:
    args = ARGS
    call_command("migrate", verbosity=0)
    project = Project.objects.create(slug="bench", name="Bench")
    pooled = Project.objects.create(slug="pooled", name="Pooled")
    workers = settings.Q_CLUSTER["workers"]
    ResourcePool.objects.create(project=pooled, name="cpu", capacity=workers)
    where = "PostgreSQL + Redis (channels)" if args.setup == "scaled" else "SQLite WAL"
    print(f"setup {args.setup}: {where}; jobs in the database; {workers} workers; median of 3")

    stock = Cluster(BUILDSITE_Q_BROKER="orm")
    try:
        own_broker = ORM(list_key=settings.Q_CLUSTER["name"])
        stock_raw = statistics.median(raw_django_q2(args.tasks, own_broker) for _ in range(3))
    finally:
        stock.stop()
    cluster = Cluster()
    try:
        raw = statistics.median(raw_django_q2(args.tasks) for _ in range(3))
        ours = statistics.median(buildsite_dag(project, args.tasks) for _ in range(3))
        print(f"raw django-q2 no-op jobs, default set-up:   {raw:8.1f} jobs/s")
        print(f"raw django-q2 no-op jobs, its own broker:   {stock_raw:8.1f} jobs/s")
        print(
            f"Buildsite no-op DAG:                        {ours:8.1f} tasks/s "
            f"({args.tasks} tasks, layers of 100)"
        )
        print(f"  ratio vs raw on the default set-up:       {ours / raw:8.2f}x   (target >= 0.6x)")
        print(f"  ratio vs raw on django-q2's own broker:   {ours / stock_raw:8.2f}x")

        with_pool = statistics.median(
            buildsite_dag(pooled, args.tasks, claim=True) for _ in range(3)
        )
        print(
            f"the same DAG through a pool (cpu: {workers}):   {with_pool:8.1f} tasks/s "
            f"vs {ours:.1f} without pools"
        )
        print(f"  ratio pool / no pools:                    {with_pool / ours:8.2f}x   "
              "(target >= 0.85x)")  # fmt: skip

        step_needs = layered_dag(args.step_tasks, width=max(1, args.step_tasks // 8))
        steps_yaml = pipeline_yaml(step_needs, step="true")
        # Round by round, the three side by side: the machine's speed drifts within a
        # run, and a ratio of medians taken minutes apart measured the drift.
        rounds = [
            (
                run_seconds(project, "steps", steps_yaml),
                run_seconds(pooled, "steps", steps_yaml),
                run_seconds(project, "nosteps", pipeline_yaml(step_needs)),
            )
            for _ in range(3)
        ]
        with_steps, pooled_steps, no_steps = (
            statistics.median(side) for side in zip(*rounds, strict=True)
        )

        needs = layered_dag(args.cached_tasks, width=100)
        first, rebuild = cached_rebuild_seconds(project, needs)
    finally:
        cluster.stop()
    without_sandbox = None
    if settings.BUILDSITE["SANDBOX"] != "off":
        # The engine's own share of a step: the same DAG on workers that run steps
        # without bubblewrap (the ≤ 3x target was set before steps were sandboxed).
        plain = Cluster(BUILDSITE_SANDBOX="off")
        try:
            without_sandbox = statistics.median(
                run_seconds(project, "steps", steps_yaml) for _ in range(3)
            )
        finally:
            plain.stop()
    ninja_steps = ninja_run_seconds(step_needs, jobs=workers)
    per_step_ms = (with_steps - no_steps) / args.step_tasks * 1000
    print(
        f"{args.step_tasks} tasks of `true` shell steps (8 layers): {with_steps:8.2f} s; "
        f"without steps {no_steps:.2f} s"
    )
    print(f"  per-step overhead:                        {per_step_ms:8.2f} ms per task")
    unsandboxed = unsandboxed_steps()
    if settings.BUILDSITE["SANDBOX"] == "off":
        print("  every step ran WITHOUT the sandbox (BUILDSITE_SANDBOX=off)")
    elif unsandboxed:
        print(f"  {unsandboxed} steps ran WITHOUT the sandbox (see a task log): not comparable")
    else:
        print("  every step ran in bubblewrap")
    print(
        f"the same shell-step DAG through a pool (cpu: {workers}): {pooled_steps:8.2f} s "
        f"vs {with_steps:.2f} s without pools"
    )
    print(f"  ratio pool / no pools (throughput):       {with_steps / pooled_steps:8.2f}x   "
          "(target >= 0.85x)")  # fmt: skip
    print(f"ninja -j{workers} running `true`, same graph:   {ninja_steps:8.2f} s")
    print(f"  ratio Buildsite / ninja:                  {with_steps / ninja_steps:8.1f}x   "
          "(target <= 3x)")  # fmt: skip
    if without_sandbox is not None:
        sandbox_ms = (with_steps - without_sandbox) / args.step_tasks * 1000
        print(f"the same DAG, BUILDSITE_SANDBOX=off:        {without_sandbox:8.2f} s; "
              f"{without_sandbox / ninja_steps:.1f}x ninja")  # fmt: skip
        print(f"  the sandbox's share:                      {sandbox_ms:8.2f} ms per task")
    ninja = ninja_noop_seconds(needs)
    target = 10 if args.setup == "embedded" else 20
    print(
        f"first build of {args.cached_tasks} cacheable no-op tasks: {first:8.2f} s "
        f"({args.cached_tasks / first:.0f} tasks/s)"
    )
    print(f"fully cached rebuild:          {rebuild:8.3f} s (median of 3, no job dispatched)")
    print(f"ninja no-op build, same graph: {ninja:8.3f} s (median of 7)")
    print(f"  ratio Buildsite / ninja:     {rebuild / ninja:8.1f}x   (target <= {target}x)")


def cleanup() -> None:
    """Remove the throwaway data dir (and database, on the scaled set-up)."""
    shutil.rmtree(DATA, ignore_errors=True)
    if ARGS.setup == "scaled":
        from django.db import connections

        connections.close_all()
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", PG_DB],
            check=False,
        )


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
