"""Firing due schedules from upkeep, on a controlled clock: once per due time, once
after downtime, never while paused, and exactly once when clusters race."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from builds.models import Build
from schedules import services
from schedules.models import Schedule
from schedules.services import create_schedule, fire_due_schedules, set_paused
from tests.factories import make_pipeline

PIPELINE = "params: {who: world}\ntasks:\n  hello: {steps: [{run: 'echo {{ params.who }}'}]}\n"
T0 = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)


def hourly(project, **extra) -> Schedule:
    make_pipeline(project, PIPELINE)
    return create_schedule(
        user=None, project=project, pipeline="main", cron="0 * * * *", now=T0, **extra
    )


def builds(schedule: Schedule) -> list[Build]:
    return list(Build.objects.filter(project=schedule.project).order_by("id"))


def test_one_build_per_due_time(project):
    schedule = hourly(project, params={"who": "cron"})
    assert schedule.next_run == datetime(2030, 1, 1, 1, 0, tzinfo=UTC)

    assert fire_due_schedules(now=datetime(2030, 1, 1, 0, 59, 59, tzinfo=UTC)) == 0
    assert builds(schedule) == []

    due = datetime(2030, 1, 1, 1, 0, 2, tzinfo=UTC)
    assert fire_due_schedules(now=due) == 1
    (build,) = builds(schedule)
    assert build.trigger == "schedule" and build.triggered_by is None
    assert build.params == {"who": "cron"} and build.pipeline.name == "main"
    schedule.refresh_from_db()
    assert schedule.next_run == datetime(2030, 1, 1, 2, 0, tzinfo=UTC)
    assert schedule.last_run == due and schedule.last_build == build
    assert schedule.last_error == ""

    # Later ticks within the same hour find nothing due.
    assert fire_due_schedules(now=due + timedelta(seconds=1)) == 0
    assert fire_due_schedules(now=due + timedelta(minutes=59)) == 0
    assert fire_due_schedules(now=datetime(2030, 1, 1, 2, 0, tzinfo=UTC)) == 1
    assert len(builds(schedule)) == 2


def test_after_downtime_a_missed_schedule_runs_once(project):
    schedule = hourly(project)
    # Every cluster was down from 00:30 to 07:30: seven due times passed.
    back = datetime(2030, 1, 1, 7, 30, tzinfo=UTC)
    assert fire_due_schedules(now=back) == 1
    assert fire_due_schedules(now=back + timedelta(seconds=1)) == 0
    assert len(builds(schedule)) == 1
    schedule.refresh_from_db()
    assert schedule.next_run == datetime(2030, 1, 1, 8, 0, tzinfo=UTC)  # from now, not 02:00


def test_paused_schedules_do_not_fire_and_resume_from_now(project):
    schedule = hourly(project)
    schedule = set_paused(user=None, schedule=schedule, paused=True)
    assert schedule.paused and schedule.next_run is None
    assert fire_due_schedules(now=T0 + timedelta(days=3)) == 0
    assert builds(schedule) == []

    resumed = datetime(2030, 1, 5, 10, 20, tzinfo=UTC)
    schedule = set_paused(user=None, schedule=schedule, paused=False, now=resumed)
    assert schedule.next_run == datetime(2030, 1, 5, 11, 0, tzinfo=UTC)  # no make-up runs
    # Resuming a running schedule leaves its due time alone.
    schedule = set_paused(
        user=None, schedule=schedule, paused=False, now=resumed + timedelta(hours=5)
    )
    assert schedule.next_run == datetime(2030, 1, 5, 11, 0, tzinfo=UTC)
    assert fire_due_schedules(now=datetime(2030, 1, 5, 11, 0, tzinfo=UTC)) == 1
    assert len(builds(schedule)) == 1


def test_a_failing_trigger_is_recorded_and_does_not_block_the_others(project):
    failing = hourly(project, params={"who": "cron"})
    other = create_schedule(user=None, project=project, pipeline="main", cron="0 * * * *", now=T0)
    # A new version drops the parameter the first schedule sets.
    make_pipeline(project, "tasks:\n  hello: {steps: [{run: 'true'}]}\n")

    due = datetime(2030, 1, 1, 1, 0, tzinfo=UTC)
    assert fire_due_schedules(now=due) == 2
    failing.refresh_from_db()
    other.refresh_from_db()
    assert "unknown parameter 'who'" in failing.last_error
    assert failing.last_build is None and failing.last_run == due
    assert failing.next_run == due + timedelta(hours=1)  # the claim stands: tried next hour
    assert other.last_error == "" and other.last_build is not None
    assert Build.objects.count() == 1  # nothing half-made by the failed trigger

    # Fixed: the next due time builds and clears the error.
    Schedule.objects.filter(id=failing.id).update(params={})
    assert fire_due_schedules(now=due + timedelta(hours=1)) == 2
    failing.refresh_from_db()
    assert failing.last_error == "" and failing.last_build is not None


def test_an_unexpected_error_is_recorded_too(project, monkeypatch):
    schedule = hourly(project)

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "trigger_build", broken)
    assert fire_due_schedules(now=datetime(2030, 1, 1, 1, 0, tzinfo=UTC)) == 1
    schedule.refresh_from_db()
    assert schedule.last_error == "RuntimeError: disk full"


def test_schedules_follow_their_own_time_zone(project):
    make_pipeline(project, PIPELINE)
    schedule = create_schedule(
        user=None,
        project=project,
        pipeline="main",
        cron="0 9 * * *",
        timezone="America/New_York",
        now=datetime(2030, 7, 1, tzinfo=UTC),
    )
    assert schedule.next_run == datetime(2030, 7, 1, 13, 0, tzinfo=UTC)  # 09:00 EDT
    assert fire_due_schedules(now=datetime(2030, 7, 1, 13, 0, tzinfo=UTC)) == 1
    schedule.refresh_from_db()
    assert schedule.next_run == datetime(2030, 7, 2, 13, 0, tzinfo=UTC)


def test_a_repository_schedule_builds_its_ref(project, settings):
    from repositories.services import create_repository

    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}
    repository, _ = create_repository(
        user=None, project=project, name="app", url="http://127.0.0.1:9/app.git", branch="trunk"
    )
    on_branch = create_schedule(
        user=None, project=project, repository="app", cron="0 3 * * *", now=T0
    )
    on_tag = create_schedule(
        user=None,
        project=project,
        repository="app",
        cron="0 3 * * *",
        ref="v1.2",
        params={"level": 2},
        now=T0,
    )
    assert on_branch.ref == "trunk" and on_tag.ref == "v1.2"
    assert fire_due_schedules(now=datetime(2030, 1, 1, 3, 0, tzinfo=UTC)) == 2
    made = {b.commit_ref: b for b in Build.objects.filter(repository=repository)}
    assert set(made) == {"trunk", "v1.2"}
    assert made["v1.2"].trigger == "schedule" and made["v1.2"].params == {"level": 2}
    on_tag.refresh_from_db()
    assert on_tag.last_build == made["v1.2"] and on_tag.last_error == ""


def test_the_engines_upkeep_fires_due_schedules(project):
    """Registered by the app (SchedulesConfig.ready): tick() names no app."""
    from builds.maintenance import tick

    schedule = hourly(project)
    Schedule.objects.filter(id=schedule.id).update(next_run=datetime(2020, 1, 1, tzinfo=UTC))
    assert tick()["schedules"] == 1
    assert len(builds(schedule)) == 1
    assert tick()["schedules"] == 0


def test_a_failing_registered_upkeep_does_not_stop_tick(project, monkeypatch):
    import builds.maintenance as maintenance

    def broken() -> int:
        raise RuntimeError("boom")

    monkeypatch.setitem(maintenance._registered, "broken", broken)
    done = maintenance.tick()
    assert "broken" not in done and "dispatched" in done and "schedules" in done


# --- clusters racing ------------------------------------------------------------------


def race(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = []
    errors: list = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(fn())
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_clusters_that_saw_the_same_due_time_start_one_build(project, monkeypatch):
    """Every cluster reads the schedule as due before any claims it (the barrier holds
    them there): the conditional update alone decides, and the losers are no-ops."""
    schedule = hourly(project)
    clusters = 4
    seen = threading.Barrier(clusters)
    read = services.due_schedules

    def read_then_wait(**kwargs):
        due = read(**kwargs)
        seen.wait(timeout=30)
        return due

    monkeypatch.setattr(services, "due_schedules", read_then_wait)
    for hour in (1, 2, 3):
        now = datetime(2030, 1, 1, hour, 0, 1, tzinfo=UTC)
        assert sorted(race(clusters, lambda now=now: fire_due_schedules(now=now))) == [0, 0, 0, 1]
        assert len(builds(schedule)) == hour
    schedule.refresh_from_db()
    assert schedule.next_run == datetime(2030, 1, 1, 4, 0, tzinfo=UTC)
    assert set(Build.objects.values_list("trigger", flat=True)) == {"schedule"}


@pytest.mark.django_db(transaction=True)
def test_racing_ticks_at_slightly_different_times_fire_each_due_time_once(project):
    schedule = hourly(project)
    now = datetime(2030, 1, 1, 1, 0, 0, tzinfo=UTC)
    results = race(
        6, lambda: sum(fire_due_schedules(now=now + timedelta(seconds=s)) for s in range(5))
    )
    assert sum(results) == 1
    assert len(builds(schedule)) == 1


def test_claims_that_no_longer_fit_are_recorded(project):
    from builds.services import set_pool

    make_pipeline(project, "tasks:\n  t: {resources: {gpu: 2}, steps: [{run: 'true'}]}\n")
    schedule = create_schedule(
        user=None, project=project, pipeline="main", cron="0 * * * *", now=T0
    )
    set_pool(user=None, project=project, name="gpu", capacity=1)
    assert fire_due_schedules(now=datetime(2030, 1, 1, 1, 0, tzinfo=UTC)) == 1
    schedule.refresh_from_db()
    assert "pool 'gpu' has capacity 1" in schedule.last_error
    assert not Build.objects.exists()
