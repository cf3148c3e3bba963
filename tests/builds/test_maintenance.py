"""Upkeep done by the ticker: deadlines, resource accounting, retention."""

from datetime import timedelta

from django.utils import timezone

from builds.maintenance import check_deadlines, clean_old_files
from builds.models import Build, ResourcePool
from builds.resolution import workspace_of
from builds.selectors import task_log
from builds.services import trigger_build
from tasks.models import Task
from tests.factories import make_pipeline, run_build, task_states


def test_missed_deadline_is_recorded_and_may_cancel(project, monkeypatch):
    import builds.services

    monkeypatch.setattr(builds.services, "dispatch_on_commit", lambda project_id: None)
    make_pipeline(
        project,
        """
tasks:
  strict: {deadline: 60, on_deadline: cancel, steps: [{run: "true"}]}
  relaxed: {deadline: 60, steps: [{run: "true"}]}
  after: {needs: [strict], steps: [{run: "true"}]}
""",
    )
    build = trigger_build(user=None, project=project, pipeline="main")
    Task.objects.filter(build=build, deadline__isnull=False).update(
        deadline=timezone.now() - timedelta(seconds=1)
    )
    assert check_deadlines() == 2
    assert check_deadlines() == 0, "a deadline is reported once"
    missed = build.events.filter(type="deadline.missed")
    assert {(e.task_name, e.data["action"]) for e in missed} == {
        ("strict", "cancel"),
        ("relaxed", "record"),
    }
    states = task_states(build)
    assert states["strict"] == "cancelled" and states["after"] == "upstream_failed"
    assert states["relaxed"] == "ready"


def test_busy_time_is_accounted_per_pool(project, inline_workers, fast_engine):
    ResourcePool.objects.create(project=project, name="cpu", capacity=2)
    make_pipeline(project, "tasks:\n  t: {resources: {cpu: 2}, steps: [{run: 'sleep 0.3'}]}\n")
    build = run_build(project)
    assert build.state == "succeeded"
    busy = ResourcePool.objects.get(name="cpu").busy_seconds
    assert 0.5 <= busy < 10, busy  # 2 claimed x >= 0.3 s


def test_retention_removes_workspaces_and_logs_of_old_builds(project, inline_workers, fast_engine):
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'echo hi > out.txt; echo logged'}]}\n")
    old, recent = run_build(project), run_build(project)
    for build in (old, recent):
        assert (workspace_of(build.id) / "out.txt").exists()
        assert "logged" in task_log(build=build, name="t")
    Build.objects.filter(id=old.id).update(finished_at=timezone.now() - timedelta(days=365))
    assert clean_old_files() == 1
    assert not workspace_of(old.id).exists() and task_log(build=old, name="t") == ""
    assert (workspace_of(recent.id) / "out.txt").exists()
    assert "logged" in task_log(build=recent, name="t")
    assert Build.objects.get(id=old.id).files_purged
