"""Pipeline health figures (builds/health.py): pure, no database."""

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from builds import health
from builds.health import FLIPPED, PASSED_ON_RETRY, BuildFact, TaskFact

DAY = date(2025, 3, 1)
durations = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1)


def build(id, state="succeeded", duration=60.0, day=DAY, sha=""):
    return BuildFact(id=id, state=state, day=day, duration=duration, commit_sha=sha)


def task(build_id, name="test", state="succeeded", attempts=1, duration=10.0, given_back=0):
    return TaskFact(build_id, name, state, attempts, duration, given_back)


# --- percentiles ---------------------------------------------------------------------------
def test_nearest_rank_percentiles():
    values = [15, 20, 35, 40, 50]
    assert health.percentile(values, 50) == 35  # rank ceil(2.5) = 3
    assert health.percentile(values, 95) == 50  # rank ceil(4.75) = 5
    assert health.percentile(values, 30) == 20  # rank ceil(1.5) = 2
    assert health.percentile(list(range(1, 101)), 95) == 95
    assert health.percentile([7.5], 50) == health.percentile([7.5], 95) == 7.5
    assert health.percentile([3, 1, 2], 50) == 2  # any order


def test_percentile_of_nothing_is_none():
    assert health.percentile([], 50) is None


@given(durations)
def test_percentiles_are_observed_values_within_bounds_and_ordered(values):
    p50, p95 = health.percentile(values, 50), health.percentile(values, 95)
    assert p50 in values and p95 in values
    assert min(values) <= p50 <= p95 <= max(values)


@given(durations, st.floats(min_value=0.1, max_value=100), st.floats(min_value=0.1, max_value=100))
def test_percentile_grows_with_p(values, p, q):
    lo, hi = sorted((p, q))
    assert health.percentile(values, lo) <= health.percentile(values, hi)


# --- success rate and the whole summary ----------------------------------------------------
def test_success_rate_leaves_cancelled_builds_out():
    builds = [
        build(5, "succeeded"),
        build(4, "failed"),
        build(3, "succeeded"),
        build(2, "cancelled", duration=None),
        build(1, "succeeded"),
    ]
    report = health.summarize(builds, [], [DAY])
    assert (report["builds"], report["succeeded"], report["failed"], report["cancelled"]) == (
        5,
        3,
        1,
        1,
    )
    assert report["success_rate"] == 0.75


def test_no_decided_builds_means_no_rate():
    assert health.success_rate(0, 0) is None
    report = health.summarize([build(1, "cancelled", duration=None)], [], [DAY])
    assert report["success_rate"] is None
    assert report["duration_p50"] is None and report["duration_p95"] is None


@given(st.lists(st.sampled_from(["succeeded", "failed", "cancelled"])))
def test_success_rate_is_a_share(states):
    builds = [build(i, s) for i, s in enumerate(states, 1)]
    rate = health.summarize(builds, [], [DAY])["success_rate"]
    decided = [s for s in states if s != "cancelled"]
    if not decided:
        assert rate is None
    else:
        assert 0 <= rate <= 1
        assert rate == decided.count("succeeded") / len(decided)


def test_builds_that_never_started_have_no_duration_in_percentiles():
    builds = [
        build(3, duration=100.0),
        build(2, "cancelled", duration=None),
        build(1, duration=20.0),
    ]
    report = health.summarize(builds, [], [DAY])
    assert report["duration_p50"] == 20.0
    assert report["duration_p95"] == 100.0


def test_recent_builds_are_the_first_twenty_given():
    builds = [build(i) for i in range(30, 0, -1)]
    recent = health.summarize(builds, [], [DAY])["recent"]
    assert [b["id"] for b in recent] == list(range(30, 10, -1))
    assert recent[0] == {"id": 30, "state": "succeeded", "duration": 60.0}


# --- per day -------------------------------------------------------------------------------
def test_daily_series_has_every_day_and_none_for_days_without_durations():
    days = [DAY + timedelta(days=i) for i in range(3)]
    builds = [
        build(1, duration=10.0, day=days[0]),
        build(2, duration=30.0, day=days[0]),
        build(3, "cancelled", duration=None, day=days[1]),
    ]
    series = health.daily_series(builds, days)
    assert series == [
        {"day": days[0], "builds": 2, "duration_p50": 10.0, "duration_p95": 30.0},
        {"day": days[1], "builds": 1, "duration_p50": None, "duration_p95": None},
        {"day": days[2], "builds": 0, "duration_p50": None, "duration_p95": None},
    ]


# --- slowest tasks -------------------------------------------------------------------------
def test_slowest_tasks_rank_by_p95_and_keep_ten():
    tasks = [task(1, "lint", duration=5.0), task(2, "lint", duration=7.0)]
    tasks += [task(b, "test", duration=d) for b, d in [(1, 100.0), (2, 40.0), (3, 60.0)]]
    tasks += [task(1, "never", duration=None)]
    tasks += [task(1, f"t{i:02}", duration=float(i)) for i in range(1, 13)]
    rows = health.slowest_tasks(tasks)
    assert rows[0] == {"task": "test", "runs": 3, "duration_p50": 60.0, "duration_p95": 100.0}
    assert rows[1]["task"] == "t12"
    assert len(rows) == 10
    assert "never" not in {r["task"] for r in rows}
    assert [r["duration_p95"] for r in rows] == sorted(
        (r["duration_p95"] for r in rows), reverse=True
    )


