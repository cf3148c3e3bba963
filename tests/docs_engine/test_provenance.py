"""A revision a build writes names its build, task and the prompt runs it used; the
API, the reader, the history, the build page and the run page all show it."""

import pytest
from django.test import Client

from buildsite.roles import Role
from docs_engine import services as docs
from docs_engine.models import Document
from prompts import services as prompts
from prompts.models import PromptRun
from prompts.refs import parse_ref
from tests.factories import add_member, api_client, make_pipeline, make_user, run_build

BASE = "/api/projects/acme"

# `publish` uses the output of `draft` (named in its template) and of its own prompt
# step; `aside` is needed too but its output is not used, so its run is not linked.
PIPELINE = """
params: {version: "1.0.0"}
tasks:
  draft:
    steps:
      - prompt: release-notes@production
        vars: {version: "{{ params.version }}"}
        output: notes
  aside:
    steps:
      - prompt: release-notes#1
        vars: {version: "aside"}
  publish:
    needs: [draft, aside]
    steps:
      - prompt: release-notes#1
        vars: {version: "summary of {{ params.version }}"}
        output: summary
      - document: releases/{{ params.version }}
        title: Release {{ params.version }}
        body: |
          # Release {{ params.version }}

          {{ tasks['draft'].outputs.notes }}

          {{ task.outputs.summary }}
"""


@pytest.fixture
def release_build(project, user, inline_workers, fast_engine):
    prompts.create_prompt(
        user=user,
        project=project,
        name="release-notes",
        body={"template": "Notes for {{ version }}.", "variables": {"version": "string"}},
    )
    prompts.set_label(
        user=user, project=project, name="release-notes", label="production", number=1
    )
    make_pipeline(project, PIPELINE, name="release")
    build = run_build(project, "release", user=user)
    assert build.state == "succeeded", build.tasks.values("name", "state", "error")
    return build


def _run_of(build, task: str, key: str) -> int:
    return build.tasks.get(name=task).outputs[key]


def test_the_api_gives_the_build_the_task_and_the_runs_used(release_build, user):
    build = release_build
    used = sorted([_run_of(build, "draft", "notes_run"), _run_of(build, "publish", "summary_run")])
    aside = _run_of(build, "aside", "prompt_run")
    assert aside not in used and PromptRun.objects.filter(id__in=[*used, aside]).count() == 3
    alice = api_client(user)
    expected = {"build": build.id, "task": "publish", "prompt_runs": used}

    doc = alice.get(f"{BASE}/docs/releases/1.0.0").json()
    assert doc["provenance"] == expected
    revisions = alice.get(f"{BASE}/docs/releases/1.0.0/-/revisions").json()
    assert [r["provenance"] for r in revisions] == [expected]
    detail = alice.get(f"{BASE}/docs/releases/1.0.0/-/revisions/1").json()
    assert detail["provenance"] == expected


def test_peoples_revisions_have_none_and_an_identical_rewrite_keeps_the_builds(
    release_build, project, user
):
    again = run_build(project, "release", user=user)
    assert again.tasks.get(name="publish").outputs["changed"] is False
    alice = api_client(user)
    assert alice.get(f"{BASE}/docs/releases/1.0.0").json()["provenance"]["build"] == (
        release_build.id
    )

    docs.save_document(
        user=user,
        project=project,
        path="releases/1.0.0",
        title="Release 1.0.0",
        body="# Release 1.0.0\n\nEdited by hand.\n",
        base_revision=1,
    )
    assert alice.get(f"{BASE}/docs/releases/1.0.0").json()["provenance"] is None
    revisions = alice.get(f"{BASE}/docs/releases/1.0.0/-/revisions").json()
    assert [r["number"] for r in revisions] == [2, 1]
    assert revisions[0]["provenance"] is None
    assert revisions[1]["provenance"]["build"] == release_build.id
    old = alice.get(f"{BASE}/docs/releases/1.0.0?revision=1").json()
    assert old["provenance"]["task"] == "publish"


