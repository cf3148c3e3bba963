"""Re-running a build from a task: that task and its descendants run again, the rest
is taken over from the original (outputs, artifacts, and where the result came from)."""

import json
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from builds.models import Blob, Build
from builds.rerun import tasks_to_rerun
from builds.services import trigger_build
from buildsite.roles import Role
from tasks.models import Event, Task
from tests.factories import add_member, api_client, make_pipeline, make_user, run_build

# fetch hands on src.txt; test reads it and hands on report.txt; every task prints a
# random token, so a task that ran again has other outputs than the original's.
DIAMOND = """
tasks:
  fetch:
    steps:
      - run: od -An -N12 -tx1 /dev/urandom | tr -d ' \\n' > src.txt; cat src.txt
        output: token
    artifacts: [src.txt]
  lint:
    needs: [fetch]
    steps:
      - run: od -An -N12 -tx1 /dev/urandom | tr -d ' \\n'
        output: token
  test:
    needs: [fetch]
    steps:
      - run: |
          cp src.txt report.txt
          od -An -N12 -tx1 /dev/urandom | tr -d ' \\n' >> report.txt
          cat report.txt
        output: token
    artifacts: [report.txt]
  package:
    needs: [lint, test]
    steps: [{run: "cat report.txt", output: token}]
"""


def post(client, url, body=None):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def finish(build_id: int, ticks: int = 50) -> Build:
    """Drive a build created outside run_build (a re-run) to its end."""
    from builds.maintenance import tick

    for _ in range(ticks):
        build = Build.objects.get(id=build_id)
        if build.finished_at is not None:
            return build
        tick()
        time.sleep(0.05)
    return Build.objects.get(id=build_id)


def rows(build_id: int) -> dict[str, Task]:
    return {t.name: t for t in Task.objects.filter(build_id=build_id)}


def rerun(client, build_id: int, task: str) -> Build:
    response = post(client, f"/api/builds/{build_id}/rerun", {"from": task})
    assert response.status_code == 201, response.content
    return finish(response.json()["id"])


@pytest.fixture
def client(user):
    return api_client(user)


# --- which tasks run again (pure) ---------------------------------------------------------
NEEDS = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}


def test_the_chosen_task_and_everything_downstream_run_again():
    ok = dict.fromkeys(NEEDS, "succeeded")
    assert tasks_to_rerun(NEEDS, "b", ok) == {"b", "d"}
    assert tasks_to_rerun(NEEDS, "a", ok) == {"a", "b", "c", "d"}
    assert tasks_to_rerun(NEEDS, "d", {**ok, "c": "cached"}) == {"d"}


@pytest.mark.parametrize("state", ["failed", "cancelled", "upstream_failed", "pending", None])
def test_a_task_without_a_success_runs_again_with_its_descendants(state):
    states = {**dict.fromkeys(NEEDS, "succeeded"), "c": state}
    if state is None:
        del states["c"]  # never had a row
    assert tasks_to_rerun(NEEDS, "e", states) == {"c", "d", "e"}


# --- over the API -------------------------------------------------------------------------
def test_rerun_from_a_middle_task_reuses_the_rest(
    client, project, user, inline_workers, fast_engine
):
    make_pipeline(project, DIAMOND)
    first = run_build(project, params={})
    assert first.state == "succeeded"
    before = rows(first.id)
    Blob.objects.update(last_used_at=timezone.now() - timedelta(days=3))

    response = post(client, f"/api/builds/{first.id}/rerun", {"from": "test"})
    assert response.status_code == 201
    body = response.json()
    assert body["rerun_of"] == first.id and body["trigger"] == "rerun"
    assert body["version"] == 1 and body["pipeline"] == "main"
    assert body["triggered_by"] == user.username
    listed = {t["name"]: t for t in body["tasks"]}
    assert listed["fetch"]["state"] == "cached" and listed["fetch"]["reused_from"] == first.id
    assert listed["test"]["state"] in ("ready", "queued", "running", "succeeded")
    assert listed["test"]["reused_from"] is None

    second = finish(body["id"])
    assert second.state == "succeeded"
    after = rows(second.id)
    assert {n: t.state for n, t in after.items()} == {
        "fetch": "cached",
        "lint": "cached",
        "test": "succeeded",
        "package": "succeeded",
    }
    for name in ("fetch", "lint"):  # taken over exactly
        assert after[name].reused_from_id == first.id
        assert after[name].outputs == before[name].outputs
        assert after[name].artifacts == before[name].artifacts
        assert after[name].cache_key == before[name].cache_key
        assert after[name].attempts == 0
    for name in ("test", "package"):  # ran again
        assert after[name].reused_from_id is None and after[name].attempts == 1
        assert after[name].outputs["token"] != before[name].outputs["token"]
    # The re-run test was given the reused fetch's file, and handed its own on.
    fetched = before["fetch"].outputs["token"]
    assert len(fetched) == 24  # 12 random bytes in hex
    assert after["test"].outputs["token"].startswith(fetched)
    assert after["package"].outputs["token"] == after["test"].outputs["token"]
    # The reused blobs were touched, as a cache hit touches what it restores.
    (src,) = before["fetch"].artifacts
    assert Blob.objects.get(sha256=src["sha256"]).last_used_at > timezone.now() - timedelta(
        minutes=5
    )

    download = client.get(f"/api/builds/{second.id}/artifacts/fetch/src.txt")
    assert download.status_code == 200
    assert b"".join(download.streaming_content).decode() == fetched
    detail = client.get(f"/api/builds/{second.id}").json()
    assert {t["name"]: t["reused_from"] for t in detail["tasks"]} == {
        "fetch": first.id,
        "lint": first.id,
        "test": None,
        "package": None,
    }
    # The reused tasks' creation events say so, for the live page.
    events = Event.objects.filter(build_id=second.id, type="task.state", new_state="cached")
    assert {e.task_name: e.data.get("reused_from") for e in events} == {
        "fetch": first.id,
        "lint": first.id,
    }


