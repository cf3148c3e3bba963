"""The admin writes through the documentation services: the same limits, the same
soft delete as the API."""

import json

import pytest
from django.test import Client

from docs_engine.models import DocSettings, Document, Revision
from tests.factories import api_client, make_user

pytestmark = pytest.mark.django_db
BASE = "/api/projects/acme"


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    return client


def settings_form(project, **extra):
    return {"project": project.id, "front_matter_schema": "null", "max_body_bytes": 4096, **extra}


def test_admin_refuses_a_body_limit_the_api_refuses(admin_client, project):
    response = admin_client.post(
        "/admin/docs_engine/docsettings/add/", settings_form(project, max_body_bytes=10)
    )
    assert response.status_code == 200
    assert "between 1024 and 10485760 bytes" in response.content.decode()
    assert not DocSettings.objects.filter(project=project).exists()


def test_admin_saves_settings_through_the_service(admin_client, project):
    response = admin_client.post(
        "/admin/docs_engine/docsettings/add/", settings_form(project, require_approval="on")
    )
    assert response.status_code == 302
    saved = DocSettings.objects.get(project=project)
    assert saved.require_approval and saved.max_body_bytes == 4096


def test_admin_delete_is_the_services_soft_delete(admin_client, user, project):
    api = api_client(user)
    body = {"title": "A", "body": "x"}
    api.put(f"{BASE}/docs/a", json.dumps(body), content_type="application/json")
    document = Document.objects.get(project=project, path="a")
    response = admin_client.post(
        f"/admin/docs_engine/document/{document.id}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    document.refresh_from_db()
    assert document.deleted_at is not None  # the row and its history stay
    assert Revision.objects.filter(document=document).count() == 1
    assert api.get(f"{BASE}/docs/a").status_code == 404
