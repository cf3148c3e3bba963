"""GET /metrics: figures read from the database match what happened, and who may scrape."""

import io
import socket
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from builds.models import ResourcePool
from builds.services import trigger_build
from builds.upkeep import UpkeepThread
from buildsite.heartbeats import Beater
from buildsite.models import ApiToken, ClusterHeartbeat
from buildsite.services import create_token
from buildsite.settings import metrics_allow
from prompts import services as prompts
from prompts.models import PromptRun
from tasks.models import Task
from tests.factories import api_client, finished_build, make_pipeline, make_user

PIPELINE = """
tasks:
  a: {steps: [{run: "true"}]}
  b: {steps: [{run: "true"}]}
  c: {needs: [a], steps: [{run: "true"}]}
"""
OUTSIDE = "203.0.113.5"


def scrape(client=None, **extra):
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def test_finished_builds_by_state_and_their_duration_histogram(project):
    make_pipeline(project, PIPELINE)
    start = timezone.now() - timedelta(hours=3)
    for state, seconds in [("succeeded", 15), ("succeeded", 100), ("failed", 4000)]:
        finished_build(project, state=state, created_at=start, seconds=seconds)
    trigger_build(user=None, project=project, pipeline="main")  # not finished: not counted

    samples = scrape()

    labels = {"project": "acme", "pipeline": "main"}
    assert value(samples, "buildsite_builds_total", state="succeeded", **labels) == 2
    assert value(samples, "buildsite_builds_total", state="failed", **labels) == 1
    assert value(samples, "buildsite_builds_total", state="cancelled", **labels) is None
    hist = "buildsite_build_duration_seconds"
    assert value(samples, f"{hist}_count", **labels) == 3
    assert value(samples, f"{hist}_sum", **labels) == pytest.approx(4115, abs=0.01)
    # 15 s exactly is in the le="15.0" bucket (bounds are inclusive).
    expected = {"5.0": 0, "15.0": 1, "60.0": 1, "120.0": 2, "3600.0": 2, "7200.0": 3, "+Inf": 3}
    for le, count in expected.items():
        assert value(samples, f"{hist}_bucket", le=le, **labels) == count, le


def test_task_durations_and_cache_hits_and_misses(project):
    make_pipeline(project, PIPELINE)
    start = timezone.now() - timedelta(hours=1)
    one = finished_build(
        project,
        state="failed",
        created_at=start,
        seconds=60,
        tasks={"a": ("succeeded", 1, 2.0), "b": ("failed", 1, 40.0), "c": ("cancelled", 0, None)},
    )
    two = finished_build(
        project,
        state="succeeded",
        created_at=start,
        seconds=60,
        tasks={"a": ("cached", 0, None), "b": ("succeeded", 1, 0.2), "c": ("cached", 0, None)},
    )
    # a and b are cacheable (they have keys); c of build two was reused by a re-run.
    Task.objects.filter(name__in=["a", "b"]).update(cache_key="k" * 64)
    Task.objects.filter(build=two, name="c").update(reused_from=one)

    samples = scrape()

    hist = "buildsite_task_duration_seconds"
    assert value(samples, f"{hist}_count", project="acme") == 3  # cancelled/cached: no run
    assert value(samples, f"{hist}_sum", project="acme") == pytest.approx(42.2, abs=0.01)
    for le, count in {"0.5": 1, "1.0": 1, "2.5": 2, "30.0": 2, "60.0": 3, "+Inf": 3}.items():
        assert value(samples, f"{hist}_bucket", le=le, project="acme") == count, le
    assert value(samples, "buildsite_cache_hits_total", project="acme") == 1  # two/a
    assert value(samples, "buildsite_cache_misses_total", project="acme") == 3  # ran with a key


def test_queue_depth_oldest_wait_and_running_tasks(project):
    make_pipeline(project, PIPELINE)
    build = trigger_build(user=None, project=project, pipeline="main")
    now = timezone.now()
    tasks = Task.objects.filter(build=build)
    tasks.filter(name="a").update(state="queued", queued_at=now - timedelta(seconds=90))
    tasks.filter(name="b").update(state="ready", ready_at=now - timedelta(seconds=30))
    other = trigger_build(user=None, project=project, pipeline="main")
    Task.objects.filter(build=other, name="a").update(state="running")
    Task.objects.filter(build=other, name="b").update(
        state="queued", queued_at=now - timedelta(seconds=10)
    )

    samples = scrape()

    assert value(samples, "buildsite_queue_depth", project="acme", state="queued") == 2
    assert value(samples, "buildsite_queue_depth", project="acme", state="ready") == 1
    wait = "buildsite_queue_wait_seconds"
    assert value(samples, wait, project="acme", state="queued") == pytest.approx(90, abs=5)
    assert value(samples, wait, project="acme", state="ready") == pytest.approx(30, abs=5)
    assert value(samples, "buildsite_tasks_running", project="acme") == 1