# --- flaky tasks ---------------------------------------------------------------------------
def test_a_task_that_passed_on_a_retry_is_flaky():
    builds = [build(1), build(2), build(3)]
    tasks = [
        task(1, "test", attempts=2),
        task(2, "test", attempts=1),
        task(3, "test", attempts=3),
        task(3, "deploy", "failed", attempts=2),  # failed every attempt: broken, not flaky
    ]
    assert health.flaky_tasks(builds, tasks) == [
        {"task": "test", "flaky_runs": 2, "builds": [3, 1], "reason": PASSED_ON_RETRY}
    ]


def test_attempts_given_back_by_a_stopped_worker_are_not_failures():
    tasks = [task(1, attempts=2, given_back=1), task(2, "b", attempts=3, given_back=1)]
    assert health.flaky_tasks([build(1), build(2)], tasks) == [
        {"task": "b", "flaky_runs": 1, "builds": [2], "reason": PASSED_ON_RETRY}
    ]


def test_a_task_that_flipped_on_the_same_commit_is_flaky():
    builds = [
        build(1, "failed", sha="abc"),
        build(2, "succeeded", sha="abc"),
        build(3, "failed", sha="def"),  # failed on another commit only: no flip
        build(4, "failed", sha=""),  # no commit: never compared
        build(5, "succeeded", sha=""),
    ]
    tasks = [
        task(1, "test", "failed"),
        task(2, "test", "succeeded"),
        task(3, "test", "failed"),
        task(4, "lint", "failed"),
        task(5, "lint", "succeeded"),
        task(1, "build", "succeeded"),
        task(2, "build", "succeeded"),
    ]
    assert health.flaky_tasks(builds, tasks) == [
        {"task": "test", "flaky_runs": 1, "builds": [1], "reason": FLIPPED}
    ]


def test_flaky_rows_for_both_reasons_most_runs_first():
    builds = [build(i, sha="abc") for i in range(1, 5)]
    tasks = [
        task(1, "a", "failed"),
        task(2, "a", "failed"),
        task(3, "a", "succeeded", attempts=2),
        task(4, "b", "succeeded", attempts=2),
    ]
    assert health.flaky_tasks(builds, tasks) == [
        {"task": "a", "flaky_runs": 2, "builds": [2, 1], "reason": FLIPPED},
        {"task": "a", "flaky_runs": 1, "builds": [3], "reason": PASSED_ON_RETRY},
        {"task": "b", "flaky_runs": 1, "builds": [4], "reason": PASSED_ON_RETRY},
    ]


def test_flaky_build_lists_are_capped_newest_first():
    builds = [build(i) for i in range(1, 31)]
    rows = health.flaky_tasks(builds, [task(i, attempts=2) for i in range(1, 31)])
    assert rows[0]["flaky_runs"] == 30
    assert rows[0]["builds"] == list(range(30, 10, -1))


# --- presentation --------------------------------------------------------------------------
def test_chart_scales_to_the_largest_p95_and_skips_days_without_data():
    series = [
        {"day": DAY, "duration_p50": 50.0, "duration_p95": 100.0},
        {"day": DAY + timedelta(days=1), "duration_p50": None, "duration_p95": None},
        {"day": DAY + timedelta(days=2), "duration_p50": 25.0, "duration_p95": 50.0},
    ]
    drawn = health.chart(series, width=104, height=104, pad=2)
    assert drawn["max"] == 100.0
    assert drawn["p95"] == "2.0,2.0 102.0,52.0"
    assert drawn["p50"] == "2.0,52.0 102.0,77.0"
    assert [(d["line"], d["day"]) for d in drawn["dots"]] == [
        ("p50", DAY),
        ("p95", DAY),
        ("p50", DAY + timedelta(days=2)),
        ("p95", DAY + timedelta(days=2)),
    ]


def test_chart_of_no_data_draws_nothing():
    drawn = health.chart([{"day": DAY, "duration_p50": None, "duration_p95": None}])
    assert drawn["p50"] == drawn["p95"] == "" and drawn["dots"] == []


@given(st.lists(st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)), min_size=1))
def test_chart_points_stay_inside_the_box(p95s):
    series = [
        {"day": DAY, "duration_p50": None if v is None else v / 2, "duration_p95": v} for v in p95s
    ]
    drawn = health.chart(series, width=200, height=50, pad=4)
    for dot in drawn["dots"]:
        assert 4 <= dot["x"] <= 196 and 4 <= dot["y"] <= 46


def test_formatting():
    assert health.format_seconds(None) == "—"
    assert health.format_seconds(1.25) == "1.2 s"
    assert health.format_seconds(42.4) == "42 s"
    assert health.format_seconds(95) == "1 min 35 s"
    assert health.format_seconds(120) == "2 min"
    assert health.format_seconds(3725) == "1 h 2 min"
    assert health.format_seconds(7200) == "2 h"
    assert health.format_rate(None) == "—"
    assert health.format_rate(0.875) == "87.5%"
    assert health.format_rate(1.0) == "100%"
    assert health.format_rate(2 / 3) == "66.7%"
