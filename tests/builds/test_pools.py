"""A pool may not shrink below what an unfinished task claims: such a task could never
start and its build would never end. Refused alike through the API and the admin."""

import json

import pytest
from django.test import Client

from builds.models import ResourcePool
from builds.services import cancel_build, trigger_build
from tests.factories import api_client, make_pipeline, make_user

pytestmark = pytest.mark.django_db(transaction=True)

PIPELINE = """
tasks:
  small: {resources: {cpu: 1}, steps: [{run: "true"}]}
  big: {needs: [small], resources: {cpu: 2}, steps: [{run: "true"}]}
"""


@pytest.fixture
def waiting_build(project):
    ResourcePool.objects.create(project=project, name="cpu", capacity=2)
    make_pipeline(project, PIPELINE)
    return trigger_build(user=None, project=project, pipeline="main")


def set_capacity(user, project, capacity):
    return api_client(user).post(
        f"/api/projects/{project.slug}/resources",
        data=json.dumps({"name": "cpu", "capacity": capacity}),
        content_type="application/json",
    )


def test_api_refuses_to_shrink_a_pool_below_a_waiting_claim(user, project, waiting_build):
    response = set_capacity(user, project, 1)
    assert response.status_code == 409
    assert f"build {waiting_build.id} task 'big' claims 2" in response.json()["detail"]
    assert ResourcePool.objects.get(project=project, name="cpu").capacity == 2


def test_api_allows_the_same_shrink_once_the_build_is_over(user, project, waiting_build):
    cancel_build(user=None, build=waiting_build)
    response = set_capacity(user, project, 1)
    assert response.status_code == 201, response.content
    assert ResourcePool.objects.get(project=project, name="cpu").capacity == 1


def test_api_allows_growing_or_shrinking_to_the_largest_claim(user, project, waiting_build):
    assert set_capacity(user, project, 2).status_code == 201
    assert set_capacity(user, project, 5).status_code == 201


def admin_client():
    admin = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(admin)
    return client


def test_admin_refuses_the_same_shrink_with_a_form_error(project, waiting_build):
    pool = ResourcePool.objects.get(project=project, name="cpu")
    response = admin_client().post(f"/admin/builds/resourcepool/{pool.id}/change/", {"capacity": 1})
    assert response.status_code == 200  # the form again, with the error
    assert "task &#x27;big&#x27; claims 2" in response.content.decode()
    pool.refresh_from_db()
    assert pool.capacity == 2


def test_admin_changes_capacity_through_the_service(project, waiting_build):
    pool = ResourcePool.objects.get(project=project, name="cpu")
    response = admin_client().post(f"/admin/builds/resourcepool/{pool.id}/change/", {"capacity": 3})
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.capacity == 3


def test_admin_refuses_a_pool_name_the_api_refuses(project):
    response = admin_client().post(
        "/admin/builds/resourcepool/add/",
        {"project": project.id, "name": "Bad Name!", "capacity": 1},
    )
    assert response.status_code == 200
    assert "pool names use lower-case letters" in response.content.decode()
    assert not ResourcePool.objects.filter(project=project).exists()
