"""The `document` build step, end to end through a pipeline on inline workers."""

from builds.selectors import task_log
from docs_engine.models import Document
from tests.factories import make_pipeline, run_build, task_states

PIPELINE = """
params: {version: "1.0.0", notes: "All good."}
tasks:
  notes:
    steps:
      - run: echo "Fixed {{ params.version }}"
        output: summary
  publish:
    needs: [notes]
    steps:
      - document: releases/{{ params.version }}
        title: Release {{ params.version }}
        body: |
          # Release {{ params.version }}

          {{ tasks.notes.outputs.summary }}. {{ params.notes }}
        message: notes for {{ params.version }}
        tags: [release]
        publish: true
"""


def test_a_pipeline_publishes_a_document_and_rerun_writes_nothing(
    project, user, inline_workers, fast_engine
):
    make_pipeline(project, PIPELINE)
    build = run_build(project, user=user)
    assert build.state == "succeeded", task_states(build)
    outputs = build.tasks.get(name="publish").outputs
    assert outputs == {"revision": 1, "path": "releases/1.0.0", "changed": True, "published": True}
    doc = Document.objects.get(project=project, path="releases/1.0.0")
    revision = doc.current_revision
    assert revision.body == "# Release 1.0.0\n\nFixed 1.0.0. All good.\n"
    assert (revision.author, revision.message, revision.tags) == (
        user,
        "notes for 1.0.0",
        ["release"],
    )
    assert doc.published_revision == revision

    again = run_build(project, user=user)
    assert again.tasks.get(name="publish").outputs["revision"] == 1
    assert again.tasks.get(name="publish").outputs["changed"] is False
    assert doc.revisions.count() == 1

    changed = run_build(project, user=user, params={"notes": "Even better."})
    assert changed.tasks.get(name="publish").outputs["revision"] == 2


BROKEN = """
tasks:
  publish:
    steps:
      - document: guides/broken
        title: Broken
        body: "# Broken\\n\\n##\\n\\n[x](nowhere)\\n"
"""


def test_validation_errors_fail_the_task_with_messages_in_the_log(
    project, user, inline_workers, fast_engine
):
    make_pipeline(project, BROKEN)
    build = run_build(project, user=user)
    assert task_states(build) == {"publish": "failed"}
    task = build.tasks.get(name="publish")
    assert "failed validation" in task.error
    log = task_log(build=build, name="publish")
    assert "line 3: empty heading" in log
    assert "line 5: broken link 'nowhere'" in log
    assert not Document.objects.filter(path="guides/broken").exists()


def test_a_build_without_an_author_fails_clearly(project, inline_workers, fast_engine):
    make_pipeline(project, BROKEN)
    build = run_build(project, user=None)
    task = build.tasks.get(name="publish")
    assert task.state == "failed" and "build's author" in task.error


def test_a_document_step_can_snapshot_the_docs_it_published(
    project, user, inline_workers, fast_engine
):
    from docs_engine.models import Snapshot

    make_pipeline(
        project,
        PIPELINE.replace(
            "        publish: true\n",
            "        publish: true\n        snapshot: v{{ params.version }}\n",
        ),
    )
    build = run_build(project, user=user)
    assert build.state == "succeeded", task_states(build)
    assert build.tasks.get(name="publish").outputs["snapshot"] == "v1.0.0"
    assert Snapshot.objects.filter(project=project, name="v1.0.0").exists()