def test_pools_in_use_against_capacity(project):
    ResourcePool.objects.create(project=project, name="cpu", capacity=4)
    ResourcePool.objects.create(project=project, name="gpu", capacity=1)
    make_pipeline(
        project,
        """
tasks:
  one: {resources: {cpu: 1}, steps: [{run: "true"}]}
  two: {resources: {cpu: 2, gpu: 1}, steps: [{run: "true"}]}
  three: {resources: {cpu: 1}, steps: [{run: "true"}]}
""",
    )
    build = trigger_build(user=None, project=project, pipeline="main")
    Task.objects.filter(build=build, name="one").update(state="running")
    Task.objects.filter(build=build, name="two").update(state="queued")
    Task.objects.filter(build=build, name="three").update(state="ready")  # holds nothing

    samples = scrape()

    assert value(samples, "buildsite_pool_capacity", project="acme", pool="cpu") == 4
    assert value(samples, "buildsite_pool_in_use", project="acme", pool="cpu") == 3
    assert value(samples, "buildsite_pool_capacity", project="acme", pool="gpu") == 1
    assert value(samples, "buildsite_pool_in_use", project="acme", pool="gpu") == 1


@pytest.mark.django_db(transaction=True)  # an upkeep round closes stale connections
def test_workers_alive_per_host_and_upkeep_lag():
    samples = scrape()
    assert value(samples, "buildsite_upkeep_lag_seconds") is None  # no round yet
    UpkeepThread(workers=3).round()  # takes the lease, ticks, beats
    ClusterHeartbeat.objects.create(
        holder="gone:1:x", host="gone", workers=2, seen_at=timezone.now() - timedelta(minutes=1)
    )
    ClusterHeartbeat.objects.create(
        holder="ticker:1:x", host=socket.gethostname(), workers=0, seen_at=timezone.now()
    )

    samples = scrape()

    assert value(samples, "buildsite_workers_alive", host=socket.gethostname()) == 3
    assert value(samples, "buildsite_workers_alive", host="gone") == 0
    assert 0 <= value(samples, "buildsite_upkeep_lag_seconds") < 2
    ClusterHeartbeat.objects.update(upkeep_at=timezone.now() - timedelta(seconds=120))
    assert value(scrape(), "buildsite_upkeep_lag_seconds") == pytest.approx(120, abs=5)


def test_heartbeat_writes_at_most_every_few_seconds_and_keeps_upkeep_news(db):
    beater = Beater(holder="h:1:a", workers=2)
    assert beater.beat(upkeep_done=False)
    assert ClusterHeartbeat.objects.get().upkeep_at is None
    assert not beater.beat(upkeep_done=True)  # too soon: remembered for the next write
    beater.last -= 10
    assert beater.beat(upkeep_done=False)
    assert ClusterHeartbeat.objects.get().upkeep_at is not None


def test_prompt_runs_tokens_and_cost(project, user):
    version = prompts.create_prompt(
        user=user,
        project=project,
        name="notes",
        body={"messages": [{"role": "user", "content": "hi"}]},
    )
    for status, tokens_in, tokens_out, cost in [
        ("succeeded", 100, 20, "0.5"),
        ("succeeded", 0, 0, "0"),  # a cache hit
        ("failed", 10, 0, "0.01"),
        ("running", 999, 999, None),  # not ended: not counted yet
    ]:
        PromptRun.objects.create(
            project=project,
            version=version,
            ref="notes",
            provider="p",
            provider_kind="offline",
            status=status,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=None if cost is None else Decimal(cost),
        )

    samples = scrape()

    runs = "buildsite_prompt_runs_total"
    assert value(samples, runs, project="acme", status="succeeded") == 2
    assert value(samples, runs, project="acme", status="failed") == 1
    assert value(samples, runs, project="acme", status="running") is None
    tokens = "buildsite_prompt_tokens_total"
    assert value(samples, tokens, project="acme", direction="in") == 110
    assert value(samples, tokens, project="acme", direction="out") == 20
    assert value(samples, "buildsite_prompt_cost_usd_total", project="acme") == pytest.approx(0.51)