def test_the_new_build_copies_params_and_commit(client, project, inline_workers, fast_engine):
    make_pipeline(project, "params: {who: x}\ntasks:\n  t: {steps: [{run: 'echo hi'}]}\n")
    first = run_build(project, params={"who": "you"})
    Build.objects.filter(id=first.id).update(
        commit_sha="a" * 40, commit_ref="main", commit_author="Al", commit_message="fix"
    )
    second = rerun(client, first.id, "t")
    assert second.params == {"who": "you"}
    assert second.pipeline_version_id == first.pipeline_version_id
    assert (second.commit_sha, second.commit_ref, second.commit_author, second.commit_message) == (
        "a" * 40,
        "main",
        "Al",
        "fix",
    )
    assert second.trigger == "rerun" and second.rerun_of_id == first.id


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_tasks_that_failed_in_the_original_run_again(
    client, project, inline_workers, fast_engine, tmp_path
):
    flag = tmp_path / "fixed"
    make_pipeline(
        project,
        f"""
tasks:
  ok: {{steps: [{{run: "echo ok"}}]}}
  flaky: {{needs: [ok], steps: [{{run: "test -f {flag}"}}]}}
  after: {{needs: [flaky], steps: [{{run: "echo after"}}]}}
  side: {{needs: [ok], steps: [{{run: "echo side"}}]}}
""",
    )
    first = run_build(project)
    assert first.state == "failed"
    flag.write_text("yes")
    second = rerun(client, first.id, "side")
    assert second.state == "succeeded"
    after = rows(second.id)
    assert {n: (t.state, t.reused_from_id) for n, t in after.items()} == {
        "ok": ("cached", first.id),
        "flaky": ("succeeded", None),
        "after": ("succeeded", None),
        "side": ("succeeded", None),
    }


CACHED_CHAIN = """
tasks:
  make: {cache: true, steps: [{run: "od -An -N8 -tx1 /dev/urandom", output: token}]}
  use:
    cache: true
    needs: [make]
    steps: [{run: "echo {{ tasks.make.outputs.token }}; od -An -N8 -tx1 /dev/urandom"}]
  ship: {needs: [use], steps: [{run: "echo shipped"}]}
"""


def test_cacheable_tasks_run_again_rather_than_hitting_the_cache(
    client, project, inline_workers, fast_engine
):
    """`make` would be a hit on its own entry, and `use` on the entry keyed on make's
    old key: both would hand back the results the re-run is to replace."""
    make_pipeline(project, CACHED_CHAIN)
    first = run_build(project)
    second = rerun(client, first.id, "make")
    assert second.state == "succeeded"
    old, new = rows(first.id), rows(second.id)
    assert {n: (t.state, t.attempts) for n, t in new.items()} == {
        "make": ("succeeded", 1),
        "use": ("succeeded", 1),
        "ship": ("succeeded", 1),
    }
    assert new["make"].outputs != old["make"].outputs
    assert new["make"].outputs["token"] in new["use"].outputs["stdout_tail"]
    # The re-run leaves the cache as it was: a new build hits the original results.
    third = rows(run_build(project).id)
    assert third["make"].state == "cached" and third["use"].state == "cached"
    assert third["use"].outputs == old["use"].outputs


def test_a_rerun_of_a_rerun_points_at_the_build_that_produced_each_result(
    client, project, inline_workers, fast_engine
):
    make_pipeline(project, DIAMOND)
    first = run_build(project)
    second = rerun(client, first.id, "test")
    third = rerun(client, second.id, "package")
    assert third.state == "succeeded" and third.rerun_of_id == second.id
    before, middle, after = rows(first.id), rows(second.id), rows(third.id)
    assert {n: t.reused_from_id for n, t in after.items()} == {
        "fetch": first.id,
        "lint": first.id,
        "test": second.id,
        "package": None,
    }
    assert after["fetch"].outputs == before["fetch"].outputs
    assert after["test"].outputs == middle["test"].outputs
    assert after["package"].outputs["token"] == middle["test"].outputs["token"]


