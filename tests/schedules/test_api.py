"""/api/projects/{slug}/schedules: contract, role checks and 422s naming the field."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from schedules.models import Schedule
from tests.factories import add_member, api_client, make_pipeline, make_project, make_user

PIPELINE = "params: {who: world}\ntasks:\n  hello: {steps: [{run: 'echo {{ params.who }}'}]}\n"
URL = "/api/projects/acme/schedules"
KEYS = {
    "id",
    "pipeline",
    "repository",
    "cron",
    "timezone",
    "params",
    "ref",
    "paused",
    "next_run",
    "last_run",
    "last_build",
    "last_error",
}


def send(client: Client, method: str, url: str, body: dict | None = None):
    return getattr(client, method)(
        url, data=json.dumps(body) if body is not None else None, content_type="application/json"
    )


@pytest.fixture
def pipeline(project):
    return make_pipeline(project, PIPELINE)


@pytest.fixture
def editor(project):
    person = make_user("ed")
    add_member(project, person, "editor")
    return api_client(person)


@pytest.fixture
def viewer(project):
    person = make_user("vic")
    add_member(project, person, "viewer")
    return api_client(person)


def test_an_editor_creates_lists_pauses_resumes_and_deletes(editor, pipeline):
    response = send(
        editor,
        "post",
        URL,
        {"pipeline": "main", "cron": "*/5 * * * *", "params": {"who": "cron"}},
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert set(created) == KEYS
    assert created["pipeline"] == "main" and created["repository"] is None
    assert created["timezone"] == "UTC" and created["params"] == {"who": "cron"}
    assert created["ref"] == "" and created["paused"] is False
    assert created["last_run"] is None and created["last_build"] is None
    next_run = timezone.datetime.fromisoformat(created["next_run"])
    assert timezone.now() < next_run <= timezone.now() + timedelta(minutes=5)
    assert Schedule.objects.get().created_by.username == "ed"

    listed = editor.get(URL).json()
    assert listed == [created]

    one = f"{URL}/{created['id']}"
    paused = send(editor, "patch", one, {"paused": True})
    assert paused.status_code == 200
    assert paused.json()["paused"] is True and paused.json()["next_run"] is None
    resumed = send(editor, "patch", one, {"paused": False}).json()
    assert resumed["paused"] is False
    assert timezone.datetime.fromisoformat(resumed["next_run"]) > timezone.now()

    assert editor.delete(one).status_code == 204
    assert editor.get(URL).json() == []
    assert send(editor, "patch", one, {"paused": True}).status_code == 404
    assert editor.delete(one).status_code == 404


def test_a_repository_schedule_defaults_to_the_branch(editor, project, settings):
    from repositories.services import create_repository

    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}
    create_repository(
        user=None, project=project, name="app", url="http://127.0.0.1:9/app.git", branch="trunk"
    )
    body = {"repository": "app", "cron": "0 3 * * 1-5", "timezone": "Europe/Berlin"}
    created = send(editor, "post", URL, body).json()
    assert created["repository"] == "app" and created["pipeline"] is None
    assert created["ref"] == "trunk" and created["timezone"] == "Europe/Berlin"
    tagged = send(editor, "post", URL, {**body, "ref": "v2.0"}).json()
    assert tagged["ref"] == "v2.0"


def test_anonymous_callers_get_401(project, pipeline):
    schedule = _schedule(project)
    anonymous = Client()
    assert anonymous.get(URL).status_code == 401
    assert (
        send(anonymous, "post", URL, {"pipeline": "main", "cron": "* * * * *"}).status_code == 401
    )
    assert send(anonymous, "patch", f"{URL}/{schedule.id}", {"paused": True}).status_code == 401
    assert anonymous.delete(f"{URL}/{schedule.id}").status_code == 401


def test_viewers_list_but_do_not_change(viewer, project, pipeline):
    schedule = _schedule(project)
    assert [s["id"] for s in viewer.get(URL).json()] == [schedule.id]
    response = send(viewer, "post", URL, {"pipeline": "main", "cron": "* * * * *"})
    assert response.status_code == 403 and "editor" in response.json()["detail"]
    assert send(viewer, "patch", f"{URL}/{schedule.id}", {"paused": True}).status_code == 403
    assert viewer.delete(f"{URL}/{schedule.id}").status_code == 403
    schedule.refresh_from_db()
    assert not schedule.paused and Schedule.objects.count() == 1


def test_outsiders_and_other_projects_get_404(project, pipeline, editor):
    schedule = _schedule(project)
    outsider = api_client(make_user("out"))
    assert outsider.get(URL).status_code == 404
    assert send(outsider, "post", URL, {"pipeline": "main", "cron": "* * * * *"}).status_code == 404
    assert outsider.delete(f"{URL}/{schedule.id}").status_code == 404
    # An editor of acme cannot reach it through another project's path, nor the reverse.
    other = make_project(slug="other")
    make_pipeline(other, PIPELINE)
    theirs = _schedule(other)
    assert editor.delete(f"/api/projects/other/schedules/{schedule.id}").status_code == 404
    assert editor.delete(f"{URL}/{theirs.id}").status_code == 404
    assert Schedule.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"pipeline": "main", "cron": "every day"}, "cron", "five fields"),
        ({"pipeline": "main", "cron": "61 * * * *"}, "cron", "not a valid cron expression"),
        ({"pipeline": "main", "cron": "0 0 30 2 *"}, "cron", "never matches"),
        ({"pipeline": "main", "cron": "0 * * * *", "timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"pipeline": "nope", "cron": "0 * * * *"}, "pipeline", "no pipeline 'nope'"),
        ({"repository": "nope", "cron": "0 * * * *"}, "repository", "no repository 'nope'"),
        ({"cron": "0 * * * *"}, "pipeline", "the pipeline"),
        ({"pipeline": "main", "repository": "app", "cron": "0 * * * *"}, "repository", "not both"),
        ({"pipeline": "main", "cron": "0 * * * *", "params": {"typo": 1}}, "params", "'typo'"),
        ({"pipeline": "main", "cron": "0 * * * *", "ref": "main"}, "ref", "only repository"),
        ({"pipeline": "main"}, "cron", ""),
        ({"pipeline": "main", "cron": "0 * * * *", "params": [1]}, "params", ""),
    ],
)
def test_invalid_input_is_a_422_naming_the_field(editor, pipeline, body, field, says):
    response = send(editor, "post", URL, body)
    assert response.status_code == 422, response.content
    problems = response.json()["detail"]
    assert any(p["loc"] == field and says in p["msg"] for p in problems), problems
    assert not Schedule.objects.exists()


def test_every_problem_is_reported_at_once(editor, pipeline):
    body = {"pipeline": "nope", "cron": "* *", "timezone": "Nowhere"}
    response = send(editor, "post", URL, body)
    assert response.status_code == 422
    assert {p["loc"] for p in response.json()["detail"]} == {"pipeline", "cron", "timezone"}


def test_a_bad_ref_for_a_repository_is_a_422(editor, project, settings):
    from repositories.services import create_repository

    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}
    create_repository(user=None, project=project, name="app", url="http://127.0.0.1:9/app.git")
    body = {"repository": "app", "cron": "0 3 * * *", "ref": "--upload-pack=evil"}
    response = send(editor, "post", URL, body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == "ref"


def test_patch_needs_paused(editor, project, pipeline):
    schedule = _schedule(project)
    response = send(editor, "patch", f"{URL}/{schedule.id}", {})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == "paused"


def _schedule(project) -> Schedule:
    from schedules.services import create_schedule

    return create_schedule(user=None, project=project, pipeline="main", cron="0 * * * *")