def test_deleting_the_build_keeps_the_revision_and_says_a_build_wrote_it(release_build, user):
    release_build.delete()
    revision = Document.objects.get(path="releases/1.0.0").current_revision
    assert revision.body.startswith("# Release 1.0.0")
    provenance = api_client(user).get(f"{BASE}/docs/releases/1.0.0").json()["provenance"]
    assert provenance["build"] is None and provenance["task"] == "publish"


def test_the_reader_links_the_build_the_prompt_and_the_runs(release_build, user):
    build = release_build
    browser = Client()
    browser.force_login(user)
    page = browser.get("/p/acme/docs/releases/1.0.0").content.decode()
    assert f'<a href="/builds/{build.id}/">build #{build.id}</a> (release' in page
    assert '<a href="/p/acme/prompts/release-notes/">release-notes version 1</a>' in page
    for run_id in (_run_of(build, "draft", "notes_run"), _run_of(build, "publish", "summary_run")):
        assert f'<a href="/p/acme/prompts/_runs/{run_id}/">run #{run_id}</a>' in page
    history = browser.get("/p/acme/docs/releases/1.0.0/-/history/").content.decode()
    assert f'<a href="/builds/{build.id}/">build #{build.id}</a>, task publish' in history


def test_a_document_written_by_a_person_shows_no_build(project, user):
    docs.save_document(user=user, project=project, path="guide", title="Guide", body="# Guide\n")
    browser = Client()
    browser.force_login(user)
    page = browser.get("/p/acme/docs/guide").content.decode()
    assert "data-provenance" not in page and "written by" not in page


def test_the_build_page_lists_the_revision_and_the_runs(release_build, user):
    build = release_build
    browser = Client()
    browser.force_login(user)
    page = browser.get(f"/builds/{build.id}/").content.decode()
    assert "Documents written" in page
    assert '<a href="/p/acme/docs/releases/1.0.0?revision=1">releases/1.0.0 revision 1</a>' in page
    assert "Prompt runs" in page
    for run in PromptRun.objects.filter(task__build=build):
        assert f'<a href="/p/acme/prompts/_runs/{run.id}/">run #{run.id}</a>' in page


def test_the_run_page_links_the_revisions_built_from_it(release_build, user):
    browser = Client()
    browser.force_login(user)
    used = _run_of(release_build, "draft", "notes_run")
    page = browser.get(f"/p/acme/prompts/_runs/{used}/").content.decode()
    assert '<a href="/p/acme/docs/releases/1.0.0?revision=1">releases/1.0.0 revision 1</a>' in page
    aside = _run_of(release_build, "aside", "prompt_run")
    assert "releases/1.0.0" not in browser.get(f"/p/acme/prompts/_runs/{aside}/").content.decode()


def test_a_viewer_sees_provenance_and_an_outsider_sees_nothing(release_build, project):
    viewer, outsider = make_user("vic"), make_user("mallory")
    add_member(project, viewer, Role.VIEWER)
    assert api_client(viewer).get(f"{BASE}/docs/releases/1.0.0").json()["provenance"]
    assert api_client(outsider).get(f"{BASE}/docs/releases/1.0.0").status_code == 404
    assert api_client(outsider).get(f"{BASE}/docs/releases/1.0.0/-/revisions").status_code == 404
    browser = Client()
    browser.force_login(outsider)
    assert browser.get("/p/acme/docs/releases/1.0.0").status_code == 404
    assert browser.get(f"/builds/{release_build.id}/").status_code == 404


def test_run_ids_of_another_project_are_never_linked(release_build, project, user):
    """Output ids are data a step could imitate: a run of another project is ignored."""
    from tests.factories import make_project

    other = make_project(owner=user, slug="other")
    prompts.create_prompt(
        user=user, project=other, name="p", body={"template": "x", "variables": {}}
    )
    foreign = prompts.run_prompt(user=user, project=other, ref=parse_ref("p"), variables={})
    publish = release_build.tasks.get(name="publish")
    result = docs.save_document(
        user=user,
        project=project,
        path="imitated",
        title="Imitated",
        body="# Imitated\n",
        provenance=docs.Provenance(build=release_build, task=publish, prompt_run_ids=(foreign.id,)),
    )
    assert list(result.revision.prompt_runs.all()) == []
