"""Builds on real django-q2 worker processes: end to end, SIGKILL recovery, cancel."""

import os

import pytest

from builds.models import Build
from builds.services import cancel_build, trigger_build
from tasks.models import Task
from tests.cluster import Cluster, wait_for
from tests.factories import make_pipeline, task_states

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def finished(build_id):
    build = Build.objects.get(id=build_id)
    return build if build.finished_at else None


def test_demo_like_pipeline_runs_on_real_workers(project):
    make_pipeline(
        project,
        """
tasks:
  one: {steps: [{run: "echo one"}]}
  two: {needs: [one], steps: [{run: "echo two"}]}
  three: {needs: [one], steps: [{run: "echo three"}]}
  four: {needs: [two, three], steps: [{run: "echo four"}]}
""",
    )
    with Cluster():
        build = trigger_build(user=None, project=project, pipeline="main")
        build = wait_for(lambda: finished(build.id), timeout=60, message="build to finish")
    assert build.state == "succeeded"
    assert set(task_states(build).values()) == {"succeeded"}


def test_sigkilled_worker_mid_task_ends_in_a_finished_build(project, tmp_path):
    """Kill the whole worker cluster (and the step it runs) while a task runs; a new
    cluster's reaper sees the lease expire and retries the task to success."""
    marker = tmp_path / "first-attempt-ran"
    make_pipeline(
        project,
        f"""
tasks:
  slow:
    retries: 1
    steps:
      - run: |
          if [ -f {marker} ]; then echo second attempt; exit 0; fi
          touch {marker}; echo first attempt; sleep 60
  after:
    needs: [slow]
    steps: [{{run: "echo after"}}]
""",
    )
    env = {
        "BUILDSITE_LEASE_SECONDS": "2",
        "BUILDSITE_HEARTBEAT_SECONDS": "0.3",
        "BUILDSITE_RETRY_BACKOFF_SECONDS": "0.5",
        "BUILDSITE_TICK_SECONDS": "0.3",
    }
    first = Cluster(extra_env=env).start()
    try:
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(lambda: marker.exists(), timeout=60, message="first attempt to start")
    finally:
        first.kill()
    assert Task.objects.get(build=build, name="slow").state == "running"
    with Cluster(extra_env=env):
        build = wait_for(lambda: finished(build.id), timeout=60, message="build to finish")
    slow = Task.objects.get(build=build, name="slow")
    assert build.state == "succeeded"
    assert slow.attempts == 2
    assert slow.events.filter(new_state="retrying", data__error="worker lost").exists()


def test_sigkilled_worker_without_retries_fails_the_build_as_worker_lost(project, tmp_path):
    marker = tmp_path / "started"
    make_pipeline(
        project,
        f"""
tasks:
  slow: {{steps: [{{run: "touch {marker}; sleep 60"}}]}}
  after: {{needs: [slow], steps: [{{run: "echo never"}}]}}
""",
    )
    env = {
        "BUILDSITE_LEASE_SECONDS": "2",
        "BUILDSITE_HEARTBEAT_SECONDS": "0.3",
        "BUILDSITE_TICK_SECONDS": "0.3",
    }
    first = Cluster(extra_env=env).start()
    try:
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(lambda: marker.exists(), timeout=60, message="task to start")
    finally:
        first.kill()
    with Cluster(extra_env=env):
        build = wait_for(lambda: finished(build.id), timeout=60, message="build to finish")
    assert build.state == "failed"
    assert task_states(build) == {"slow": "failed", "after": "upstream_failed"}
    assert Task.objects.get(build=build, name="slow").error == "worker lost"


def test_cancel_kills_the_whole_process_group_within_five_seconds(project, tmp_path):
    pidfile = tmp_path / "pids"
    make_pipeline(
        project,
        f"""
tasks:
  long:
    steps:
      - run: |
          sleep 300 &
          echo $! >> {pidfile}
          echo $$ >> {pidfile}
          wait
""",
    )
    with Cluster(extra_env={"BUILDSITE_HEARTBEAT_SECONDS": "0.3"}):
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(
            lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2,
            timeout=60,
            message="step to start",
        )
        pids = [int(p) for p in pidfile.read_text().split()]
        import time

        started = time.monotonic()
        cancel_build(user=None, build=build)

        def all_gone():
            for pid in pids:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                # A zombie is dead for our purposes.
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().split()[2] != "Z":
                        return False
            return True

        wait_for(all_gone, timeout=5, interval=0.05, message="step processes to die")
        elapsed = time.monotonic() - started
    build.refresh_from_db()
    assert build.state == "cancelled"
    assert task_states(build) == {"long": "cancelled"}
    assert elapsed < 5
