"""Pages: members see them, outsiders get 404, and controls follow the role."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from builds import selectors
from builds.services import trigger_build
from buildsite.roles import Role
from tasks.models import Event
from tasks.services import record_event
from tests.factories import add_member, make_pipeline, make_user, run_build

pytestmark = pytest.mark.django_db

PIPELINE = """
params: {version: "1.0"}
tasks:
  one: {steps: [{run: "echo one"}]}
  two: {needs: [one], steps: [{run: "echo two"}]}
"""


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def build(project):
    make_pipeline(project, PIPELINE)
    return trigger_build(user=None, project=project, pipeline="main")


@pytest.fixture
def viewer(project):
    user = make_user("vic")
    add_member(project, user, Role.VIEWER)
    return user


def pages(project, build):
    return [
        f"/p/{project.slug}/",
        f"/p/{project.slug}/?fragment=live",
        f"/p/{project.slug}/pipelines/",
        f"/p/{project.slug}/pipelines/main/",
        f"/p/{project.slug}/pipelines/main/diff/",
        f"/p/{project.slug}/builds/",
        f"/p/{project.slug}/builds/?state=queued&pipeline=main&triggered_by=alice",
        f"/p/{project.slug}/resources/",
        f"/builds/{build.id}/",
        f"/builds/{build.id}/tasks/one/log/?upto=0",
    ]


def test_members_see_every_page(project, build, viewer):
    for user in (project.memberships.get(role="maintainer").user, viewer):
        client = client_for(user)
        for url in pages(project, build):
            assert client.get(url).status_code == 200, url


def test_outsiders_get_404_everywhere(project, build):
    client = client_for(make_user("eve"))
    for url in pages(project, build):
        assert client.get(url).status_code == 404, url


def test_anonymous_is_sent_to_login(project, build):
    response = Client().get(f"/builds/{build.id}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_viewer_sees_no_buttons_and_the_server_refuses_them_anyway(project, build, viewer):
    client = client_for(viewer)
    page = client.get(f"/builds/{build.id}/").content.decode()
    assert "Cancel build" not in page and "Retry failed tasks" not in page
    assert 'data-action="cancel"' not in page
    pipeline = client.get(f"/p/{project.slug}/pipelines/main/").content.decode()
    assert "Save as new version" not in pipeline and "Run main" not in pipeline
    assert client.post(f"/builds/{build.id}/cancel/").status_code == 403
    assert client.post(f"/p/{project.slug}/pipelines/main/run/").status_code == 403
    save = client.post(f"/p/{project.slug}/pipelines/main/save/", {"definition": PIPELINE})
    assert save.status_code == 403
    build.refresh_from_db()
    assert build.state == "queued"


def test_editor_sees_cancel_and_can_cancel_with_fetch(project, build, user):
    client = client_for(user)
    page = client.get(f"/builds/{build.id}/").content.decode()
    assert "Cancel build" in page
    assert 'data-action="retry"' in page  # present but hidden until the build fails
    response = client.post(f"/builds/{build.id}/cancel/", HTTP_X_REQUESTED_WITH="fetch")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    again = client.post(f"/builds/{build.id}/cancel/", HTTP_X_REQUESTED_WITH="fetch")
    assert again.status_code == 409


def test_build_page_draws_the_dag_and_embeds_where_the_socket_resumes(project, build, user):
    page = client_for(user).get(f"/builds/{build.id}/").content.decode()
    assert "<svg" in page and 'data-task="one"' in page and 'data-task="two"' in page
    assert 'class="node state-ready"' in page  # colour class plus a text label:
    assert ">ready</text>" in page
    last = Event.objects.filter(build_id=build.id).order_by("-id").first().id
    assert f'"after": {last}' in page


ARTIFACTS = """
tasks:
  make:
    cache: true
    steps: [{run: "mkdir -p 'my dir' && echo hi > 'my dir/a&b.txt'"}]
    artifacts: [my dir/]
