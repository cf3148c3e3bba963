"""The build engine's JSON API: contract, errors and role checks."""

import json

import pytest

from tests.factories import add_member, api_client, make_pipeline, make_user, run_build

PIPELINE = (
    "params: {who: world}\ntasks:\n  hello: {steps: [{run: 'echo hello {{ params.who }}'}]}\n"
)


def post(client, url, body=None):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def client(user):
    return api_client(user)


def test_health_needs_no_auth(db):
    from django.test import Client

    response = Client().get("/api/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_requests_without_credentials_are_refused(db):
    from django.test import Client

    response = Client().get("/api/projects")
    assert response.status_code == 401
    bad = Client(HTTP_AUTHORIZATION="Bearer bst_not-a-token").get("/api/projects")
    assert bad.status_code == 401


def test_create_and_list_projects(client, user):
    user.is_staff = True  # only staff create projects by default (BUILDSITE_PROJECT_CREATORS)
    user.save(update_fields=["is_staff"])
    response = post(client, "/api/projects", {"slug": "web", "name": "Web"})
    assert response.status_code == 201
    assert response.json() == {
        "slug": "web",
        "name": "Web",
        "role": "maintainer",
        "public_badges": False,
    }
    assert [p["slug"] for p in client.get("/api/projects").json()] == ["web"]
    assert post(client, "/api/projects", {"slug": "web", "name": "Again"}).status_code == 409
    bad = post(client, "/api/projects", {"slug": "Not A Slug", "name": "x"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == "slug"


def test_malformed_body_is_a_422_not_a_500(client, project):
    response = client.post(
        "/api/projects/acme/pipelines", data="{not json", content_type="application/json"
    )
    assert response.status_code in (400, 422)
    assert post(client, "/api/projects/acme/pipelines", {"name": "x"}).status_code == 422


def test_pipeline_versions_and_validation_errors(client, project):
    response = post(
        client, "/api/projects/acme/pipelines", {"name": "hello", "definition": PIPELINE}
    )
    assert response.status_code == 201 and response.json() == {"name": "hello", "version": 1}
    changed = PIPELINE.replace("hello {{", "hi {{")
    assert (
        post(
            client, "/api/projects/acme/pipelines", {"name": "hello", "definition": changed}
        ).json()["version"]
        == 2
    )
    detail = client.get("/api/projects/acme/pipelines/hello?version=1").json()
    assert detail["definition"] == PIPELINE and detail["versions"] == [1, 2]
    cycle = "tasks:\n  a: {needs: [b]}\n  b: {needs: [a]}\n"
    bad = post(client, "/api/projects/acme/pipelines", {"name": "hello", "definition": cycle})
    assert bad.status_code == 422
    (problem,) = bad.json()["detail"]
    assert "cycle" in problem["msg"] and problem["line"] == 2 and problem["loc"] == "tasks.a"


def test_build_lifecycle_over_the_api(client, project, inline_workers, fast_engine):
    make_pipeline(project, PIPELINE, name="hello")
    response = post(
        client, "/api/projects/acme/builds", {"pipeline": "hello", "params": {"who": "you"}}
    )
    assert response.status_code == 201
    build = response.json()
    assert set(build) >= {"id", "state", "tasks"}
    detail = client.get(f"/api/builds/{build['id']}").json()
    assert detail["state"] == "succeeded"
    (task,) = detail["tasks"]
    assert task["name"] == "hello" and task["state"] == "succeeded" and task["attempts"] == 1
    assert task["outputs"]["stdout_tail"] == "hello you\n"
    assert task["started_at"] and task["finished_at"]
    log = client.get(f"/api/builds/{build['id']}/tasks/hello/log")
    assert log["Content-Type"].startswith("text/plain") and "hello you" in log.content.decode()
    whole = log.content.decode()
    tail = client.get(f"/api/builds/{build['id']}/tasks/hello/log?offset=3").content.decode()
    assert tail == whole[3:]
    beyond = client.get(f"/api/builds/{build['id']}/tasks/hello/log?offset=9223372036854775807")
    assert beyond.status_code == 200 and beyond.content == b""
    events = client.get(f"/api/builds/{build['id']}/events?after=0").json()["events"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and events[-1]["type"] == "build.state"
    later = client.get(f"/api/builds/{build['id']}/events?after={ids[2]}").json()["events"]
    assert [e["id"] for e in later] == ids[3:]
    assert post(client, f"/api/builds/{build['id']}/cancel").status_code == 409
    listed = client.get("/api/projects/acme/builds?state=succeeded").json()
    assert [b["id"] for b in listed] == [build["id"]]


def test_unknown_params_and_pipelines_are_client_errors(client, project):
    make_pipeline(project, PIPELINE, name="hello")
    bad = post(client, "/api/projects/acme/builds", {"pipeline": "hello", "params": {"whom": 1}})
    assert bad.status_code == 422 and "whom" in bad.json()["detail"][0]["msg"]
    assert post(client, "/api/projects/acme/builds", {"pipeline": "nope"}).status_code == 404


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_retry_reruns_failed_and_downstream(client, project, inline_workers, fast_engine, tmp_path):
    flag = tmp_path / "fixed"
    make_pipeline(
        project,
        f"""
tasks:
  ok: {{steps: [{{run: "echo ok"}}]}}
  flaky: {{needs: [ok], steps: [{{run: "test -f {flag}"}}]}}
  after: {{needs: [flaky], steps: [{{run: "echo after"}}]}}
""",
    )
    build = run_build(project)
    assert build.state == "failed"
    flag.write_text("yes")
    response = post(client, f"/api/builds/{build.id}/retry")
    assert response.status_code == 200
    detail = client.get(f"/api/builds/{build.id}").json()
    assert detail["state"] == "succeeded"
    states = {t["name"]: (t["state"], t["attempts"]) for t in detail["tasks"]}
    assert states == {"ok": ("succeeded", 1), "flaky": ("succeeded", 1), "after": ("succeeded", 1)}
    assert post(client, f"/api/builds/{build.id}/retry").status_code == 409


def test_resources_and_cache_purge(client, project):
    response = post(client, "/api/projects/acme/resources", {"name": "cpu", "capacity": 3})
    assert response.status_code == 201
    assert client.get("/api/projects/acme/resources").json() == [
        {"name": "cpu", "capacity": 3, "in_use": 0, "busy_seconds": 0.0}
    ]
    assert post(client, "/api/projects/acme/cache/purge").json() == {"deleted": 0}


def test_roles_are_checked_on_every_call(project, inline_workers, fast_engine):
    make_pipeline(project, PIPELINE, name="hello")
    build = run_build(project, "hello")
    viewer, outsider = make_user("vera"), make_user("otto")
    add_member(project, viewer, "viewer")
    as_viewer, as_outsider = api_client(viewer), api_client(outsider)
    assert as_viewer.get(f"/api/builds/{build.id}").status_code == 200
    assert as_viewer.get("/api/projects/acme/pipelines").status_code == 200
    assert post(as_viewer, "/api/projects/acme/builds", {"pipeline": "hello"}).status_code == 403
    assert post(as_viewer, f"/api/builds/{build.id}/retry").status_code == 403
    assert (
        post(as_viewer, "/api/projects/acme/resources", {"name": "cpu", "capacity": 1}).status_code
        == 403
    )
    assert post(as_viewer, "/api/projects/acme/cache/purge").status_code == 403
    for url in [
        f"/api/builds/{build.id}",
        f"/api/builds/{build.id}/events",
        f"/api/builds/{build.id}/tasks/hello/log",
        "/api/projects/acme/pipelines",
    ]:
        assert as_outsider.get(url).status_code == 404, url
    assert as_outsider.get("/api/projects").json() == []


def test_a_token_scoped_to_one_project_sees_only_that_project(user, project):
    from tests.factories import make_project

    make_project(owner=user, slug="other")
    scoped = api_client(user, project=project)
    assert [p["slug"] for p in scoped.get("/api/projects").json()] == ["acme"]
    assert scoped.get("/api/projects/other/pipelines").status_code == 404


def test_openapi_schema_is_served(client):
    schema = client.get("/api/openapi.json").json()
    assert "/api/projects/{slug}/builds" in schema["paths"]
    assert client.get("/api/docs").status_code == 200
