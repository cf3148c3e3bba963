"""`GET …/prompts/{name}/versions/{n}/usage`: which builds ran version n."""

import pytest

from buildsite.roles import Role
from prompts import services
from prompts.refs import parse_ref
from tests.factories import add_member, api_client, make_pipeline, make_user, run_build

BASE = "/api/projects/acme/prompts/release-notes/versions"

USES_V1 = """
tasks:
  draft:
    steps:
      - prompt: release-notes#1
        vars: {version: "1"}
  polish:
    steps:
      - prompt: release-notes#1
        vars: {version: "polished"}
  check:
    steps:
      - run: "true"
"""

USES_V2 = """
tasks:
  draft:
    steps:
      - prompt: release-notes@production
        vars: {version: "2"}
"""


@pytest.fixture
def builds(project, user, inline_workers, fast_engine):
    body = {"template": "Notes for {{ version }}.", "variables": {"version": "string"}}
    services.create_prompt(user=user, project=project, name="release-notes", body=body)
    body2 = {**body, "template": "Release notes for {{ version }}."}
    services.add_version(user=user, project=project, name="release-notes", body=body2)
    services.set_label(
        user=user, project=project, name="release-notes", label="production", number=2
    )
    make_pipeline(project, USES_V1, name="one")
    make_pipeline(project, USES_V2, name="two")
    first = run_build(project, "one", user=user)
    other = run_build(project, "two", user=user)
    second = run_build(project, "one", user=user)
    for build in (first, other, second):
        assert build.state == "succeeded", build.tasks.values("name", "state", "error")
    # A run outside any build uses version 1 too, but names no build.
    services.run_prompt(
        user=user, project=project, ref=parse_ref("release-notes#1"), variables={"version": "x"}
    )
    return first, other, second


def test_usage_lists_the_builds_of_that_version_newest_first(builds, user):
    first, other, second = builds
    alice = api_client(user)
    usage = alice.get(f"{BASE}/1/usage").json()
    assert [u["build"] for u in usage] == [second.id, first.id]
    assert usage[0]["pipeline"] == "one" and usage[0]["state"] == "succeeded"
    assert usage[0]["tasks"] == ["draft", "polish"]
    assert usage[0]["created_at"] and usage[0]["finished_at"]
    assert [u["build"] for u in alice.get(f"{BASE}/2/usage").json()] == [other.id]


def test_usage_is_paged(builds, user):
    first, _, second = builds
    alice = api_client(user)
    assert [u["build"] for u in alice.get(f"{BASE}/1/usage?limit=1").json()] == [second.id]
    page2 = alice.get(f"{BASE}/1/usage?limit=1&offset=1").json()
    assert [u["build"] for u in page2] == [first.id]
    assert alice.get(f"{BASE}/1/usage?offset=2").json() == []
    assert alice.get(f"{BASE}/1/usage?limit=0").status_code == 422


def test_usage_needs_a_version_and_a_role_in_the_project(builds, project):
    viewer, outsider = make_user("vic"), make_user("mallory")
    add_member(project, viewer, Role.VIEWER)
    assert api_client(viewer).get(f"{BASE}/1/usage").status_code == 200
    assert api_client(viewer).get(f"{BASE}/9/usage").status_code == 404
    assert api_client(outsider).get(f"{BASE}/1/usage").status_code == 404


def test_an_offset_past_any_build_is_refused_not_a_server_error(builds, user):
    r = api_client(user).get(f"{BASE}/1/usage?offset=99999999999999999999")
    assert r.status_code == 422
    assert "offset" in str(r.json()["detail"])


def test_the_build_page_lists_the_first_runs_and_says_how_many_there_are(builds, user, monkeypatch):
    from django.test import Client

    from prompts import build_page

    monkeypatch.setattr(build_page, "SHOWN", 1)  # an evaluation build holds thousands
    first = builds[0]
    browser = Client()
    browser.force_login(user)
    page = browser.get(f"/builds/{first.id}/").content.decode()
    assert page.count("/prompts/_runs/") == 1
    assert "The first 1 of 2 runs." in page
