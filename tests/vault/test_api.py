"""The secrets API, page and admin: who may do what, values never shown back, short
values refused, values encrypted at rest."""

import json

import pytest
from django.test import Client

from buildsite import crypto
from buildsite.roles import Role
from tests.factories import add_member, api_client, make_user
from vault.models import Secret
from vault.selectors import secret_value

pytestmark = pytest.mark.django_db

VALUE = "s3cr3t-value-do-not-show"


def put(client, path, body):
    return client.put(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def clients(user, project):
    """API clients by role in `acme` (alice, the fixture user, maintains it)."""
    editor, viewer, outsider = make_user("ed"), make_user("vi"), make_user("out")
    add_member(project, editor, Role.EDITOR)
    add_member(project, viewer, Role.VIEWER)
    return {
        "maintainer": api_client(user),
        "editor": api_client(editor),
        "viewer": api_client(viewer),
        "outsider": api_client(outsider),
        "anonymous": Client(),
    }


URL = "/api/projects/acme/secrets"


def test_a_maintainer_sets_lists_replaces_and_deletes(clients):
    alice = clients["maintainer"]
    r = put(alice, f"{URL}/PYPI_TOKEN", {"value": VALUE})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"name", "version", "set_by", "set_at"}
    assert body["name"] == "PYPI_TOKEN" and body["version"] == 1 and body["set_by"] == "alice"
    r = put(alice, f"{URL}/PYPI_TOKEN", {"value": VALUE + "-2"})
    assert r.json()["version"] == 2
    listed = alice.get(URL)
    assert listed.status_code == 200
    assert [(s["name"], s["version"]) for s in listed.json()] == [("PYPI_TOKEN", 2)]
    assert VALUE not in listed.content.decode()
    assert alice.delete(f"{URL}/PYPI_TOKEN").status_code == 204
    assert alice.get(URL).json() == []
    assert alice.delete(f"{URL}/PYPI_TOKEN").status_code == 404


@pytest.mark.parametrize(
    ("role", "put_status", "get_status", "delete_status"),
    [
        ("maintainer", 200, 200, 204),
        ("editor", 403, 200, 403),
        ("viewer", 403, 403, 403),
        ("outsider", 404, 404, 404),
        ("anonymous", 401, 401, 401),
    ],
)
def test_roles_are_checked_on_every_endpoint(clients, role, put_status, get_status, delete_status):
    put(clients["maintainer"], f"{URL}/DEPLOY_KEY", {"value": VALUE})
    client = clients[role]
    answers = [
        put(client, f"{URL}/NEW_ONE", {"value": VALUE + "-new"}),
        client.get(URL),
        client.delete(f"{URL}/DEPLOY_KEY"),
    ]
    assert [a.status_code for a in answers] == [put_status, get_status, delete_status]
    for answer in answers:
        assert VALUE not in answer.content.decode()
        if answer.status_code >= 400:
            assert "detail" in answer.json()
    names = set(Secret.objects.values_list("name", flat=True))
    assert names == ({"NEW_ONE"} if role == "maintainer" else {"DEPLOY_KEY"})


def test_short_long_and_misnamed_values_are_refused_with_422(clients):
    alice = clients["maintainer"]
    r = put(alice, f"{URL}/SHORT", {"value": "12345"})
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == "value" and "at least 6 characters" in problem["msg"]
    assert put(alice, f"{URL}/SPACES", {"value": "   abc   "}).status_code == 422
    too_long = put(alice, f"{URL}/HUGE", {"value": "x" * (64 * 1024 + 1)})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == "value"
    bad = put(alice, f"{URL}/lower_case", {"value": VALUE})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == "name"
    assert put(alice, f"{URL}/NO_VALUE", {}).status_code == 422
    assert Secret.objects.count() == 0


def test_an_ssh_key_fits_and_keeps_its_lines(clients, project):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + ("A" * 70 + "\n") * 40 + "-----END-----\n"
    assert put(clients["maintainer"], f"{URL}/SSH_KEY", {"value": key}).status_code == 200
    assert secret_value(project=project, name="SSH_KEY") == key


def test_values_are_encrypted_at_rest(clients, project, monkeypatch):
    put(clients["maintainer"], f"{URL}/API_TOKEN", {"value": VALUE})
    stored = Secret.objects.get(name="API_TOKEN").value_encrypted
    assert VALUE not in stored
    assert crypto.decrypt(stored) == VALUE
    monkeypatch.setenv("BUILDSITE_ENCRYPTION_KEY", "another passphrase")
    with pytest.raises(crypto.SecretUnreadable, match="cannot be decrypted"):
        secret_value(project=project, name="API_TOKEN")


