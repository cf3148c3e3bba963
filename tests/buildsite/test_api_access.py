"""Who may create projects and add members, and what anonymous callers are told."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from buildsite.models import Membership, Project
from tests.factories import add_member, api_client, make_user


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def put(client, url, body):
    return client.put(url, data=json.dumps(body), content_type="application/json")


# --- creating projects ---------------------------------------------------------------


def test_only_staff_create_projects_by_default(user):
    response = post(api_client(user), "/api/projects", {"slug": "web", "name": "Web"})
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]
    assert not Project.objects.filter(slug="web").exists()

    staff = make_user("stella", is_staff=True)
    response = post(api_client(staff), "/api/projects", {"slug": "web", "name": "Web"})
    assert response.status_code == 201 and response.json()["role"] == "maintainer"


def test_every_user_creates_projects_when_the_setting_says_all(user, settings):
    settings.BUILDSITE_PROJECT_CREATORS = "all"
    response = post(api_client(user), "/api/projects", {"slug": "web", "name": "Web"})
    assert response.status_code == 201


@pytest.mark.parametrize("creators", ["staff", "all"])
def test_a_project_scoped_token_cannot_create_projects(project, settings, creators):
    settings.BUILDSITE_PROJECT_CREATORS = creators
    boss = make_user("boss", is_staff=True, is_superuser=True)
    add_member(project, boss, "maintainer")
    scoped = api_client(boss, project=project)
    response = post(scoped, "/api/projects", {"slug": "web", "name": "Web"})
    assert response.status_code == 403
    assert "scoped" in response.json()["detail"]
    assert not Project.objects.filter(slug="web").exists()


def test_the_admin_that_make_run_creates_may_create_projects(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "pw-123456")
    call_command("ensure_admin", stdout=io.StringIO())
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    response = post(api_client(admin), "/api/projects", {"slug": "web", "name": "Web"})
    assert response.status_code == 201


# --- members -------------------------------------------------------------------------


def _refusal(client, username):
    response = put(client, "/api/projects/acme/members", {"username": username, "role": "viewer"})
    return response.status_code, response.json()["detail"].replace(username, "<name>")


def test_a_maintainer_cannot_tell_unknown_from_deactivated_users(user, project):
    make_user("gone", is_active=False)
    maintainer = api_client(user)
    assert _refusal(maintainer, "nobody") == _refusal(maintainer, "gone")
    assert _refusal(maintainer, "gone")[0] == 404
    assert not Membership.objects.filter(user__username="gone").exists()
    # A team tool must still add colleagues by username.
    make_user("bob")
    response = put(maintainer, "/api/projects/acme/members", {"username": "bob", "role": "editor"})
    assert response.status_code == 200 and response.json() == {"username": "bob", "role": "editor"}


def test_staff_are_told_why_a_user_cannot_be_added(project):
    make_user("gone", is_active=False)
    staff = api_client(make_user("stella", is_staff=True, is_superuser=True))
    unknown, deactivated = _refusal(staff, "nobody"), _refusal(staff, "gone")
    assert unknown[0] == deactivated[0] == 404
    assert "deactivated" in deactivated[1] and unknown != deactivated


def test_roles_are_checked_before_usernames_are_looked_up(user, project):
    viewer = make_user("vera")
    add_member(project, viewer, "viewer")
    as_viewer = api_client(viewer)
    assert _refusal(as_viewer, "nobody")[0] == _refusal(as_viewer, "alice")[0] == 403
    outsider = api_client(make_user("otto"))
    assert _refusal(outsider, "nobody")[0] == _refusal(outsider, "alice")[0] == 404


# --- anonymous callers ---------------------------------------------------------------


def test_anonymous_writes_get_401_not_a_csrf_403(project):
    anonymous = Client(enforce_csrf_checks=True)
    for method, url in [
        ("post", "/api/projects"),
        ("put", "/api/projects/acme/members"),
        ("post", "/api/projects/acme/cache/purge"),
        ("put", "/api/projects/acme/docs/guide"),
        ("delete", "/api/projects/acme/docs/guide"),
    ]:
        response = getattr(anonymous, method)(url, data="{}", content_type="application/json")
        assert response.status_code == 401, (method, url, response.content)
        assert "Authentication required" in response.json()["detail"]
        assert response["WWW-Authenticate"] == "Bearer"


def test_a_logged_in_browser_still_needs_the_csrf_token(user, project):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get("/api/projects").status_code == 200
    refused = browser.post(
        "/api/projects/acme/cache/purge", data="{}", content_type="application/json"
    )
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    browser.cookies["csrftoken"] = "a" * 32
    allowed = browser.post(
        "/api/projects/acme/cache/purge",
        data="{}",
        content_type="application/json",
        HTTP_X_CSRFTOKEN="a" * 32,
    )
    assert allowed.status_code == 200, allowed.content


def test_only_maintainers_remove_members_and_outsiders_learn_nothing(project, user):
    editor, viewer, outsider = make_user("ed"), make_user("vi"), make_user("out")
    add_member(project, editor, "editor")
    add_member(project, viewer, "viewer")
    url = f"/api/projects/{project.slug}/members/vi"
    assert api_client(viewer).delete(url).status_code == 403
    assert api_client(editor).delete(url).status_code == 403
    assert api_client(outsider).delete(url).status_code == 404
    assert Client().delete(url).status_code == 401
    assert Membership.objects.filter(project=project, user=viewer).exists()
    maintainer = api_client(user)
    assert maintainer.delete(url).status_code == 204
    assert not Membership.objects.filter(project=project, user=viewer).exists()
    assert maintainer.delete(url).status_code == 404  # no longer a member
    assert maintainer.delete(f"/api/projects/{project.slug}/members/nobody").status_code == 404