def test_http_requests_are_counted_by_method_and_status(db):
    name = "buildsite_http_requests_total"
    before = scrape()
    client = Client()
    for _ in range(3):
        client.get("/no-such-page")
    client.post("/metrics")  # 405
    after = scrape()

    def delta(**labels):
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert delta(method="GET", status="404") == 3
    assert delta(method="POST", status="405") == 1
    assert delta(method="GET", status="200") == 1  # the first scrape


def test_scrape_queries_do_not_grow_with_builds_and_skip_the_event_table(project):
    make_pipeline(project, PIPELINE)
    start = timezone.now() - timedelta(hours=1)
    finished_build(project, state="succeeded", created_at=start, seconds=5)
    with CaptureQueriesContext(connection) as few:
        scrape()
    for _ in range(10):
        finished_build(project, state="failed", created_at=start, seconds=5)
        trigger_build(user=None, project=project, pipeline="main")
    with CaptureQueriesContext(connection) as many:
        scrape()
    assert len(many.captured_queries) == len(few.captured_queries)
    assert not [q for q in many.captured_queries if "tasks_event" in q["sql"]]


# --- who may scrape ------------------------------------------------------------------


def metrics_token(user):
    return create_token(user=user, scopes=["metrics"])[1]


def test_loopback_scrapes_without_a_token(db):
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200


def test_other_addresses_need_a_metrics_token(user):
    response = Client(REMOTE_ADDR=OUTSIDE).get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "metrics scope" in response.content.decode()

    auth = {"HTTP_AUTHORIZATION": f"Bearer {metrics_token(make_user())}"}
    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics", **auth).status_code == 200

    normal = {"HTTP_AUTHORIZATION": f"Bearer {create_token(user=user)[1]}"}
    response = Client(REMOTE_ADDR=OUTSIDE).get("/metrics", **normal)
    assert response.status_code == 403
    assert "no metrics scope" in response.content.decode()
    bogus = {"HTTP_AUTHORIZATION": "Bearer bst_nonsense"}
    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics", **bogus).status_code == 403


def test_a_metrics_token_is_no_api_token(user, project):
    raw = metrics_token(user)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/projects").status_code == 401
    assert client.get(f"/api/projects/{project.slug}").status_code == 401
    assert api_client(user).get("/api/projects").status_code == 200  # normal tokens work


def test_forwarded_for_counts_only_when_the_setting_says_so(db, settings):
    spoofed = {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}
    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics", **spoofed).status_code == 401
    settings.BUILDSITE_METRICS_TRUST_FORWARDED = True
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    # The proxy appends the address it saw: the last entry is the one to believe.
    appended = {"HTTP_X_FORWARDED_FOR": f"127.0.0.1, {OUTSIDE}"}
    assert proxy.get("/metrics", **appended).status_code == 401
    assert proxy.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "HTTP_X_FORWARDED_FOR",
        "HTTP_FORWARDED",
        "HTTP_X_REAL_IP",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_HOST",
    ],
)
def test_a_proxy_on_this_host_does_not_make_every_client_loopback(db, header):
    # nginx on the same host: the peer is 127.0.0.1 whoever the client is.
    proxied = Client(REMOTE_ADDR="127.0.0.1")
    assert proxied.get("/metrics", **{header: OUTSIDE}).status_code == 401


def test_allow_list_comes_from_the_setting(db, settings):
    settings.BUILDSITE_METRICS_ALLOW = metrics_allow("10.0.0.0/8, 192.0.2.7")
    assert Client(REMOTE_ADDR="10.20.30.40").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401
    with pytest.raises(SystemExit, match="BUILDSITE_METRICS_ALLOW entry 'localhost'"):
        metrics_allow("127.0.0.1,localhost")


def test_create_token_command_with_the_metrics_scope(user, project):
    out = io.StringIO()
    call_command("create_token", "alice", "--scope", "metrics", stdout=out, stderr=io.StringIO())
    token = ApiToken.objects.get()
    assert token.scopes == ["metrics"]
    assert token.digest == ApiToken.digest_of(out.getvalue().strip())
    with pytest.raises(CommandError, match="Unknown scope 'admin'"):
        call_command("create_token", "alice", "--scope", "admin", stderr=io.StringIO())
    with pytest.raises(CommandError, match="cannot be limited to a project"):
        call_command(
            "create_token", "alice", "--scope", "metrics", "--project", "acme", stderr=io.StringIO()
        )
    assert ApiToken.objects.count() == 1
