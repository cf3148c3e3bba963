"""Dataset pages: list and create, items by version, add, upload, remove, and the
read-only admin."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from buildsite.roles import Role
from evals.models import Dataset
from tests.factories import add_member, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user, project):
    client = Client()
    client.force_login(user)
    return client


def test_create_add_upload_remove_and_browse_versions(browser):
    r = browser.post("/p/acme/datasets/", {"name": "capitals", "description": "cities"})
    assert r.status_code == 302 and r["Location"] == "/p/acme/datasets/capitals/"
    assert browser.post("/p/acme/datasets/", {"name": "Bad name"}).status_code == 422
    page = "/p/acme/datasets/capitals/"
    expect = json.dumps([{"type": "contains", "value": "Paris"}])
    france = '{"country": "France"}'
    r = browser.post(page, {"action": "add", "variables": france, "expect": expect})
    assert r.status_code == 302
    r = browser.post(page, {"action": "add", "variables": "{", "expect": "[]"})
    assert r.status_code == 422 and "variables" in r.content.decode()
    r = browser.post(page, {"action": "add", "variables": "{}", "expect": '[{"type": "nope"}]'})
    assert r.status_code == 422 and "expect.0.type" in r.content.decode()
    lines = "\n".join(json.dumps({"variables": {"country": c}, "expect": []}) for c in "AB")
    upload = SimpleUploadedFile("items.jsonl", lines.encode(), "application/x-ndjson")
    assert browser.post(page, {"action": "upload", "file": upload}).status_code == 302
    assert browser.post(page, {"action": "delete-item", "item": "1"}).status_code == 302
    assert Dataset.objects.get(name="capitals").version == 3
    old = browser.get(page + "?version=1").content.decode()
    assert "France" in old and "&quot;A&quot;" not in old
    now = browser.get(page).content.decode()
    assert "France" not in now and "&quot;B&quot;" in now and "Export version 3" in now
    assert browser.get(page + "?version=9").status_code == 404
    assert browser.get(page + "?version=x").status_code == 404
    assert "Datasets" in browser.get("/p/acme/datasets/").content.decode()
    r = browser.post(page, {"action": "delete-dataset"})
    assert r.status_code == 302 and not Dataset.objects.exists()


def test_viewers_read_but_cannot_write_and_outsiders_see_nothing(browser, project):
    browser.post("/p/acme/datasets/", {"name": "capitals"})
    viewer, outsider = make_user("vi"), make_user("out")
    add_member(project, viewer, Role.VIEWER)
    client = Client()
    client.force_login(viewer)
    page = client.get("/p/acme/datasets/capitals/")
    assert page.status_code == 200 and "Add an item" not in page.content.decode()
    r = client.post("/p/acme/datasets/capitals/", {"action": "add", "variables": "{}"})
    assert r.status_code == 403
    client.force_login(outsider)
    assert client.get("/p/acme/datasets/capitals/").status_code == 404


def test_admin_shows_datasets_read_only(browser, user):
    user.is_staff = user.is_superuser = True
    user.save()
    browser.post("/p/acme/datasets/", {"name": "capitals"})
    dataset = Dataset.objects.get()
    assert browser.get("/admin/evals/dataset/").status_code == 200
    assert browser.get(f"/admin/evals/dataset/{dataset.id}/change/").status_code == 200
    assert browser.get("/admin/evals/dataset/add/").status_code == 403
    r = browser.post(f"/admin/evals/dataset/{dataset.id}/delete/", {"post": "yes"})
    assert r.status_code == 403 and Dataset.objects.exists()


def test_json_nested_too_deeply_in_a_form_is_a_422(browser):
    browser.post("/p/acme/datasets/", {"name": "deep"})
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000  # json.loads: RecursionError
    r = browser.post("/p/acme/datasets/deep/", {"action": "add", "variables": deep})
    assert r.status_code == 422
    assert "not JSON" in r.content.decode()
