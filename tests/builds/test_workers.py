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


def test_a_pool_narrower_than_the_workers_is_never_over_committed(project):
    """Workers that end a pooled task run the pool's next tasks themselves: still never
    more at once than the pool's capacity, across the cluster's workers."""
    from builds.models import ResourcePool

    ResourcePool.objects.create(project=project, name="cpu", capacity=1)
    tasks = "".join(f"  t{i}: {{steps: [{{run: 'sleep 0.1'}}]}}\n" for i in range(6))
    make_pipeline(project, "tasks:\n" + tasks + "  last: {needs: [t0, t5]}\n")
    with Cluster(workers=2):
        build = trigger_build(user=None, project=project, pipeline="main")
        build = wait_for(lambda: finished(build.id), timeout=90, message="build to finish")
    assert build.state == "succeeded"
    running = 0
    moves = build.events.filter(type="task.state").order_by("id")
    for old, new in moves.values_list("old_state", "new_state"):
        running += (new == "running") - (old == "running")
        assert running <= 1
    assert ResourcePool.objects.get(project=project).busy_seconds >= 0.6


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
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


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
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


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
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

        wait_for(
            lambda: all(_gone(pid) for pid in pids),
            timeout=5,
            interval=0.05,
            message="step processes to die",
        )
        elapsed = time.monotonic() - started
    build.refresh_from_db()
    assert build.state == "cancelled"
    assert task_states(build) == {"long": "cancelled"}
    assert elapsed < 5


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_jobs_pulled_by_a_dead_host_run_elsewhere_within_the_lease(project, tmp_path):
    """Host A pulls jobs and dies before starting all of them: host B runs them once
    the job lease (here 3 s) is over, not after the 300 s requeue check."""
    release = tmp_path / "release"
    started = tmp_path / "started"
    started.mkdir()
    tasks = "\n".join(
        f"  t{i}: {{retries: 1, steps: [{{run: 'touch {started}/t{i}; "
        f"until [ -f {release} ]; do sleep 0.1; done'}}]}}"
        for i in range(6)
    )
    make_pipeline(project, f"tasks:\n{tasks}\n")
    env = {
        "BUILDSITE_LEASE_SECONDS": "3",
        "BUILDSITE_HEARTBEAT_SECONDS": "0.3",
        "BUILDSITE_RETRY_BACKOFF_SECONDS": "0.2",
        "BUILDSITE_TICK_SECONDS": "0.3",
        "BUILDSITE_REQUEUE_SECONDS": "300",
    }
    host_a = Cluster(workers=1, extra_env=env).start()
    try:
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(lambda: any(started.iterdir()), timeout=60, message="A to start a task")
        import time

        time.sleep(1)  # A's pusher pulls what its queue has room for
    finally:
        host_a.kill()
    ran_on_a = {p.name for p in started.iterdir()}
    assert len(ran_on_a) == 1  # one worker: one task started, the pulled rest did not
    release.touch()
    with Cluster(workers=2, extra_env=env):
        build = wait_for(lambda: finished(build.id), timeout=30, message="build to finish")
    assert build.state == "succeeded"
    assert {p.name for p in started.iterdir()} == {f"t{i}" for i in range(6)}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead for our purposes
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True  # reaped between the two looks


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_sigterm_stops_the_cluster_within_ten_seconds_and_returns_the_attempt(project, tmp_path):
    """A deploy stops the cluster in the middle of a long step: the cluster is gone in
    seconds, the step with it, and the attempt goes back for retry (even with no
    retries declared: being stopped is not a failure of the task)."""
    pidfile = tmp_path / "pid"
    second = tmp_path / "second"
    make_pipeline(
        project,
        f"""
tasks:
  long:
    steps:
      - run: |
          if [ -f {pidfile} ]; then touch {second}; exit 0; fi
          sleep 120 &
          echo $! > {pidfile}
          wait
""",
    )
    first = Cluster(extra_env={"BUILDSITE_HEARTBEAT_SECONDS": "0.3"}).start()
    build = trigger_build(user=None, project=project, pipeline="main")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), message="step start")
    step_pid = int(pidfile.read_text())
    import time

    started = time.monotonic()
    main = first.procs[0]
    main.send_signal(15)
    main.wait(timeout=15)
    assert time.monotonic() - started < 10
    wait_for(lambda: _gone(step_pid), timeout=3, message="the step to die with the cluster")
    long = Task.objects.get(build=build, name="long")
    assert long.state == "retrying"
    assert long.error == "worker stopped"
    assert long.max_retries == 1  # the interrupted attempt is given back
    first.kill()
    with Cluster(extra_env={"BUILDSITE_RETRY_BACKOFF_SECONDS": "0.2"}):
        build = wait_for(lambda: finished(build.id), timeout=60, message="build to finish")
    assert build.state == "succeeded" and second.exists()


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_a_sigkilled_worker_takes_its_steps_processes_with_it(project, tmp_path):
    pidfile = tmp_path / "pid"
    make_pipeline(
        project,
        f"""
tasks:
  long:
    steps:
      - run: |
          sleep 120 &
          echo $! > {pidfile}
          wait
""",
    )
    with Cluster(extra_env={"BUILDSITE_TICK_SECONDS": "0.3"}):
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), message="step start")
        step_pid = int(pidfile.read_text())
        worker_pid = int(Task.objects.get(build=build, name="long").worker.rsplit(":", 1)[1])
        os.kill(worker_pid, 9)  # the worker alone, as the OOM killer would
        wait_for(lambda: _gone(step_pid), timeout=5, message="the step's processes to die")


def test_a_log_written_on_another_host_reads_back_here(project, tmp_path):
    """A worker host with a data dir of its own: the log is in the shared database."""
    from builds.selectors import task_log

    make_pipeline(project, "tasks:\n  hello: {steps: [{run: 'echo from the other host'}]}\n")
    from django.conf import settings

    other = {
        "BUILDSITE_DATA_DIR": str(tmp_path / "other-host"),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
    }
    with Cluster(extra_env=other):
        build = trigger_build(user=None, project=project, pipeline="main")
        build = wait_for(lambda: finished(build.id), timeout=60, message="build to finish")
    assert build.state == "succeeded"
    assert "from the other host" in task_log(build=build, name="hello")
