"""Pipeline health through the database: the selector, the API and the pages."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from builds import stats
from builds.services import trigger_build
from buildsite.errors import InvalidInput, NotFound
from buildsite.roles import Role
from tests.factories import (
    add_member,
    api_client,
    finished_build,
    make_pipeline,
    make_project,
    make_user,
)

pytestmark = pytest.mark.django_db

PIPELINE = """
tasks:
  compile: {retries: 2, steps: [{run: "make"}]}
  test: {needs: [compile], retries: 1, steps: [{run: "make test"}]}
"""
OTHER = "tasks:\n  only: {steps: [{run: 'true'}]}\n"


@pytest.fixture
def history(project):
    """Five finished builds of `main` in the last 30 days, with known durations and
    task runs, plus builds that must not count."""
    make_pipeline(project, PIPELINE)
    make_pipeline(project, OTHER, name="other")
    now = timezone.now()

    def ago(days):
        return now - timedelta(days=days, hours=1)

    b = {
        # test failed on commit aaa here and succeeded there in b2: it flipped
        1: finished_build(project, state="failed", created_at=ago(5), seconds=40,
                          commit_sha="aaa", tasks={"compile": ("succeeded", 1, 10),
                                                   "test": ("failed", 2, 20)}),
        2: finished_build(project, state="succeeded", created_at=ago(4), seconds=100,
                          commit_sha="aaa", tasks={"compile": ("succeeded", 1, 12),
                                                   "test": ("succeeded", 1, 50)}),
        # compile failed its first attempt, then passed
        3: finished_build(project, state="succeeded", created_at=ago(3), seconds=60,
                          commit_sha="bbb", tasks={"compile": ("succeeded", 2, 30),
                                                   "test": ("succeeded", 1, 25)}),
        # compile's first attempt was handed back by a stopped worker (max_retries 2 -> 3)
        4: finished_build(project, state="succeeded", created_at=ago(1), seconds=80,
                          commit_sha="ccc", tasks={"compile": ("succeeded", 2, 15, 3),
                                                   "test": ("succeeded", 1, 30)}),
        # cancelled while queued: counted, no duration
        5: finished_build(project, state="cancelled", created_at=ago(0), seconds=None),
    }  # fmt: skip
    # Outside the window, of another pipeline, or not finished: none of them counts.
    finished_build(project, state="failed", created_at=ago(40), seconds=5,
                   tasks={"compile": ("failed", 1, 5)})  # fmt: skip
    finished_build(project, "other", state="failed", created_at=ago(1), seconds=7,
                   commit_sha="aaa", tasks={"only": ("failed", 1, 7)})  # fmt: skip
    trigger_build(user=None, project=project, pipeline="main")
    return {k: v.id for k, v in b.items()}


def expected(history):
    return {
        "builds": 5,
        "succeeded": 3,
        "failed": 1,
        "cancelled": 1,
        "success_rate": 0.75,  # cancelled builds are left out of the rate
        "duration_p50": 60.0,  # nearest rank of 40, 60, 80, 100
        "duration_p95": 100.0,
        "slowest_tasks": [
            {"task": "test", "runs": 4, "duration_p50": 25.0, "duration_p95": 50.0},
            {"task": "compile", "runs": 4, "duration_p50": 12.0, "duration_p95": 30.0},
        ],
        "flaky_tasks": [
            {"task": "compile", "flaky_runs": 1, "builds": [history[3]],
             "reason": "passed on retry"},
            {"task": "test", "flaky_runs": 1, "builds": [history[1]],
             "reason": "flipped on the same commit"},
        ],
    }  # fmt: skip


# --- selector ------------------------------------------------------------------------------
def test_stats_of_the_window(project, history):
    report = stats.pipeline_stats(project=project, pipeline="main", days=30)
    assert {k: report[k] for k in expected(history)} == expected(history)
    assert [b["id"] for b in report["recent"]] == sorted(history.values(), reverse=True)
    assert len(report["daily"]) == 31
    assert sum(day["builds"] for day in report["daily"]) == 5


def test_a_shorter_window_counts_fewer_builds(project, history):
    report = stats.pipeline_stats(project=project, pipeline="main", days=2)
    assert (report["builds"], report["succeeded"], report["cancelled"]) == (2, 1, 1)
    assert report["duration_p50"] == report["duration_p95"] == 80.0
    assert report["flaky_tasks"] == []  # the flaky runs were 3 and 5 days ago


def test_only_the_newest_builds_of_the_window_are_read(project, history, monkeypatch):
    monkeypatch.setattr(stats, "MAX_BUILDS", 2)
    report = stats.pipeline_stats(project=project, pipeline="main", days=30)
    assert report["builds"] == 2
    assert [r["runs"] for r in report["slowest_tasks"]] == [1, 1]  # tasks of build 4 only


def test_stats_read_a_fixed_number_of_queries(project, history):
    with CaptureQueriesContext(connection) as few:
        stats.pipeline_stats(project=project, pipeline="main", days=30)
    for _ in range(3):
        finished_build(project, state="succeeded", created_at=timezone.now(), seconds=3,
                       tasks={"compile": ("succeeded", 3, 1)})  # fmt: skip
    with CaptureQueriesContext(connection) as more:
        stats.pipeline_stats(project=project, pipeline="main", days=30)
    assert len(more) == len(few) <= 4


def test_days_out_of_range_and_unknown_pipelines_are_refused(project, history):
    for days in (0, -1, 366):
        with pytest.raises(InvalidInput) as refused:
            stats.pipeline_stats(project=project, pipeline="main", days=days)
        assert refused.value.problems[0].where == "days"
    with pytest.raises(NotFound):
        stats.pipeline_stats(project=project, pipeline="nope", days=30)


def test_a_pipeline_without_builds_has_no_figures(project):
    make_pipeline(project, PIPELINE)
    report = stats.pipeline_stats(project=project, pipeline="main", days=30)
    assert report["builds"] == 0
    assert report["success_rate"] is report["duration_p50"] is report["duration_p95"] is None
    assert report["slowest_tasks"] == report["flaky_tasks"] == []


# --- API -----------------------------------------------------------------------------------
URL = "/api/projects/acme/pipelines/main/stats"


def test_api_returns_the_contract(user, history):
    response = api_client(user).get(URL + "?days=30")
    assert response.status_code == 200
    assert response.json() == expected(history)


def test_api_defaults_to_thirty_days(user, history):
    assert api_client(user).get(URL).json()["builds"] == 5


def test_api_access(project, history):
    viewer, outsider = make_user("vic"), make_user("otto")
    add_member(project, viewer, Role.VIEWER)
    assert api_client(viewer).get(URL).status_code == 200
    assert api_client(outsider).get(URL).status_code == 404
    assert Client().get(URL).status_code == 401


def test_api_refuses_bad_days_naming_the_field(user, history):
    client = api_client(user)
    for days in ("0", "366", "many"):
        response = client.get(f"{URL}?days={days}")
        assert response.status_code == 422, days
        assert "days" in str(response.json()["detail"]), days


def test_api_unknown_pipeline_is_404(user, history):
    response = api_client(user).get("/api/projects/acme/pipelines/nope/stats")
    assert response.status_code == 404


# --- pages ---------------------------------------------------------------------------------
def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pipeline_page_shows_health(user, project, history):
    html = logged_in(user).get(f"/p/{project.slug}/pipelines/main/").content.decode()
    assert "Health (30 days)" in html
    assert "75%" in html and "3 succeeded · 1 failed · 1 cancelled" in html
    assert "1 min" in html and "1 min 40 s" in html  # p50 60 s, p95 100 s
    for build_id in history.values():  # a square per finished build, linking to it
        assert f'href="/builds/{build_id}/" title="#{build_id}' in html
    assert "<polyline" in html and "<circle" in html
    assert "<td>test</td><td>4</td><td>25 s</td><td>50 s</td>" in html
    assert "<td>compile</td><td>passed on retry</td><td>1</td>" in html
    assert "<td>test</td><td>flipped on the same commit</td><td>1</td>" in html


def test_pipeline_page_without_builds(user, project):
    make_pipeline(project, PIPELINE)
    html = logged_in(user).get(f"/p/{project.slug}/pipelines/main/").content.decode()
    assert "No finished builds in the last 30 days." in html


def test_pipelines_list_shows_each_last_build(user, project, history):
    running = trigger_build(user=None, project=project, pipeline="main")
    html = logged_in(user).get(f"/p/{project.slug}/pipelines/").content.decode()
    last = stats.last_builds(project=project)
    assert last[running.pipeline_id].id == running.id
    rows = html.split("<tr>")
    main = next(r for r in rows if ">main</a>" in r)
    assert f"#{running.id}</a>" in main and "state-queued" in main and "<td>—</td>" in main
    other_row = next(r for r in rows if ">other</a>" in r)
    assert "state-failed" in other_row and "<td>7.0 s</td>" in other_row


def test_pipelines_list_query_count_does_not_grow_with_pipelines(user):
    client = logged_in(user)

    def queries_with(n):
        project = make_project(owner=user)
        for i in range(n):
            make_pipeline(project, OTHER, name=f"p{i}")
            finished_build(project, f"p{i}", state="succeeded", created_at=timezone.now(),
                           seconds=i + 1)  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            html = client.get(f"/p/{project.slug}/pipelines/").content.decode()
        assert html.count("state-succeeded") == n
        return len(queries)

    assert queries_with(6) == queries_with(2)
