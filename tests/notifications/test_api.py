"""The notifications API and page: maintainers only, the secret never shown back,
every bad field named in a 422, and the audit log written."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from audit.models import AuditEntry
from buildsite import crypto
from buildsite.roles import Role
from notifications.models import Delivery, NotificationTarget
from tests.factories import add_member, api_client, make_user

URL = "/api/projects/acme/notifications"
HOOK = "https://hooks.example.com/buildsite?token=abc123"
SECRET = "sign-with-this-secret"


def send(client, method, path, body=None):
    return getattr(client, method)(path, json.dumps(body or {}), content_type="application/json")


def create(client, **fields):
    body = {"name": "ci", "kind": "webhook", "url": HOOK, "events": ["build.failed"], **fields}
    return send(client, "post", URL, body)


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch):
    """hooks.example.com resolves to a public address without asking DNS."""
    from prompts import netguard

    real = netguard.resolve
    monkeypatch.setattr(
        netguard,
        "resolve",
        lambda host, port: ["93.184.216.34"] if host.endswith("example.com") else real(host, port),
    )


@pytest.fixture
def clients(user, project):
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


@pytest.mark.django_db
def test_a_maintainer_creates_lists_updates_and_deletes(clients):
    alice = clients["maintainer"]
    r = create(alice, secret=SECRET, pipelines=["main"], branches=["main", "release/*"])
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["has_secret"] is True and "secret" not in body
    assert body["url"] == "https://hooks.example.com/buildsite?…"  # the token stays hidden
    assert body["events"] == ["build.failed"] and body["branches"] == ["main", "release/*"]
    target = NotificationTarget.objects.get()
    assert target.url == HOOK and crypto.decrypt(target.secret_encrypted) == SECRET
    assert SECRET not in target.secret_encrypted

    listed = alice.get(URL)
    assert [t["name"] for t in listed.json()] == ["ci"]
    patch = send(alice, "patch", f"{URL}/{target.id}", {"events": ["build.fixed"], "secret": ""})
    assert patch.status_code == 200
    assert patch.json()["events"] == ["build.fixed"] and patch.json()["has_secret"] is False
    assert patch.json()["pipelines"] == ["main"]  # not given: kept
    assert alice.get(f"{URL}/{target.id}").json()["events"] == ["build.fixed"]
    assert alice.delete(f"{URL}/{target.id}").status_code == 204
    assert alice.get(f"{URL}/{target.id}").status_code == 404

    actions = list(AuditEntry.objects.order_by("id").values_list("action", "detail"))
    assert [a for a, _ in actions if a.startswith("notification.")] == [
        "notification.create",
        "notification.update",
        "notification.delete",
    ]
    for _, detail in actions:
        assert SECRET not in detail and "abc123" not in detail


@pytest.mark.django_db
def test_slack_urls_are_not_shown_back(clients):
    r = create(
        clients["maintainer"], kind="slack", url="https://hooks.example.com/services/T/B/XYZ"
    )
    assert r.status_code == 201
    assert r.json()["url"] == "https://hooks.example.com/…"


@pytest.mark.parametrize(
    ("role", "write", "read"),
    [
        ("maintainer", (201, 200, 202, 202, 204), 200),
        ("editor", (403,) * 5, 403),
        ("viewer", (403,) * 5, 403),
        ("outsider", (404,) * 5, 404),
        ("anonymous", (401,) * 5, 401),
    ],
)
@pytest.mark.django_db
def test_roles_are_checked_on_every_endpoint(clients, role, write, read):
    alice = clients["maintainer"]
    target = create(alice, name="existing", secret=SECRET).json()
    done = Delivery.objects.create(
        target_id=target["id"], uid="d-1", event_name="build.failed", payload={}, state="failed"
    )
    client = clients[role]
    base = f"{URL}/{target['id']}"
    reads = [client.get(URL), client.get(base), client.get(f"{base}/deliveries")]
    writes = [
        create(client, name="new-one"),
        send(client, "patch", base, {"enabled": False}),
        send(client, "post", f"{base}/test"),
        send(client, "post", f"{base}/deliveries/{done.id}/redeliver"),
        client.delete(base),
    ]
    assert tuple(a.status_code for a in writes) == write
    assert {a.status_code for a in reads} == {read}
    for answer in writes + reads:
        assert SECRET not in answer.content.decode()
        assert "abc123" not in answer.content.decode()
        if answer.status_code >= 400:
            assert "detail" in answer.json()
    if role != "maintainer":
        assert list(NotificationTarget.objects.values_list("name", "enabled")) == [
            ("existing", True)
        ]
        assert Delivery.objects.count() == 1


@pytest.mark.django_db
def test_deliveries_are_listed_with_their_log(clients):
    alice = clients["maintainer"]
    target = create(alice).json()
    Delivery.objects.create(
        target_id=target["id"], uid="u-1", event_name="build.failed", payload={"x": 1},
        state="failed", attempts=1, response_code=400, response_excerpt="nope", error="HTTP 400",
    )  # fmt: skip
    (row,) = alice.get(f"{URL}/{target['id']}/deliveries").json()
    assert row["delivery"] == "u-1" and row["state"] == "failed" and row["attempts"] == 1
    assert (row["response_code"], row["response_excerpt"], row["error"]) == (
        400,
        "nope",
        "HTTP 400",
    )


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"name": ""}, "name", "letters"),
        ({"name": "x" * 101}, "name", "letters"),
        ({"kind": "pager"}, "kind", "webhook"),
        ({"url": ""}, "url", "needs a url"),
        ({"url": "ftp://example.com/x"}, "url", "http(s)"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url", "metadata"),
        ({"url": "http://metadata.google.internal/x"}, "url", "metadata"),
        ({"url": "http://127.0.0.1:9/x"}, "url", "loopback"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "url", "credentials"),
        ({"url": "https://hooks.example.com/x" + "a" * 2000}, "url", "2000"),
        ({"events": []}, "events", "at least one"),
        ({"events": ["build.exploded"]}, "events", "unknown event"),
        ({"events": "build.failed"}, "events", ""),
        ({"emails": ["a@example.com"]}, "emails", "no emails"),
        ({"kind": "email", "url": "", "emails": ["not-an-address"]}, "emails", "not an email"),
        ({"kind": "email", "url": "", "emails": []}, "emails", "at least one"),
        ({"kind": "email", "emails": ["a@example.com"]}, "url", "no url"),
        ({"kind": "slack", "secret": SECRET}, "secret", "only webhook"),
        ({"secret": "s" * 201}, "secret", "200"),
        ({"pipelines": ["Bad Name"]}, "pipelines", "lower-case"),
        ({"branches": [""]}, "branches", "1 to 255"),
        ({"branches": ["b"] * 51}, "branches", "at most 50"),
        ({"enabled": "sometimes"}, "enabled", ""),
    ],
)
@pytest.mark.django_db
def test_bad_input_is_a_422_naming_the_field(clients, fields, loc, words):
    r = create(clients["maintainer"], **fields)
    assert r.status_code == 422, r.content
    problems = r.json()["detail"]
    assert any(p["loc"].startswith(loc) and words in p["msg"] for p in problems), problems
    assert NotificationTarget.objects.count() == 0


@pytest.mark.django_db
def test_a_taken_name_is_a_422(clients):
    assert create(clients["maintainer"]).status_code == 201
    r = create(clients["maintainer"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "name"


@pytest.mark.django_db
def test_redelivering_a_delivery_still_under_way_is_a_409(clients):
    alice = clients["maintainer"]
    target = create(alice).json()
    busy = Delivery.objects.create(
        target_id=target["id"], uid="b-1", event_name="build.failed", payload={}, state="pending"
    )
    r = send(alice, "post", f"{URL}/{target['id']}/deliveries/{busy.id}/redeliver")
    assert r.status_code == 409


@pytest.mark.usefixtures("inline_workers", "outbox", "notify_settings")
def test_send_test_reaches_the_receiver(user, project, receiver):
    alice = api_client(user)
    r = create(alice, url=receiver.url, secret=SECRET)
    r = send(alice, "post", f"{URL}/{r.json()['id']}/test")
    assert r.status_code == 202
    assert r.json()["state"] == "succeeded" and r.json()["response_code"] == 200
    (request,) = receiver.wait_for(1)
    assert request.headers["X-Buildsite-Event"] == "test"
    assert json.loads(request.body)["event"] == "test"


# --- the page ------------------------------------------------------------------------------
def browser(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_page_adds_tests_and_removes_for_maintainers(user, project):
    alice = browser(user)
    page = alice.get("/p/acme/notifications/")
    assert page.status_code == 200 and "Add a target" in page.content.decode()
    r = alice.post(
        "/p/acme/notifications/",
        {"action": "add", "name": "ci", "kind": "webhook", "address": HOOK,
         "secret": SECRET, "events": ["build.failed", "build.fixed"]},
    )  # fmt: skip
    assert r.status_code == 302, r.content.decode()[-2000:]
    target = NotificationTarget.objects.get()
    assert target.events == ["build.failed", "build.fixed"]
    html = alice.get("/p/acme/notifications/").content.decode()
    assert "ci" in html and SECRET not in html and "abc123" not in html
    bad = {"action": "add", "name": "x", "kind": "webhook", "address": "http://169.254.169.254/"}
    refused = alice.post("/p/acme/notifications/", bad)
    assert refused.status_code == 422 and "metadata" in refused.content.decode()
    assert (
        alice.post("/p/acme/notifications/", {"action": "delete", "id": target.id}).status_code
        == 302
    )
    assert not NotificationTarget.objects.exists()


@pytest.mark.django_db
def test_the_page_is_for_maintainers_only(user, project):
    editor = make_user("ed2")
    add_member(project, editor, Role.EDITOR)
    assert browser(editor).get("/p/acme/notifications/").status_code == 403
    assert browser(make_user("out2")).get("/p/acme/notifications/").status_code == 404
    assert Client().get("/p/acme/notifications/").status_code == 302  # to the login page


@pytest.mark.django_db
def test_the_admin_lists_targets_and_deliveries_without_the_secret(clients):
    target = create(clients["maintainer"], secret=SECRET).json()
    Delivery.objects.create(
        target_id=target["id"], uid="a-1", event_name="build.failed", payload={}, state="failed"
    )
    admin = make_user("root", is_superuser=True, is_staff=True)
    client = browser(admin)
    for path in (
        "/admin/notifications/notificationtarget/",
        f"/admin/notifications/notificationtarget/{target['id']}/change/",
        "/admin/notifications/delivery/",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert SECRET not in page.content.decode() and "abc123" not in page.content.decode()


@pytest.mark.django_db
def test_disabling_and_removing_in_the_admin_are_audited_as_the_staff_user(clients):
    target = create(clients["maintainer"], secret=SECRET).json()
    admin = make_user("root", is_superuser=True, is_staff=True)
    client = browser(admin)
    change = f"/admin/notifications/notificationtarget/{target['id']}/change/"
    assert client.post(change, {}).status_code == 302  # the checkbox unticked: disabled
    assert NotificationTarget.objects.get(id=target["id"]).enabled is False
    entry = AuditEntry.objects.get(action="notification.update")
    assert (entry.actor, entry.target) == (admin, "ci")
    assert "enabled=False" in entry.detail and "abc123" not in entry.detail
    delete = f"/admin/notifications/notificationtarget/{target['id']}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not NotificationTarget.objects.exists()
    entry = AuditEntry.objects.get(action="notification.delete")
    assert (entry.actor, entry.target) == (admin, "ci")
