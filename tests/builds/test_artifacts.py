"""Files that follow the task: each attempt starts in a fresh workspace with the
artifacts of its needs, stores what it declares, and a cache hit hands on the same files."""

import hashlib
import time
from pathlib import Path

import pytest

from builds.artifacts import artifact_store, blob_name
from builds.models import Blob
from builds.selectors import task_log
from tasks.models import Task
from tests.factories import add_member, api_client, make_pipeline, make_user, run_build, task_states

pytestmark = pytest.mark.usefixtures("inline_workers", "fast_engine")

FLOW = """
tasks:
  make:
    steps:
      - run: mkdir -p out/sub && echo one > out/a.txt && echo two > out/sub/b.txt && echo x > x.txt
    artifacts: [out/]
  use:
    needs: [make]
    steps: [{run: "cat out/a.txt out/sub/b.txt; test ! -e x.txt && echo no-scratch"}]
  later:
    needs: [use]
    steps: [{run: "test ! -e out && echo not-transitive"}]
  alone:
    steps: [{run: "test ! -e out && echo fresh"}]
"""


def test_a_task_gets_its_needs_artifacts_and_nothing_else(project):
    make_pipeline(project, FLOW)
    build = run_build(project)
    assert build.state == "succeeded", task_states(build)
    assert "one\ntwo\nno-scratch" in task_log(build=build, name="use")
    assert "not-transitive" in task_log(build=build, name="later")  # as in GitLab
    assert "fresh" in task_log(build=build, name="alone")
    make = Task.objects.get(build=build, name="make")
    assert sorted(f["path"] for f in make.artifacts) == ["out/a.txt", "out/sub/b.txt"]
    assert "artifacts: stored 2 file(s)" in task_log(build=build, name="make")


def test_stored_bytes_are_content_addressed_and_deduplicated(project):
    make_pipeline(project, FLOW)
    run_build(project)
    run_build(project)
    digest = hashlib.sha256(b"one\n").hexdigest()
    assert Blob.objects.filter(sha256=digest).count() == 1
    with artifact_store().open(blob_name(digest)) as fh:
        assert fh.read() == b"one\n"
    assert Blob.objects.count() == 2  # two distinct contents over two builds


def test_file_modes_survive_the_trip(project):
    make_pipeline(
        project,
        """
tasks:
  make:
    steps: [{run: "printf '#!/bin/sh\\necho ran' > tool.sh && chmod 755 tool.sh"}]
    artifacts: [tool.sh]
  use: {needs: [make], steps: [{run: ./tool.sh}]}
""",
    )
    build = run_build(project)
    assert build.state == "succeeded"
    assert "ran" in task_log(build=build, name="use")


def test_a_missing_declared_artifact_fails_the_task_unless_optional(project):
    make_pipeline(
        project,
        """
tasks:
  strict: {steps: [{run: "true"}], artifacts: [report.xml]}
  lenient: {steps: [{run: "true"}], artifacts: [{path: coverage/, optional: true}]}
""",
    )
    build = run_build(project)
    states = task_states(build)
    assert states == {"strict": "failed", "lenient": "succeeded"}
    strict = Task.objects.get(build=build, name="strict")
    assert "'report.xml' matches no file" in strict.error
    assert "'report.xml' matches no file" in task_log(build=build, name="strict")


def test_a_symlink_is_not_stored(project):
    make_pipeline(
        project,
        "tasks:\n  t: {steps: [{run: 'ln -s /etc/passwd leak'}], artifacts: [leak]}\n",
    )
    build = run_build(project)
    assert build.state == "failed"
    assert "not a regular file" in Task.objects.get(build=build).error


def test_size_limits_fail_the_task_with_a_message_in_its_log(project, settings):
    settings.BUILDSITE = {
        **settings.BUILDSITE,
        "ARTIFACT_MAX_FILE_BYTES": 1000,
        "ARTIFACT_MAX_BUILD_BYTES": 1500,
    }
    make_pipeline(
        project,
        """
tasks:
  big: {steps: [{run: "head -c 2000 /dev/zero > big.bin"}], artifacts: [big.bin]}
  first: {steps: [{run: "head -c 900 /dev/urandom > a.bin"}], artifacts: [a.bin]}
  second: {needs: [first], steps: [{run: "head -c 900 /dev/urandom > b.bin"}], artifacts: [b.bin]}
""",
    )
    build = run_build(project)
    assert task_states(build) == {"big": "failed", "first": "succeeded", "second": "failed"}
    assert "over the limit per file of 1000 bytes" in task_log(build=build, name="big")
    assert "build's limit of 1500 bytes" in task_log(build=build, name="second")