# --- refusals -------------------------------------------------------------------------------
def test_an_unknown_task_is_a_422_naming_it(client, project, inline_workers, fast_engine):
    make_pipeline(project, DIAMOND)
    first = run_build(project)
    response = post(client, f"/api/builds/{first.id}/rerun", {"from": "nope"})
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == "from" and "'nope'" in problem["msg"]
    assert post(client, f"/api/builds/{first.id}/rerun", {}).status_code == 422
    assert Build.objects.count() == 1


def test_a_build_still_running_is_a_409(client, project):
    make_pipeline(project, DIAMOND)
    build = trigger_build(user=None, project=project, pipeline="main")  # no worker: queued
    response = post(client, f"/api/builds/{build.id}/rerun", {"from": "test"})
    assert response.status_code == 409 and "still queued" in response.json()["detail"]


def test_a_purged_build_is_a_409(client, project, inline_workers, fast_engine):
    make_pipeline(project, DIAMOND)
    first = run_build(project)
    Build.objects.filter(id=first.id).update(files_purged=True)
    response = post(client, f"/api/builds/{first.id}/rerun", {"from": "test"})
    assert response.status_code == 409 and "retention" in response.json()["detail"]


def test_a_build_that_never_read_its_pipeline_is_a_409(client, project):
    pipeline = make_pipeline(project, DIAMOND).pipeline
    build = Build.objects.create(
        project=project, pipeline=pipeline, state="failed", error="no pipeline file"
    )
    response = post(client, f"/api/builds/{build.id}/rerun", {"from": "test"})
    assert response.status_code == 409 and "never read its pipeline" in response.json()["detail"]


def test_roles(project, inline_workers, fast_engine):
    make_pipeline(project, DIAMOND)
    first = run_build(project)
    viewer, editor, outsider = make_user("vera"), make_user("ed"), make_user("otto")
    add_member(project, viewer, Role.VIEWER)
    add_member(project, editor, Role.EDITOR)
    url, body = f"/api/builds/{first.id}/rerun", {"from": "test"}
    assert post(Client(), url, body).status_code == 401
    assert post(api_client(outsider), url, body).status_code == 404
    assert post(api_client(viewer), url, body).status_code == 403
    assert Build.objects.count() == 1
    response = post(api_client(editor), url, body)
    assert response.status_code == 201
    assert response.json()["triggered_by"] == "ed"


# --- the build page -------------------------------------------------------------------------
def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_button_reruns_and_goes_to_the_new_build(
    project, user, inline_workers, fast_engine
):
    make_pipeline(project, DIAMOND)
    first = run_build(project)
    client = page_client(user)
    page = client.get(f"/builds/{first.id}/").content.decode()
    assert "Re-run from here" in page and f'action="/builds/{first.id}/rerun/"' in page
    assert "csrfmiddlewaretoken" in page

    response = client.post(f"/builds/{first.id}/rerun/", {"from": "test"})
    second = Build.objects.get(rerun_of=first)
    assert response.status_code == 302 and response["Location"] == f"/builds/{second.id}/"
    assert finish(second.id).state == "succeeded"
    page = client.get(f"/builds/{second.id}/").content.decode()
    link = f'reused from <a href="/builds/{first.id}/">build #{first.id}</a>'
    assert link in page  # the task table, for fetch and lint
    assert f'"reused_from": {first.id}' in page  # the panel's data
    assert f're-run of <a href="/builds/{first.id}/">build #{first.id}</a>' in page


def test_the_page_shows_refusals_as_messages(project, user, inline_workers, fast_engine):
    make_pipeline(project, DIAMOND)
    first = run_build(project)
    client = page_client(user)
    response = client.post(f"/builds/{first.id}/rerun/", {"from": "nope"}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [(f"/builds/{first.id}/", 302)]
    assert "has no task" in response.content.decode()
    Build.objects.filter(id=first.id).update(files_purged=True)
    response = client.post(f"/builds/{first.id}/rerun/", {"from": "test"}, follow=True)
    assert "retention" in response.content.decode()
    assert Build.objects.count() == 1


def test_viewers_get_no_button_and_a_403(project, inline_workers, fast_engine):
    make_pipeline(project, DIAMOND)
    first = run_build(project)
    viewer = make_user("vic")
    add_member(project, viewer, Role.VIEWER)
    client = page_client(viewer)
    assert "Re-run from here" not in client.get(f"/builds/{first.id}/").content.decode()
    assert client.post(f"/builds/{first.id}/rerun/", {"from": "test"}).status_code == 403
    assert Build.objects.count() == 1