"""


def test_build_page_lists_artifacts_with_size_and_download_link(
    project, user, inline_workers, fast_engine
):
    make_pipeline(project, ARTIFACTS)
    client = client_for(user)
    for build, restored in ((run_build(project), False), (run_build(project), True)):
        assert build.state == "succeeded", build.state
        page = client.get(f"/builds/{build.id}/").content.decode()
        href = f"/api/builds/{build.id}/artifacts/make/my%20dir/a%26b.txt"
        assert f'<a href="{href}">my dir/a&amp;b.txt</a></td><td>3\xa0bytes</td>' in page
        assert ("restored from the cache</small></td>" in page) is restored
        download = client.get(href)
        assert download.status_code == 200 and b"".join(download.streaming_content) == b"hi\n"


def test_run_form_triggers_a_build_with_params(project, user):
    make_pipeline(project, PIPELINE)
    response = client_for(user).post(
        f"/p/{project.slug}/pipelines/main/run/", {"param:version": "2.5"}
    )
    assert response.status_code == 302
    build = project.builds.get()
    assert response["Location"] == f"/builds/{build.id}/"
    assert build.params["version"] == "2.5"


def test_check_endpoint_reports_problems_at_their_line(project, viewer):
    client = client_for(viewer)
    url = f"/p/{project.slug}/check-pipeline/"
    bad = "tasks:\n  a:\n    needs: [nope]\n    steps: [{run: x}]\n"
    body = client.post(url, {"definition": bad}, content_type="application/json").json()
    assert body["ok"] is False
    assert body["problems"][0]["line"] == 2 and "nope" in body["problems"][0]["msg"]
    good = client.post(url, {"definition": PIPELINE}, content_type="application/json").json()
    assert good == {"ok": True, "problems": [], "tasks": ["one", "two"]}
    junk = client.post(url, "not json", content_type="application/json")
    assert junk.status_code == 400


def test_saving_a_new_version_and_diffing_it(project, user):
    make_pipeline(project, PIPELINE)
    client = client_for(user)
    changed = PIPELINE.replace("echo two", "echo TWO")
    response = client.post(f"/p/{project.slug}/pipelines/main/save/", {"definition": changed})
    assert response.status_code == 302
    diff = client.get(f"/p/{project.slug}/pipelines/main/diff/?a=1&b=2").content.decode()
    assert "echo TWO" in diff and 'class="d-add"' in diff and 'class="d-del"' in diff
    invalid = client.post(f"/p/{project.slug}/pipelines/main/save/", {"definition": "tasks: 3"})
    assert invalid.status_code == 422
    assert "line 1" in invalid.content.decode()


def test_task_log_is_cut_at_the_event_the_page_resumes_after(project, build, user):
    task = build.tasks.get(name="one")
    first = record_event(
        project_id=project.id, type=Event.Type.LOG, task=task, data={"text": "\x1b[31mred\x1b[0m\n"}
    )
    record_event(project_id=project.id, type=Event.Type.LOG, task=task, data={"text": "later\n"})
    body = client_for(user).get(f"/builds/{build.id}/tasks/one/log/?upto={first.id}").json()
    assert body["text"] == "red\n"


def test_build_history_filters_by_who_triggered(project, user):
    make_pipeline(project, PIPELINE)
    other = make_user("bob")
    add_member(project, other, Role.EDITOR)
    mine = trigger_build(user=user, project=project, pipeline="main")
    theirs = trigger_build(user=other, project=project, pipeline="main")
    page = client_for(user).get(f"/p/{project.slug}/builds/?triggered_by=bob").content.decode()
    assert f"/builds/{theirs.id}/" in page and f"/builds/{mine.id}/" not in page


def test_dag_layout_puts_each_task_right_of_what_it_needs():
    layout = selectors.dag_layout({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    x = {n["name"]: n["x"] for n in layout["nodes"]}
    assert x["a"] < x["b"] == x["c"] < x["d"]
    assert len(layout["edges"]) == 4


T0 = timezone.now().replace(microsecond=0)


@given(
    st.lists(
        st.tuples(st.integers(0, 3600), st.integers(0, 3600), st.integers(0, 4)),
        max_size=20,
    ),
    st.integers(1, 8),
)
def test_utilization_stays_within_capacity_and_matches_busy_time(raw, capacity):
    intervals = [(T0 + timedelta(seconds=a), T0 + timedelta(seconds=a + d), n) for a, d, n in raw]
    series = selectors.utilization(
        intervals, capacity=capacity, start=T0, end=T0 + timedelta(hours=2), buckets=24
    )
    assert len(series) == 24 and all(0.0 <= u <= 1.0 for u in series)
    # Without saturation, the series integrates back to the claimed seconds.
    busy = sum(d * n for _, d, n in raw)
    if all(u < 1.0 for u in series):
        assert sum(series) * 300 * capacity == pytest.approx(busy, rel=1e-6, abs=1e-6)


def test_utilization_of_one_task_using_half_a_pool():
    series = selectors.utilization(
        [(T0, T0 + timedelta(minutes=10), 1)],
        capacity=2,
        start=T0,
        end=T0 + timedelta(minutes=20),
        buckets=2,
    )
    assert series == [0.5, 0.0]


def test_strip_ansi():
    assert selectors.strip_ansi("\x1b[1;32mok\x1b[0m \x1b]0;title\x07done") == "ok done"
