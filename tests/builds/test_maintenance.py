"""Upkeep done by the ticker: deadlines, resource accounting, retention."""

from datetime import timedelta

import pytest
from django.utils import timezone

from builds.artifacts import artifact_store, blob_name
from builds.maintenance import check_deadlines, clean_old_files
from builds.models import Blob, Build, ResourcePool
from builds.selectors import task_log
from builds.services import trigger_build
from buildsite.errors import NotFound
from tasks.models import Task
from tests.factories import api_client, make_pipeline, run_build, task_states


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


def test_retention_removes_logs_and_artifacts_of_old_builds(
    project, user, inline_workers, fast_engine
):
    make_pipeline(
        project,
        """
params: {n: "1"}
tasks:
  t:
    steps: [{run: "echo shared > shared.txt; echo {{ params.n }} > own.txt; echo logged"}]
    artifacts: [shared.txt, own.txt]
""",
    )
    old, recent = run_build(project, params={"n": "old"}), run_build(project, params={"n": "new"})
    own_old = next(f for f in Task.objects.get(build=old).artifacts if f["path"] == "own.txt")
    shared = next(f for f in Task.objects.get(build=old).artifacts if f["path"] == "shared.txt")
    Build.objects.filter(id=old.id).update(finished_at=timezone.now() - timedelta(days=365))
    Blob.objects.update(last_used_at=timezone.now() - timedelta(days=365))
    store = artifact_store()

    assert clean_old_files() == 1
    old = Build.objects.get(id=old.id)
    assert old.files_purged
    with pytest.raises(NotFound, match="removed by retention"):
        task_log(build=old, name="t")
    assert Task.objects.get(build=old).artifacts == []
    assert not store.exists(blob_name(own_old["sha256"]))  # named by nothing now
    assert store.exists(blob_name(shared["sha256"]))  # the recent build names it too
    assert Blob.objects.filter(sha256=shared["sha256"]).exists()
    assert "logged" in task_log(build=recent, name="t")
    response = api_client(user, project).get(f"/api/builds/{recent.id}/artifacts")
    assert {a["path"] for a in response.json()} == {"shared.txt", "own.txt"}


def test_a_blob_touched_recently_is_kept_even_when_unnamed(project, inline_workers, fast_engine):
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'echo x > f'}], artifacts: [f]}\n")
    build = run_build(project)
    Build.objects.filter(id=build.id).update(finished_at=timezone.now() - timedelta(days=365))
    clean_old_files()
    (digest,) = Blob.objects.values_list("sha256", flat=True)
    assert artifact_store().exists(blob_name(digest))  # within the grace period


def test_the_first_upkeep_after_start_runs_retention(project, monkeypatch):
    import builds.maintenance as maintenance

    monkeypatch.setattr(maintenance, "_last_run", {})
    ran = []
    monkeypatch.setattr(maintenance, "clean_old_files", lambda: ran.append(1) or 0)
    maintenance.tick()
    maintenance.tick()
    assert ran == [1]  # at once, then on schedule
