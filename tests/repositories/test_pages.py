"""The repositories page: maintainers register and manage, editors build, viewers look."""

import pytest
from django.test import Client

from builds.models import Build
from buildsite.roles import Role
from repositories.models import Repository
from tests.factories import add_member, make_user
from tests.repositories.conftest import PIPELINE

pytestmark = pytest.mark.usefixtures("inline_workers")


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_a_maintainer_registers_and_sees_the_secret_once(user, project, forge):
    client = signed_in(user)
    page = client.post(
        "/p/acme/repositories/",
        {"action": "register", "name": "app", "url": forge.url("app"), "branches": "main dev/*"},
    )
    assert page.status_code == 200
    html = page.content.decode()
    repository = Repository.objects.get()
    assert repository.branches == ["main", "dev/*"]
    assert f"/api/hooks/{repository.id}" in html
    secret = html.split("data-secret>")[1].split("<")[0]
    assert len(secret) == 64
    again = client.get("/p/acme/repositories/").content.decode()
    assert secret not in again and f"/api/hooks/{repository.id}" in again


def test_bad_input_is_shown_not_saved(user, project, repo_settings):
    page = signed_in(user).post(
        "/p/acme/repositories/", {"action": "register", "name": "App!", "url": "ftp://x"}
    )
    assert page.status_code == 422
    assert "use lower-case letters" in page.content.decode()
    assert not Repository.objects.exists()


def test_roles_on_the_page(user, project, forge):
    forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "x\n"}, "change")
    forge.copy.push()
    signed_in(user).post(
        "/p/acme/repositories/", {"action": "register", "name": "app", "url": forge.url("app")}
    )
    repository = Repository.objects.get()
    viewer, editor = make_user("viewer"), make_user("editor")
    add_member(project, viewer, Role.VIEWER)
    add_member(project, editor, Role.EDITOR)
    as_viewer = signed_in(viewer)
    listing = as_viewer.get("/p/acme/repositories/").content.decode()
    assert "app" in listing and 'value="register"' not in listing and 'value="build"' not in listing
    for action in ("build", "rotate", "delete"):
        assert (
            as_viewer.post(
                "/p/acme/repositories/", {"action": action, "id": repository.id}
            ).status_code
            == 403
        )
    as_editor = signed_in(editor)
    assert (
        as_editor.post(
            "/p/acme/repositories/", {"action": "delete", "id": repository.id}
        ).status_code
        == 403
    )
    built = as_editor.post("/p/acme/repositories/", {"action": "build", "id": repository.id})
    build = Build.objects.get()
    assert built.status_code == 302 and built["Location"] == f"/builds/{build.id}/"
    assert build.state == "succeeded" and build.triggered_by == editor
    page = as_viewer.get(f"/builds/{build.id}/").content.decode()
    assert build.commit_sha[:12] in page and "Ada Lovelace" in page and "change" in page
    assert Client().get("/p/acme/repositories/").status_code in (302, 404)


def test_pipeline_badges_follow_the_latest_build_and_are_public_only_when_allowed(
    user, project, forge
):
    from tests.factories import api_client

    forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "x\n"})
    forge.copy.push()
    client = signed_in(user)
    client.post(
        "/p/acme/repositories/", {"action": "register", "name": "app", "url": forge.url("app")}
    )
    badge = client.get("/p/acme/pipelines/app/badge.svg")
    assert badge["Content-Type"] == "image/svg+xml" and "no builds" in badge.content.decode()
    client.post("/p/acme/repositories/", {"action": "build", "id": Repository.objects.get().id})
    assert "passing" in client.get("/p/acme/pipelines/app/badge.svg").content.decode()
    forge.copy.commit({".buildsite.yml": PIPELINE.replace("cat hello.txt", "exit 1")})
    forge.copy.push("broken")
    client.post(
        "/p/acme/repositories/",
        {"action": "build", "id": Repository.objects.get().id, "ref": "broken"},
    )
    assert "failing" in client.get("/p/acme/pipelines/app/badge.svg").content.decode()
    on_main = client.get("/p/acme/pipelines/app/badge.svg?branch=main").content.decode()
    assert "passing" in on_main
    anonymous = Client()
    assert anonymous.get("/p/acme/pipelines/app/badge.svg").status_code == 404
    viewer = make_user("viewer")
    add_member(project, viewer, Role.VIEWER)
    patch = api_client(viewer).patch(
        "/api/projects/acme", {"public_badges": True}, content_type="application/json"
    )
    assert patch.status_code == 403
    patch = api_client(user).patch(
        "/api/projects/acme", {"public_badges": True}, content_type="application/json"
    )
    assert patch.status_code == 200 and patch.json()["public_badges"] is True
    assert "failing" in anonymous.get("/p/acme/pipelines/app/badge.svg").content.decode()