def test_patterns_leaving_the_workspace_are_refused_when_saved(project, user):
    client = api_client(user, project)
    definition = "tasks:\n  t:\n    steps: [{run: 'true'}]\n    artifacts: ['../../etc/passwd']\n"
    response = client.post(
        f"/api/projects/{project.slug}/pipelines",
        {"name": "main", "definition": definition},
        content_type="application/json",
    )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == "tasks.t.artifacts[0]" and problem["line"] == 4
    assert "leaves the workspace" in problem["msg"]


CACHED = """
tasks:
  build:
    cache: true
    steps:
      - run: mkdir -p dist && cat /proc/sys/kernel/random/uuid > dist/app.txt && cat dist/app.txt
        output: made
    artifacts: [dist/]
  ship:
    needs: [build]
    steps: [{run: "cat dist/app.txt"}]
"""


def test_a_cache_hit_restores_the_files_it_stored(project):
    make_pipeline(project, CACHED)
    first = run_build(project)
    second = run_build(project)
    assert task_states(second) == {"build": "cached", "ship": "succeeded"}
    made = Task.objects.get(build=first, name="build").outputs["made"].strip()
    assert task_log(build=second, name="ship").splitlines()[-1] == made  # first build's bytes
    restored = Task.objects.get(build=second, name="build").artifacts
    assert restored == Task.objects.get(build=first, name="build").artifacts


FALSE_HIT = """
tasks:
  generate:
    steps: [{run: "cat /proc/sys/kernel/random/uuid > data.txt"}]
    artifacts: [data.txt]
  consume:
    needs: [generate]
    cache: true
    inputs: [data.txt]
    steps: [{run: "cat data.txt", output: seen}]
"""


def test_new_content_from_a_dependency_makes_the_cached_consumer_run_again(project):
    """The false hit of the issue: the key must come from the files the task is given."""
    make_pipeline(project, FALSE_HIT)
    seen = set()
    for _ in range(3):
        build = run_build(project)
        assert task_states(build) == {"generate": "succeeded", "consume": "succeeded"}
        data = Task.objects.get(build=build, name="generate").artifacts[0]["sha256"]
        consumed = Task.objects.get(build=build, name="consume").outputs["seen"].strip()
        assert hashlib.sha256(f"{consumed}\n".encode()).hexdigest() == data
        seen.add(consumed)
    assert len(seen) == 3


def test_same_content_from_a_dependency_is_a_hit(project):
    make_pipeline(project, FALSE_HIT.replace("cat /proc/sys/kernel/random/uuid", "echo same"))
    run_build(project)
    assert task_states(run_build(project)) == {"generate": "succeeded", "consume": "cached"}


def test_an_input_that_matches_nothing_fails_the_task_saying_so(project):
    make_pipeline(
        project,
        "tasks:\n  t: {cache: true, inputs: [src/*.py], steps: [{run: 'echo never'}]}\n",
    )
    build = run_build(project)
    assert build.state == "failed"
    log = task_log(build=build, name="t")
    assert "inputs: 'src/*.py' matches no file the task is given" in log
    assert "never" not in log


# --- API ---------------------------------------------------------------------------------
def test_artifacts_are_listed_and_downloaded_through_the_api(project, user):
    make_pipeline(project, FLOW)
    build = run_build(project)
    client = api_client(user, project)
    listed = client.get(f"/api/builds/{build.id}/artifacts").json()
    assert listed == [
        {
            "task": "make",
            "path": "out/a.txt",
            "size": 4,
            "sha256": hashlib.sha256(b"one\n").hexdigest(),
        },
        {
            "task": "make",
            "path": "out/sub/b.txt",
            "size": 4,
            "sha256": hashlib.sha256(b"two\n").hexdigest(),
        },
    ]
    response = client.get(f"/api/builds/{build.id}/artifacts/make/out/sub/b.txt")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"two\n"
    assert response["Content-Disposition"] == 'attachment; filename="b.txt"'


def test_viewers_download_and_strangers_get_404(project):
    make_pipeline(project, FLOW)
    build = run_build(project)
    viewer, stranger = make_user("viewer"), make_user("stranger")
    add_member(project, viewer, "viewer")
    url = f"/api/builds/{build.id}/artifacts/make/out/a.txt"
    assert api_client(viewer, project).get(url).status_code == 200
    assert api_client(stranger).get(url).status_code == 404
    assert api_client(stranger).get(f"/api/builds/{build.id}/artifacts").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["make/../../../etc/passwd", "make/out/../out/a.txt", "make/out", "make/x.txt", "x/a"],
)
def test_unknown_and_traversal_paths_are_404(project, user, path):
    make_pipeline(project, FLOW)
    build = run_build(project)
    response = api_client(user, project).get(f"/api/builds/{build.id}/artifacts/{path}")
    assert response.status_code == 404