def test_the_schema_lists_the_endpoints_with_the_name_pattern(clients):
    schema = clients["maintainer"].get("/api/openapi.json").json()
    operation = schema["paths"]["/api/projects/{slug}/secrets/{name}"]["put"]
    (name,) = [p for p in operation["parameters"] if p["name"] == "name"]
    assert name["schema"]["pattern"] == "^[A-Z_][A-Z0-9_]{0,99}$"


# --- the page ------------------------------------------------------------------------------
def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_page_sets_lists_and_deletes_for_maintainers(user, project):
    alice = browser(user)
    page = alice.get("/p/acme/secrets/")
    assert page.status_code == 200 and "Set a secret" in page.content.decode()
    r = alice.post("/p/acme/secrets/", {"action": "set", "name": "NPM_TOKEN", "value": VALUE})
    assert r.status_code == 302 and r["Location"] == "/p/acme/secrets/"
    page = alice.get("/p/acme/secrets/").content.decode()
    assert "NPM_TOKEN" in page and VALUE not in page
    refused = alice.post("/p/acme/secrets/", {"action": "set", "name": "NPM_TOKEN", "value": "abc"})
    assert refused.status_code == 422 and "at least 6 characters" in refused.content.decode()
    assert "abc</textarea>" not in refused.content.decode()  # not put back into the form
    alice.post("/p/acme/secrets/", {"action": "delete", "name": "NPM_TOKEN"})
    assert not Secret.objects.exists()


def test_the_project_nav_links_the_page_for_editors_only(user, project):
    assert 'href="/p/acme/secrets/"' in browser(user).get("/p/acme/").content.decode()
    viewer = make_user("vi")
    add_member(project, viewer, Role.VIEWER)
    assert 'href="/p/acme/secrets/"' not in browser(viewer).get("/p/acme/").content.decode()


def test_the_page_is_read_only_for_editors_and_closed_to_viewers(user, project):
    put(api_client(user), f"{URL}/NPM_TOKEN", {"value": VALUE})
    editor, viewer = make_user("ed"), make_user("vi")
    add_member(project, editor, Role.EDITOR)
    add_member(project, viewer, Role.VIEWER)
    page = browser(editor).get("/p/acme/secrets/")
    assert page.status_code == 200
    assert "NPM_TOKEN" in page.content.decode() and "Set a secret" not in page.content.decode()
    post = browser(editor).post("/p/acme/secrets/", {"action": "delete", "name": "NPM_TOKEN"})
    assert post.status_code == 403 and Secret.objects.count() == 1
    assert browser(viewer).get("/p/acme/secrets/").status_code == 403
    assert browser(make_user("out")).get("/p/acme/secrets/").status_code == 404
    assert Client().get("/p/acme/secrets/").status_code == 302  # to the login page


# --- the admin -----------------------------------------------------------------------------
def test_the_admin_writes_through_the_service_and_never_shows_values(project):
    admin_user = make_user("root", is_staff=True, is_superuser=True)
    client = browser(admin_user)
    r = client.post(
        "/admin/vault/secret/add/",
        {"project": project.id, "name": "ADMIN_SET", "value": VALUE},
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    secret = Secret.objects.get(name="ADMIN_SET")
    assert secret.version == 1 and secret.set_by == admin_user
    change = client.get(f"/admin/vault/secret/{secret.id}/change/").content.decode()
    assert VALUE not in change and secret.value_encrypted not in change
    client.post(f"/admin/vault/secret/{secret.id}/change/", {"value": VALUE + "-new"})
    assert Secret.objects.get(name="ADMIN_SET").version == 2
    short = client.post(
        "/admin/vault/secret/add/", {"project": project.id, "name": "X_Y", "value": "1"}
    )
    assert short.status_code == 200 and not Secret.objects.filter(name="X_Y").exists()
    # A form shown again after an error does not put the value back into the page.
    refused = client.post(
        "/admin/vault/secret/add/", {"project": project.id, "name": "bad name", "value": VALUE}
    )
    assert refused.status_code == 200 and "not a valid secret name" in refused.content.decode()
    assert VALUE not in refused.content.decode()
    listing = client.get("/admin/vault/secret/").content.decode()
    assert "ADMIN_SET" in listing and VALUE not in listing
    client.post(f"/admin/vault/secret/{secret.id}/delete/", {"post": "yes"})
    assert not Secret.objects.exists()
