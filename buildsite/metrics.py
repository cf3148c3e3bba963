"""What /metrics reports from the database, read at scrape time (docs/metrics.md).

The web process, the worker clusters and their monitors are separate processes, on one
host or many: counters kept in any one of them would see only its share. So every
figure about builds, tasks, pools, workers and prompts is read from the shared database
when Prometheus scrapes, by `DatabaseCollector`, with one aggregate query per group of
metrics: no per-row Python, and never the Event table. Only the HTTP request counter
lives in the web process (`buildsite/metrics_http.py`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from builds.models import Build, Pipeline
from builds.selectors import pool_usage
from tasks import rawsql
from tasks.models import Task
from tasks.states import TaskState as S

from .heartbeats import last_upkeep_at, workers_alive
from .models import Project

# Upper bounds (seconds). Builds run minutes to hours; tasks from a second to an hour.
BUILD_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
TASK_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
RAN = (S.SUCCEEDED, S.FAILED)  # tasks whose attempt ran to an end: they have a duration


def seconds_between(later: str, earlier: str) -> str:
    """SQL for the seconds from `earlier` to `later` (two timestamp columns), computed
    by the database itself on SQLite and PostgreSQL."""
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
    # Julian days carry about 10 µs of float error at today's dates: round to the
    # millisecond, so a duration of exactly 5 s falls in the le="5.0" bucket.
    return f"ROUND((julianday({later}) - julianday({earlier})) * 86400.0, 3)"


def bucket_sums(column: str, bounds: Sequence[float]) -> str:
    """`SUM(CASE WHEN column <= b ...)` for each bound: cumulative bucket counts, as
    Prometheus wants them (a NULL duration falls in none)."""
    return ", ".join(f"SUM(CASE WHEN {column} <= {b!r} THEN 1 ELSE 0 END)" for b in bounds)


def histogram_buckets(
    counts: Sequence[float], bounds: Sequence[float], total: int
) -> list[tuple[str, float]]:
    return [*((repr(b), float(n)) for b, n in zip(bounds, counts, strict=True)), ("+Inf", total)]


class DatabaseCollector(Collector):
    """A prometheus_client collector; `collect()` runs the queries on each scrape."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        projects = dict(Project.objects.values_list("id", "slug"))
        pipelines = dict(Pipeline.objects.values_list("id", "name"))
        yield from self.builds(projects, pipelines)
        yield from self.tasks(projects)
        yield from self.queue(projects, now)
        yield from self.pools()
        yield from self.workers(now)
        yield from self.prompts(projects)

    def builds(self, projects: dict[int, str], pipelines: dict[int, str]) -> Iterator[Metric]:
        """Finished builds by state, and their durations (one scan of the build table)."""
        duration = seconds_between("finished_at", "COALESCE(started_at, created_at)")
        rows = rawsql.fetch(
            f"SELECT project_id, pipeline_id, state, COUNT(*), SUM(d), "
            f"{bucket_sums('d', BUILD_BUCKETS)} FROM (SELECT project_id, pipeline_id, "
            f"state, {duration} AS d FROM {rawsql.table(Build)} "
            "WHERE finished_at IS NOT NULL) b GROUP BY project_id, pipeline_id, state"
        )
        finished = CounterMetricFamily(
            "buildsite_builds_total",
            "Finished builds (succeeded, failed or cancelled).",
            labels=["project", "pipeline", "state"],
        )
        # The histogram is by project and pipeline: add up the states of each.
        merged: dict[tuple[str, str], list[float]] = defaultdict(
            lambda: [0.0] * (2 + len(BUILD_BUCKETS))
        )
        for project_id, pipeline_id, state, count, total, *buckets in rows:
            labels = (projects.get(project_id, "?"), pipelines.get(pipeline_id, "?"))
            finished.add_metric([*labels, state], count)
            sums = merged[labels]
            for i, value in enumerate((count, total or 0.0, *buckets)):
                sums[i] += float(value or 0)  # PostgreSQL sums are Decimal
        durations = HistogramMetricFamily(
            "buildsite_build_duration_seconds",
            "Wall time of finished builds, from start (or creation) to end.",
            labels=["project", "pipeline"],
        )
        for labels, (count, total, *buckets) in sorted(merged.items()):
            durations.add_metric(
                list(labels), histogram_buckets(buckets, BUILD_BUCKETS, int(count)), total
            )
        yield finished
        yield durations

    def tasks(self, projects: dict[int, str]) -> Iterator[Metric]:
        """Durations of attempts that ran to an end, and cache hits and misses (one scan
        of the ended tasks)."""
        ran = "state IN (%s, %s) AND started_at IS NOT NULL AND finished_at IS NOT NULL"
        duration = seconds_between("finished_at", "started_at")
        rows = rawsql.fetch(
            f"SELECT b.project_id, COUNT(t.d), SUM(t.d), {bucket_sums('t.d', TASK_BUCKETS)}, "
            "SUM(CASE WHEN t.state = %s AND t.reused_from_id IS NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN t.d IS NOT NULL AND t.cache_key <> '' THEN 1 ELSE 0 END) "
            f"FROM (SELECT build_id, state, cache_key, reused_from_id, "
            f"CASE WHEN {ran} THEN {duration} END AS d FROM {rawsql.table(Task)} "
            "WHERE state IN (%s, %s, %s)) t "
            f"JOIN {rawsql.table(Build)} b ON b.id = t.build_id GROUP BY b.project_id",
            [S.CACHED, *RAN, *RAN, S.CACHED],
        )
        durations = HistogramMetricFamily(
            "buildsite_task_duration_seconds",
            "Run time of task attempts that ended succeeded or failed.",
            labels=["project"],
        )
        hits = CounterMetricFamily(
            "buildsite_cache_hits_total",
            "Tasks that ended CACHED from the step-result cache (re-run reuse not counted).",
            labels=["project"],
        )
        misses = CounterMetricFamily(
            "buildsite_cache_misses_total",
            "Cacheable tasks (with a cache key) that ran instead, succeeded or failed.",
            labels=["project"],
        )
        for project_id, count, total, *rest in rows:
            slug = [projects.get(project_id, "?")]
            buckets, (hit, miss) = rest[:-2], rest[-2:]
            durations.add_metric(
                slug, histogram_buckets(buckets, TASK_BUCKETS, int(count)), float(total or 0)
            )
            hits.add_metric(slug, hit or 0)
            misses.add_metric(slug, miss or 0)
        yield from (durations, hits, misses)

    def queue(self, projects: dict[int, str], now: datetime) -> Iterator[Metric]:
        """Waiting and running tasks (through the (state, build) index)."""
        rows = rawsql.fetch(
            "SELECT b.project_id, t.state, COUNT(*), "
            "MIN(CASE WHEN t.state = %s THEN t.ready_at ELSE t.queued_at END) "
            f"FROM {rawsql.table(Task)} t JOIN {rawsql.table(Build)} b ON b.id = t.build_id "
            "WHERE t.state IN (%s, %s, %s) GROUP BY b.project_id, t.state",
            [S.READY, S.READY, S.QUEUED, S.RUNNING],
        )
        depth = GaugeMetricFamily(
            "buildsite_queue_depth",
            "Tasks waiting: ready (for dispatch, i.e. pool capacity) or queued (for a worker).",
            labels=["project", "state"],
        )
        wait = GaugeMetricFamily(
            "buildsite_queue_wait_seconds",
            "Age of the oldest waiting task in its state (since ready_at, or queued_at).",
            labels=["project", "state"],
        )
        running = GaugeMetricFamily(
            "buildsite_tasks_running", "Tasks running on a worker.", labels=["project"]
        )
        for project_id, state, count, oldest in rows:
            slug = projects.get(project_id, "?")
            if state == S.RUNNING:
                running.add_metric([slug], count)
                continue
            depth.add_metric([slug, state], count)
            (since,) = rawsql.from_db(Task, ("queued_at",), [(oldest,)])[0]
            if since is not None:
                wait.add_metric([slug, state], max(0.0, (now - since).total_seconds()))
        yield from (depth, wait, running)

    def pools(self) -> Iterator[Metric]:
        """Through `builds.selectors.pool_usage`, the rule dispatch counts by."""
        capacity = GaugeMetricFamily(
            "buildsite_pool_capacity", "Capacity of a resource pool.", labels=["project", "pool"]
        )
        in_use = GaugeMetricFamily(
            "buildsite_pool_in_use",
            "What queued and running tasks claim of a pool.",
            labels=["project", "pool"],
        )
        for project in Project.objects.filter(pools__isnull=False).distinct().order_by("slug"):
            for pool in pool_usage(project=project):
                capacity.add_metric([project.slug, pool["name"]], pool["capacity"])
                in_use.add_metric([project.slug, pool["name"]], pool["in_use"])
        yield from (capacity, in_use)

    def workers(self, now: datetime) -> Iterator[Metric]:
        alive = GaugeMetricFamily(
            "buildsite_workers_alive",
            "Job workers of the clusters on a host whose heartbeat is recent.",
            labels=["host"],
        )
        for host, count in sorted(workers_alive(now=now).items()):
            alive.add_metric([host], count)
        yield alive
        lag = GaugeMetricFamily(
            "buildsite_upkeep_lag_seconds",
            "Seconds since a cluster last ended an upkeep round (no sample: never).",
        )
        if (last := last_upkeep_at()) is not None:
            lag.add_metric([], max(0.0, (now - last).total_seconds()))
        yield lag

    def prompts(self, projects: dict[int, str]) -> Iterator[Metric]:
        """Ended prompt runs (a running one is counted once it ends)."""
        # By name: prompts/ is outside the strictly typed apps, and buildsite needs only
        # these columns of it.
        runs_of: Any = apps.get_model("prompts", "PromptRun")
        rows: Any = (
            runs_of.objects.exclude(status="running")
            .values("project_id", "status")
            .annotate(
                n=Count("id"), tin=Sum("tokens_in"), tout=Sum("tokens_out"), cost=Sum("cost_usd")
            )
            .order_by()
        )
        runs = CounterMetricFamily(
            "buildsite_prompt_runs_total", "Ended prompt runs.", labels=["project", "status"]
        )
        tokens = CounterMetricFamily(
            "buildsite_prompt_tokens_total",
            "Tokens sent (in) and received (out) by ended prompt runs.",
            labels=["project", "direction"],
        )
        cost = CounterMetricFamily(
            "buildsite_prompt_cost_usd_total", "Cost of ended prompt runs.", labels=["project"]
        )
        per_project: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for row in rows:
            slug = projects.get(row["project_id"], "?")
            runs.add_metric([slug, row["status"]], row["n"])
            sums = per_project[slug]
            sums[0] += row["tin"] or 0
            sums[1] += row["tout"] or 0
            sums[2] += float(row["cost"] or 0)
        for slug, (tokens_in, tokens_out, usd) in sorted(per_project.items()):
            tokens.add_metric([slug, "in"], tokens_in)
            tokens.add_metric([slug, "out"], tokens_out)
            cost.add_metric([slug], usd)
        yield from (runs, tokens, cost)
