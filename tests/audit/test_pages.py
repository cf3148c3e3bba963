"""The audit page (/p/<slug>/audit/) and the admin: maintainers see who did what; the
admin shows entries and changes none."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEntry
from tests.audit.conftest import World

pytestmark = pytest.mark.django_db


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def cancelled(w: World, who) -> int:
    number = int(w.alice.call("POST", "/builds", {"pipeline": "main"}).json()["id"])
    assert who.call("POST", f"/api/builds/{number}/cancel").status_code == 200
    return number


def test_the_page_answers_who_cancelled_build_n(world):
    number = cancelled(world, world.bob)
    page = browser(world.alice.user).get("/p/acme/audit/?action=build.cancel")
    assert page.status_code == 200
    html = page.content.decode()
    row = html[html.index('data-action="build.cancel"') :].split("</tr>")[0]
    assert f"build {number}" in row
    assert f"bob (token {world.bob.prefix}…)" in row
    assert 'data-action="build.trigger"' not in html  # filtered out


def test_the_page_lists_newest_first_and_pages(world, monkeypatch):
    from audit import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    numbers = [cancelled(world, world.alice) for _ in range(3)]
    client = browser(world.alice.user)
    first = client.get("/p/acme/audit/?action=build.cancel").content.decode()
    assert first.index(f"build {numbers[2]}<") < first.index(f"build {numbers[1]}<")
    assert f"build {numbers[0]}<" not in first
    assert "page=2" in first and "Page 1 of 2" in first
    second = client.get("/p/acme/audit/?action=build.cancel&page=2").content.decode()
    assert f"build {numbers[0]}<" in second and f"build {numbers[2]}<" not in second


def test_a_bad_filter_is_shown_not_a_server_error(world):
    page = browser(world.alice.user).get("/p/acme/audit/?since=someday")
    assert page.status_code == 422
    assert "since" in page.content.decode()
    page = browser(world.alice.user).get("/p/acme/audit/?since=9999-12-31T23:59:59-23:59")
    assert page.status_code == 422  # out of range in UTC, not a server error


@pytest.mark.parametrize(("who", "status"), [("bob", 403), ("vic", 403), ("olga", 404)])
def test_only_maintainers_see_the_page(world, who, status):
    user = getattr(world, who).user
    assert browser(user).get("/p/acme/audit/").status_code == status


def test_anonymous_visitors_are_sent_to_log_in(world):
    response = Client().get("/p/acme/audit/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_nav_links_the_log_for_maintainers_only(world):
    assert "/p/acme/audit/" in browser(world.alice.user).get("/p/acme/").content.decode()
    assert "/p/acme/audit/" not in browser(world.bob.user).get("/p/acme/").content.decode()


def test_the_admin_lists_and_searches_entries_but_changes_none(world):
    number = cancelled(world, world.bob)
    entry = AuditEntry.objects.get(action="build.cancel")
    admin = browser(world.admin)
    listing = admin.get("/admin/audit/auditentry/?q=bob")
    assert listing.status_code == 200
    assert f"build {number}" in listing.content.decode()
    assert admin.get("/admin/audit/auditentry/?action__exact=build.cancel").status_code == 200
    assert admin.get("/admin/audit/auditentry/add/").status_code == 403
    assert admin.get(f"/admin/audit/auditentry/{entry.id}/delete/").status_code == 403
    # The change page shows the entry read-only; a POST changes nothing.
    assert admin.get(f"/admin/audit/auditentry/{entry.id}/change/").status_code == 200
    admin.post(f"/admin/audit/auditentry/{entry.id}/change/", {"action": "build.retry"})
    action = {"action": "delete_selected", "_selected_action": [entry.id], "post": "yes"}
    admin.post("/admin/audit/auditentry/", action)
    entry.refresh_from_db()
    assert entry.action == "build.cancel"
