"""One search over documents, task logs, prompt templates and prompt runs, through the
API; the same tests run on SQLite (FTS5) and PostgreSQL."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from builds.maintenance import clean_old_files
from builds.models import Build
from buildsite.roles import Role
from docs_engine import services as docs
from prompts import services as prompts
from prompts.refs import parse_ref
from search.indexing import run_upkeep
from search.models import LogChunk
from search.services import delete_purged_logs
from tests.factories import add_member, api_client, make_pipeline, make_user, run_build

URL = "/api/projects/acme/search"
PIPELINE = """
tasks:
  compile:
    steps:
      - run: "echo 'linking zanzibar <b>now</b> if 1 < 2 & ok'"
"""


def search(client, **params):
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.fixture
def built(project, user, inline_workers, fast_engine):
    make_pipeline(project, PIPELINE, name="release")
    build = run_build(project, "release", user=user)
    assert build.state == "succeeded", build.tasks.values("name", "state", "error")
    return build


def test_logs_of_a_real_build_are_found_once_upkeep_indexed_them(built, user):
    alice = api_client(user)
    assert search(alice, q="zanzibar", **{"in": "logs"}) == []  # not indexed yet
    assert run_upkeep() >= 1
    (hit,) = search(alice, q="zanzibar", **{"in": "logs"})
    assert hit["kind"] == "log"
    assert (hit["build"], hit["task"], hit["attempt"]) == (built.id, "compile", 1)
    assert hit["url"] == f"/builds/{built.id}/?task=compile"
    assert hit["title"] == f"release #{built.id} · compile"
    assert "<mark>zanzibar</mark>" in hit["snippet"]
    # the log's own markup is text, escaped (PostgreSQL's headline drops tags): only
    # <mark> is HTML
    assert "1 &lt; 2 &amp; ok" in hit["snippet"]
    assert "<" not in hit["snippet"].replace("<mark>", "").replace("</mark>", "")
    assert run_upkeep() == 0  # the position moved: nothing indexed twice
    assert LogChunk.objects.count() == 1


def test_retention_removes_the_log_hits(built, user):
    alice = api_client(user)
    run_upkeep()
    assert search(alice, q="zanzibar", **{"in": "logs"})
    Build.objects.filter(id=built.id).update(finished_at=timezone.now() - timedelta(days=365))
    assert clean_old_files() == 1
    assert search(alice, q="zanzibar", **{"in": "logs"}) == []  # hidden at once
    assert delete_purged_logs() == 1  # and the sweep reclaims the rows
    assert not LogChunk.objects.exists()


def test_roles_outsiders_get_404_viewers_search_everything(built, project):
    run_upkeep()
    outsider = api_client(make_user("mallory"))
    response = outsider.get(URL, {"q": "zanzibar", "in": "logs,docs,prompts,runs"})
    assert response.status_code == 404
    viewer = make_user("victor")
    add_member(project, viewer, Role.VIEWER)
    assert [h["kind"] for h in search(api_client(viewer), q="zanzibar", **{"in": "logs"})] == [
        "log"
    ]


@pytest.fixture
def prompt_and_run(project, user):
    body = {
        "template": "Summarise the quasar report for {{ version }} if 1 < 2",
        "variables": {"version": "string"},
    }
    prompts.create_prompt(
        user=user, project=project, name="release-notes", body=body, description="notes"
    )
    run = prompts.run_prompt(
        user=user, project=project, ref=parse_ref("release-notes"),
        variables={"version": "nebula-7"},
    )  # fmt: skip
    return run


@pytest.mark.django_db
def test_prompt_templates_and_runs_are_found_as_soon_as_they_are_written(prompt_and_run, user):
    alice = api_client(user)
    (prompt,) = search(alice, q="quasar", **{"in": "prompts"})
    assert prompt["kind"] == "prompt" and prompt["prompt"] == "release-notes"
    assert prompt["version"] == 1 and prompt["url"] == "/p/acme/prompts/release-notes/"
    assert "<mark>quasar</mark>" in prompt["snippet"] and "&lt;" in prompt["snippet"]
    assert "<" not in prompt["snippet"].replace("<mark>", "").replace("</mark>", "")
    (run,) = search(alice, q="nebula", **{"in": "runs"})  # a variable's value, as sent
    assert run["kind"] == "run" and run["run"] == prompt_and_run.id
    assert run["url"] == f"/p/acme/prompts/_runs/{prompt_and_run.id}/"


@pytest.mark.django_db
def test_a_new_version_replaces_the_template_text(prompt_and_run, user, project):
    prompts.add_version(
        user=user, project=project, name="release-notes", body={"template": "About pulsars."}
    )
    alice = api_client(user)
    assert search(alice, q="quasar", **{"in": "prompts"}) == []
    assert search(alice, q="pulsars", **{"in": "prompts"})[0]["version"] == 2


@pytest.mark.django_db
def test_several_kinds_merge_into_one_ranked_list(prompt_and_run, user, project):
    docs.save_document(user=user, project=project, path="guides/quasar", title="Quasar", body="x")
    results = search(api_client(user), q="quasar", **{"in": "docs,prompts,runs"})
    # each first in its own list (the run sent the template's text): `in`'s order breaks ties
    assert [r["kind"] for r in results] == ["doc", "prompt", "run"]


@pytest.mark.django_db
def test_default_is_the_document_search_unchanged(user, project):
    docs.save_document(user=user, project=project, path="a/b", title="Quasar", body="quasar")
    alice = api_client(user)
    default = search(alice, q="quasar")
    assert default == search(alice, q="quasar", **{"in": "docs"})
    (hit,) = default
    assert hit["kind"] == "doc" and hit["path"] == "a/b" and hit["url"] == "/p/acme/docs/a/b"
    assert {"title", "title_html", "snippet", "rank", "tags", "updated_at"} <= set(hit)


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["bogus", "docs,bogus", "docs;logs", "doc"])
def test_unknown_kinds_are_refused_naming_the_value(user, project, value):
    response = api_client(user).get(URL, {"q": "x", "in": value})
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == "in"
    assert repr(value.split(",")[-1])[1:-1] in problem["msg"]


@pytest.mark.django_db
def test_in_ignores_case_spaces_repeats_and_order(user, project):
    response = api_client(user).get(URL, {"q": "x", "in": " Runs , docs,runs,"})
    assert response.status_code == 200


@pytest.mark.django_db
def test_a_merged_search_bounds_how_deep_it_pages(user, project):
    client = api_client(user)
    response = client.get(URL, {"q": "x", "in": "docs,logs", "offset": 990, "limit": 20})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == "offset"
    assert client.get(URL, {"q": "x", "in": "logs", "offset": 10**12}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("query", ['"unclosed', "NEAR(", "*", "-x", "a" * 500, "\x00", "💥"])
def test_malformed_queries_never_crash(user, project, query):
    search(api_client(user), q=query, **{"in": "docs,logs,prompts,runs"})


def test_runs_on_the_expected_backend():
    from search.backends import backend

    assert backend().__name__.endswith(
        "postgres" if connection.vendor == "postgresql" else "sqlite"
    )
