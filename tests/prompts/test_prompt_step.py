"""A pipeline whose prompt step (offline provider) feeds a shell step, end to end."""

from builds.selectors import task_log
from prompts import services
from prompts.models import PromptRun
from tests.factories import make_pipeline, run_build, task_states

PIPELINE = """
params: {version: "2.1.0"}
tasks:
  notes:
    steps:
      - prompt: release-notes@production
        vars: {version: "{{ params.version }}", count: "3"}
        output: notes
  publish:
    needs: [notes]
    steps:
      - run: >-
          echo "headline={{ tasks.notes.outputs.notes.headline }}
          items={{ tasks.notes.outputs.notes['items'] | length }}"
        output: line
"""

SCHEMA = {
    "type": "object",
    "properties": {
        "headline": {"type": "string"},
        "items": {"type": "array", "items": {"type": "string"}, "minItems": 2},
    },
    "required": ["headline", "items"],
}


def make_prompt(project, user, schema):
    services.create_prompt(
        user=user,
        project=project,
        name="release-notes",
        body={
            "messages": [
                {"role": "system", "content": "You write release notes as JSON."},
                {"role": "user", "content": "Version {{ version }}, {{ count }} highlights."},
            ],
            "variables": {"version": "string", "count": "integer"},
            "response_format": "json",
            "response_schema": schema,
        },
    )
    services.set_label(
        user=user, project=project, name="release-notes", label="production", number=1
    )


def test_prompt_output_feeds_a_shell_step(project, user, inline_workers, fast_engine):
    make_prompt(project, user, SCHEMA)
    make_pipeline(project, PIPELINE)
    build = run_build(project, user=user)
    assert task_states(build) == {"notes": "succeeded", "publish": "succeeded"}, build.tasks.values(
        "name", "error"
    )
    notes = build.tasks.get(name="notes")
    run = PromptRun.objects.get(id=notes.outputs["prompt_run"])
    assert notes.outputs["notes_run"] == run.id
    assert run.task_id == notes.id and run.status == "succeeded"
    assert run.variables == {"version": "2.1.0", "count": 3}
    assert run.rendered[1]["content"] == "Version 2.1.0, 3 highlights."
    assert notes.outputs["notes"] == run.parsed
    publish = build.tasks.get(name="publish")
    assert publish.outputs["line"] == f"headline={run.parsed['headline']} items=2"
    log = task_log(build=build, name="notes")
    assert "prompt release-notes@production" in log and f"run {run.id}:" in log


def test_an_answer_that_never_validates_fails_the_task_with_the_reason(
    project, user, inline_workers, fast_engine
):
    # The offline provider cannot satisfy a pattern, so every repair fails too.
    strict = {
        "type": "object",
        "properties": {
            "headline": {"type": "string", "pattern": "^v[0-9]+$"},
            "items": {"type": "array"},
        },
        "required": ["headline", "items"],
    }
    make_prompt(project, user, strict)
    make_pipeline(project, PIPELINE)
    build = run_build(project, user=user)
    assert task_states(build) == {"notes": "failed", "publish": "upstream_failed"}
    notes = build.tasks.get(name="notes")
    assert "does not match the schema" in notes.error
    assert "after 3 attempt(s)" in notes.error
    run = PromptRun.objects.get(id=notes.outputs["prompt_run"])
    assert run.status == "failed" and len(run.attempts) == 3
    assert "does not match the schema" in task_log(build=build, name="notes")


def test_a_missing_variable_fails_the_task_naming_it(project, user, inline_workers, fast_engine):
    make_prompt(project, user, SCHEMA)
    make_pipeline(
        project,
        """
tasks:
  notes:
    steps:
      - prompt: release-notes@production
        vars: {version: "1"}
""",
    )
    build = run_build(project, user=user)
    notes = build.tasks.get(name="notes")
    assert notes.state == "failed"
    assert "missing variable 'count'" in notes.error
