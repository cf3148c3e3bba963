"""The documentation pages render, save through validation and never 500."""

import pytest
from django.test import Client

from buildsite.roles import Role
from docs_engine import services
from docs_engine.models import Document, LinkReport
from tests.factories import add_member, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user, project):
    client = Client()
    client.force_login(user)
    services.save_document(
        user=user, project=project, path="guides/install", title="Install",
        body="# Install\n\n## Steps\n\n```python\nprint(1)\n```\n", tags=["ops"],
    )  # fmt: skip
    return client


def test_every_page_renders(browser, user, project):
    services.save_document(user=user, project=project, path="guides/install", title="Install",
                           body="# Install v2\n", base_revision=1)  # fmt: skip
    services.create_snapshot(user=user, project=project, name="v1")
    for url, expected in [
        ("/p/acme/docs/", "guides/"),
        ("/p/acme/docs/guides/install", '<h1 id="install-v2">'),
        ("/p/acme/docs/guides/install?revision=1", '<span class="mi">1</span>'),
        ("/p/acme/docs/guides/install/-/edit/", "docs-preview"),
        ("/p/acme/docs/guides/install/-/history/", "Restore"),
        ("/p/acme/docs/guides/install/-/diff/?from=1&to=2", "row-replace"),
        ("/p/acme/docs/guides/install/-/move/", "New path"),
        ("/p/acme/docs/-/new/?path=x/y", "New document"),
        ("/p/acme/docs/-/search/?q=install", "<mark>"),
        ("/p/acme/docs/-/snapshots/", "v1"),
        ("/p/acme/docs/-/snapshots/v1/", "changed"),
        ("/p/acme/docs/-/snapshots/v1/guides/install", "Install"),
        ("/p/acme/docs/-/settings/", "JSON schema"),
    ]:
        response = browser.get(url)
        assert response.status_code == 200, url
        assert expected in response.content.decode(), url


def test_editor_saves_and_shows_problems_at_lines(browser, project):
    bad = browser.post("/p/acme/docs/-/new/", {"path": "a", "title": "A", "body": "x\n\n##\n"})
    assert bad.status_code == 422 and "line 3" in bad.content.decode()
    ok = browser.post("/p/acme/docs/-/new/", {"path": "a", "title": "A", "body": "# A\n"})
    assert ok.status_code == 302 and ok["Location"] == "/p/acme/docs/a"
    stale = browser.post(
        "/p/acme/docs/guides/install/-/edit/",
        {"title": "I", "body": "new", "base_revision": "0"},
    )
    assert stale.status_code == 409 and "Someone saved in between" in stale.content.decode()


def test_move_redirects_and_delete_runs_the_link_checker(
    browser, user, project, django_capture_on_commit_callbacks, monkeypatch
):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)  # the django-q2 job runs inline on commit
    services.save_document(user=user, project=project, path="guides/intro", title="Intro",
                           body="See [install](install#steps).\n")  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post("/p/acme/docs/guides/install/-/move/", {"to": "setup/install"})
    assert response.status_code == 302
    assert browser.get("/p/acme/docs/guides/install")["Location"] == "/p/acme/docs/setup/install"
    report = LinkReport.objects.get()
    assert report.newly_broken == []  # the redirect keeps the link working
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/p/acme/docs/setup/install/-/delete/")
    latest = LinkReport.objects.first()
    assert [(b["path"], b["line"]) for b in latest.newly_broken] == [("guides/intro", 1)]
    assert "no document 'guides/install'" in latest.newly_broken[0]["msg"]
    assert "Newly broken links" in browser.get("/p/acme/docs/").content.decode()


def test_viewers_cannot_reach_editing_pages(project, browser):
    viewer = make_user("vic")
    add_member(project, viewer, Role.VIEWER)
    client = Client()
    client.force_login(viewer)
    assert client.get("/p/acme/docs/guides/install").status_code == 200
    assert client.get("/p/acme/docs/guides/install/-/edit/").status_code == 403
    assert client.post("/p/acme/docs/guides/install/-/delete/").status_code == 403
    assert Document.objects.filter(path="guides/install", deleted_at__isnull=True).exists()
    outsider = Client()
    outsider.force_login(make_user("mallory"))
    assert outsider.get("/p/acme/docs/guides/install").status_code == 404


def test_session_preview_endpoint_needs_csrf(browser, user):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    response = csrf_client.post(
        "/api/projects/acme/docs/-/preview", '{"body": "x"}', content_type="application/json"
    )
    assert response.status_code in (401, 403)


def test_the_reader_and_the_api_agree_on_the_published_revision(browser, user, project):
    """No published revision: both say 404 (the page used to show the draft instead)."""
    from tests.factories import api_client

    api = api_client(user)
    assert browser.get("/p/acme/docs/guides/install?version=published").status_code == 404
    assert api.get("/api/projects/acme/docs/guides/install?published=true").status_code == 404
    services.publish_document(user=user, project=project, path="guides/install")
    services.save_document(user=user, project=project, path="guides/install", title="Install",
                           body="# Draft\n", base_revision=1)  # fmt: skip
    page = browser.get("/p/acme/docs/guides/install?version=published").content.decode()
    assert 'id="install"' in page and "Draft" not in page
    assert api.get("/api/projects/acme/docs/guides/install?published=true").json()["revision"] == 1
