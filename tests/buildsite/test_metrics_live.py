"""/metrics scraped from real processes: two daphne web processes sharing a
PROMETHEUS_MULTIPROC_DIR and a worker cluster that runs a build."""

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from builds.models import Build
from builds.services import trigger_build
from tests.cluster import Cluster, WebServer, wait_for
from tests.factories import make_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def scrape(url):
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_scrape_reflects_a_build_on_real_workers_and_both_web_processes(project, tmp_path):
    make_pipeline(
        project,
        """
tasks:
  one: {steps: [{run: "echo one"}]}
  two: {needs: [one], steps: [{run: "echo two"}]}
""",
    )
    multiproc = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    webs = [WebServer(extra_env=multiproc), WebServer(extra_env=multiproc)]
    try:
        with Cluster(workers=2):
            build = trigger_build(user=None, project=project, pipeline="main")
            wait_for(
                lambda: Build.objects.get(id=build.id).finished_at, timeout=20, message="build"
            )
            host = frozenset({"host": socket.gethostname()}.items())
            samples = wait_for(
                lambda: (
                    (s := scrape(webs[0].url)).get(("buildsite_workers_alive", host)) == 2 and s
                ),
                timeout=15,
                message="the cluster's heartbeat",
            )
            for web, times in ((webs[0], 2), (webs[1], 3)):
                for _ in range(times):
                    assert httpx.get(f"{web.url}/no-such-page").status_code == 404
            after = scrape(webs[1].url)
    finally:
        for web in webs:
            web.stop()

    labels = frozenset({"project": "acme", "pipeline": "main", "state": "succeeded"}.items())
    assert samples[("buildsite_builds_total", labels)] == 1
    assert (
        samples[("buildsite_task_duration_seconds_count", frozenset({"project": "acme"}.items()))]
        == 2
    )
    # Each web process counted its own requests; either one's scrape adds up the files.
    not_found = frozenset({"method": "GET", "status": "404"}.items())
    assert after[("buildsite_http_requests_total", not_found)] == 5
    assert 0 <= after[("buildsite_upkeep_lag_seconds", frozenset())] < 10
