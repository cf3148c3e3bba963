"""Pipeline health from finished builds and their tasks: pure, no database.

`builds/stats.py` reads the facts; this module turns them into figures, so the rules
below are tested without a database and the API and the page cannot disagree.

- **Success rate** = succeeded / (succeeded + failed). Cancelled builds are counted but
  left out of the rate: a build is mostly cancelled by a person or by a newer push, which
  says nothing about whether the pipeline works. None when there is no succeeded or
  failed build.
- **Percentiles** are nearest-rank: the p-th percentile of n sorted values is the value
  at rank ceil(p/100 * n). It is always a duration that happened, lies between the
  minimum and the maximum, and p50 <= p95. None when there are no values.
- **Durations** are finished - started, in seconds. A build or task that never started
  (cancelled while queued) has none and is left out of the percentiles.
- **Flaky**, per task name, for one of two reasons:
  "passed on retry": the task succeeded in a build after at least one failed attempt.
  Attempts handed back when a worker was stopped are not failures (`builds/attempts.py`
  gives them back by raising `max_retries`), so they are subtracted first;
  "flipped on the same commit": the task succeeded in one build of a commit and failed
  in another build of the same commit (a rebuild); the flaky runs are those failures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
PASSED_ON_RETRY = "passed on retry"
FLIPPED = "flipped on the same commit"
TOP_SLOWEST = 10
MAX_FLAKY_BUILDS = 20  # build ids listed per flaky task, newest first
RECENT = 20  # builds shown as state squares on the page


@dataclass(frozen=True)
class BuildFact:
    id: int
    state: str
    day: date  # the day it was created, in the server's time zone
    duration: float | None  # seconds; None when it never started
    commit_sha: str = ""


@dataclass(frozen=True)
class TaskFact:
    build_id: int
    name: str
    state: str  # succeeded or failed: the ends that ran
    attempts: int
    duration: float | None  # seconds of its last attempt
    given_back: int = 0  # attempts handed back when a worker stopped: not failures

    @property
    def failed_attempts(self) -> int:
        """Attempts that failed before the last one (which is `state`)."""
        return max(0, self.attempts - 1 - self.given_back)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of `values` (any order), p in (0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def success_rate(succeeded: int, failed: int) -> float | None:
    decided = succeeded + failed
    return succeeded / decided if decided else None


def daily_series(builds: Iterable[BuildFact], days: Sequence[date]) -> list[dict[str, Any]]:
    """One point per day of `days`: its builds and their duration p50/p95 (None when no
    build of that day has a duration)."""
    by_day: dict[date, list[float]] = defaultdict(list)
    counts: dict[date, int] = defaultdict(int)
    for b in builds:
        counts[b.day] += 1
        if b.duration is not None:
            by_day[b.day].append(b.duration)
    return [
        {
            "day": day,
            "builds": counts.get(day, 0),
            "duration_p50": _seconds(percentile(by_day.get(day, []), 50)),
            "duration_p95": _seconds(percentile(by_day.get(day, []), 95)),
        }
        for day in days
    ]


def slowest_tasks(tasks: Iterable[TaskFact], top: int = TOP_SLOWEST) -> list[dict[str, Any]]:
    """Task names ranked by their p95 duration (then p50, then name), the slowest `top`."""
    durations: dict[str, list[float]] = defaultdict(list)
    for t in tasks:
        if t.duration is not None:
            durations[t.name].append(t.duration)
    ranked = sorted(
        (
            (percentile(values, 95) or 0.0, percentile(values, 50) or 0.0, name, len(values))
            for name, values in durations.items()
        ),
        key=lambda r: (-r[0], -r[1], r[2]),
    )
    return [
        {"task": name, "runs": runs, "duration_p50": _seconds(p50), "duration_p95": _seconds(p95)}
        for p95, p50, name, runs in ranked[:top]
    ]


def flaky_tasks(builds: Iterable[BuildFact], tasks: Iterable[TaskFact]) -> list[dict[str, Any]]:
    """One row per (task name, reason), most flaky runs first."""
    commit_of = {b.id: b.commit_sha for b in builds}
    flaky: dict[tuple[str, str], set[int]] = defaultdict(set)
    # (commit, task name) -> {state: build ids}
    runs_on_commit: dict[tuple[str, str], dict[str, set[int]]] = defaultdict(
        lambda: defaultdict(set)
    )
    for t in tasks:
        if t.state == SUCCEEDED and t.failed_attempts > 0:
            flaky[(t.name, PASSED_ON_RETRY)].add(t.build_id)
        commit = commit_of.get(t.build_id, "")
        if commit and t.state in (SUCCEEDED, FAILED):
            runs_on_commit[(commit, t.name)][t.state].add(t.build_id)
    for (_commit, name), by_state in runs_on_commit.items():
        if by_state[SUCCEEDED] and by_state[FAILED]:
            flaky[(name, FLIPPED)].update(by_state[FAILED])
    ranked = sorted(flaky.items(), key=lambda item: (-len(item[1]), item[0]))
    return [
        {
            "task": name,
            "flaky_runs": len(ids),
            "builds": sorted(ids, reverse=True)[:MAX_FLAKY_BUILDS],
            "reason": reason,
        }
        for (name, reason), ids in ranked
    ]


def summarize(
    builds: Sequence[BuildFact], tasks: Sequence[TaskFact], days: Sequence[date]
) -> dict[str, Any]:
    """Every figure of the health report. `builds` newest first (the page shows the
    first RECENT of them)."""
    states = [b.state for b in builds]
    succeeded, failed = states.count(SUCCEEDED), states.count(FAILED)
    durations = [b.duration for b in builds if b.duration is not None]
    return {
        "builds": len(builds),
        "succeeded": succeeded,
        "failed": failed,
        "cancelled": states.count(CANCELLED),
        "success_rate": success_rate(succeeded, failed),
        "duration_p50": _seconds(percentile(durations, 50)),
        "duration_p95": _seconds(percentile(durations, 95)),
        "slowest_tasks": slowest_tasks(tasks),
        "flaky_tasks": flaky_tasks(builds, tasks),
        "daily": daily_series(builds, days),
        "recent": [
            {"id": b.id, "state": b.state, "duration": _seconds(b.duration)}
            for b in builds[:RECENT]
        ],
    }


# --- presentation (pure as well: the page's chart and durations) -------------------------
def chart(
    series: Sequence[dict[str, Any]], *, width: int = 600, height: int = 120, pad: int = 4
) -> dict[str, Any]:
    """Points of two polylines (daily p50 and p95) for an inline SVG of `width` x
    `height`: x by day, y from 0 at the bottom to the largest p95 at the top. Days
    without a duration are skipped (the lines join their neighbours); only numbers
    come out, so nothing from the data reaches the SVG unformatted."""
    top = max((p["duration_p95"] or 0.0 for p in series), default=0.0)
    step = (width - 2 * pad) / max(1, len(series) - 1)
    dots: list[dict[str, Any]] = []
    for i, point in enumerate(series):
        for line in ("p50", "p95"):
            value = point[f"duration_{line}"]
            if value is None:
                continue
            y = height - pad - (value / top * (height - 2 * pad) if top else 0.0)
            x = round(pad + i * step, 1)
            dots.append(
                {"line": line, "x": x, "y": round(y, 1), "value": value, "day": point["day"]}
            )
    return {
        "width": width,
        "height": height,
        "max": top,
        "p50": " ".join(f"{d['x']},{d['y']}" for d in dots if d["line"] == "p50"),
        "p95": " ".join(f"{d['x']},{d['y']}" for d in dots if d["line"] == "p95"),
        "dots": dots,
    }


def format_seconds(value: float | None) -> str:
    """1.5 -> "1.5 s", 95 -> "1 min 35 s", 3725 -> "1 h 2 min"; None -> "—"."""
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def format_rate(rate: float | None) -> str:
    """0.875 -> "87.5%", 1.0 -> "100%"; None -> "—"."""
    if rate is None:
        return "—"
    return f"{rate * 100:.1f}".removesuffix(".0") + "%"