def test_cached_tasks_list_the_artifacts_they_restored(project, user):
    make_pipeline(project, CACHED)
    run_build(project)
    second = run_build(project)
    listed = api_client(user, project).get(f"/api/builds/{second.id}/artifacts").json()
    assert [(a["task"], a["path"]) for a in listed] == [("build", "dist/app.txt")]
    detail = api_client(user, project).get(f"/api/builds/{second.id}").json()
    build_task = next(t for t in detail["tasks"] if t["name"] == "build")
    assert build_task["state"] == "cached" and build_task["artifacts"][0]["path"] == "dist/app.txt"


def test_the_workspace_is_gone_after_the_attempt(project, settings):
    make_pipeline(project, FLOW)
    run_build(project)
    leftovers = [p for p in Path(settings.BUILDSITE["WORKSPACE_DIR"]).glob("*/*")]
    assert leftovers == []


def test_declaring_artifacts_on_a_cached_task_changes_its_key(project):
    """A hit stored before the task declared its files would restore none of them."""
    before = "tasks:\n  t: {cache: true, steps: [{run: 'echo x > f'}]}\n"
    make_pipeline(project, before)
    run_build(project)
    assert task_states(run_build(project)) == {"t": "cached"}
    make_pipeline(project, before.replace("]}", "], artifacts: [f]}"))
    build = run_build(project)
    assert task_states(build) == {"t": "succeeded"}
    assert [f["path"] for f in Task.objects.get(build=build).artifacts] == ["f"]


def test_artifacts_on_a_task_without_steps_are_refused(project):
    from buildsite.errors import InvalidInput

    with pytest.raises(InvalidInput, match="without steps has no files"):
        make_pipeline(project, "tasks:\n  join: {artifacts: [x]}\n")


def test_what_a_step_leaves_running_ends_with_it(project, unsandboxed, tmp_path):
    """Nothing may change the workspace while its artifacts are collected and stored."""
    alive = tmp_path / "alive"
    make_pipeline(
        project,
        f"""
tasks:
  t:
    steps:
      - run: |
          echo good > out.txt
          (sleep 0.5; touch {alive}) > /dev/null 2>&1 &
    artifacts: [out.txt]
""",
    )
    build = run_build(project)
    assert build.state == "succeeded"
    time.sleep(1.0)
    assert not alive.exists()


def test_every_attempt_gets_a_new_directory(project, unsandboxed):
    """A workspace a step made unwritable is not handed to the next attempt."""
    make_pipeline(
        project,
        """
tasks:
  a: {steps: [{run: "mkdir locked && touch locked/x && chmod 500 locked && pwd"}]}
  b: {needs: [a], steps: [{run: "ls -A; test ! -e locked && pwd"}]}
""",
    )
    build = run_build(project)
    assert task_states(build) == {"a": "succeeded", "b": "succeeded"}
    first = task_log(build=build, name="a").splitlines()[-1]
    assert task_log(build=build, name="b").splitlines()[-1] != first


def test_a_file_and_a_directory_at_one_path_fail_with_a_message(project):
    make_pipeline(
        project,
        """
tasks:
  a: {steps: [{run: "echo x > out"}], artifacts: [out]}
  b: {steps: [{run: "mkdir out && echo y > out/x"}], artifacts: [out]}
  c: {needs: [a, b], steps: [{run: "true"}]}
""",
    )
    build = run_build(project)
    assert task_states(build)["c"] == "failed"
    assert "cannot restore 'out/x'" in Task.objects.get(build=build, name="c").error


def test_a_purged_build_cannot_be_retried(project, user):
    from datetime import timedelta

    from django.utils import timezone

    from builds.models import Build

    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'exit 1'}]}\n")
    build = run_build(project)
    Build.objects.filter(id=build.id).update(
        finished_at=timezone.now() - timedelta(days=365), files_purged=True
    )
    response = api_client(user, project).post(f"/api/builds/{build.id}/retry")
    assert response.status_code == 409 and "retention" in response.json()["detail"]


def test_a_missing_stored_file_is_a_404_not_a_500(project, user):
    make_pipeline(project, FLOW)
    build = run_build(project)
    digest = hashlib.sha256(b"one\n").hexdigest()
    artifact_store().delete(blob_name(digest))
    response = api_client(user, project).get(f"/api/builds/{build.id}/artifacts/make/out/a.txt")
    assert response.status_code == 404
