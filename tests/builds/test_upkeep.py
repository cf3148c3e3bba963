"""Upkeep runs inside every worker cluster, one cluster at a time, with no ticker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from builds.models import Build, UpkeepLease
from builds.services import trigger_build
from builds.upkeep import hold_upkeep_lease, release_upkeep_lease
from tasks.models import Task
from tests.cluster import Cluster, wait_for
from tests.factories import make_pipeline


def test_one_holder_at_a_time_and_a_lapsed_lease_changes_hands(db):
    assert hold_upkeep_lease(holder="a", seconds=30)
    assert not hold_upkeep_lease(holder="b", seconds=30)
    assert hold_upkeep_lease(holder="a", seconds=30)  # renewal
    UpkeepLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert hold_upkeep_lease(holder="b", seconds=30)  # a stopped renewing
    assert not hold_upkeep_lease(holder="a", seconds=30)
    release_upkeep_lease(holder="b")
    assert hold_upkeep_lease(holder="a", seconds=30)  # released: no wait for expiry


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_a_cluster_alone_retries_reaps_and_settles_with_buildsites_monitor(project, tmp_path):
    """No ticker runs: the due retry is dispatched by the upkeep of the cluster's own
    monitor, which is Buildsite's (django-q2's own would not settle the task ends,
    nor hold the upkeep lease)."""
    marker = tmp_path / "failed-once"
    make_pipeline(
        project,
        f"""
tasks:
  flaky:
    retries: 1
    steps:
      - run: "if [ -f {marker} ]; then exit 0; fi; touch {marker}; exit 1"
  after: {{needs: [flaky], steps: [{{run: "echo after"}}]}}
""",
    )
    env = {"BUILDSITE_RETRY_BACKOFF_SECONDS": "0.2", "BUILDSITE_TICK_SECONDS": "0.2"}
    with Cluster(extra_env=env) as cluster:
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(lambda: Build.objects.get(id=build.id).finished_at, timeout=60, message="build")
        lease = UpkeepLease.objects.get()
        assert lease.holder.split(":")[1] != ""  # host:pid:nonce of the cluster's monitor
        assert lease.expires_at > timezone.now()
        cluster.stop()
    build.refresh_from_db()
    assert build.state == "succeeded"
    flaky = Task.objects.get(build=build, name="flaky")
    assert flaky.attempts == 2
    assert not UpkeepLease.objects.exists()  # a cluster that stops hands the lease back


@pytest.mark.django_db(transaction=True)
def test_ticker_once_does_a_round_and_hands_the_lease_back(project):
    """`manage.py ticker --once` (upkeep without workers) takes the same lease, and
    gives it back so the clusters need not wait for it to expire."""
    from django.core.management import call_command

    make_pipeline(project, "tasks:\n  a: {retries: 1, steps: [{run: 'true'}]}\n")
    build = trigger_build(user=None, project=project, pipeline="main")
    task = Task.objects.get(build=build, name="a")
    Task.objects.filter(id=task.id).update(
        state="running", attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    call_command("ticker", "--once")
    task.refresh_from_db()
    assert task.state == "retrying" and task.error == "worker lost"  # the reaper ran
    assert not UpkeepLease.objects.exists()
