"""Secrets in builds: declared ones reach shell steps, no value reaches a log, an
output, an error or an event, and a new value re-runs cached tasks that declare it."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from builds.selectors import task_log
from builds.steps import StepFailed, StepKind, step_kinds
from prompts import services as prompt_services
from prompts.models import PromptRun
from tasks.models import Event
from tests.factories import api_client, make_pipeline, run_build, task_states
from vault.services import delete_secret, set_secret

TOKEN = "tok-3f9a7c21-deploy"
OTHER = "other-91b2e4-undeclared"


def secret(project, name, value):
    return set_secret(user=None, project=project, name=name, value=value)


def everything_stored(build):
    """Every text the build wrote where people or later tasks can see it."""
    events = list(Event.objects.filter(build_id=build.id).values_list("data", flat=True))
    tasks = list(build.tasks.values("outputs", "error", "cache_key"))
    return json.dumps([events, tasks, build.error], default=str)


def test_a_declared_secret_reaches_the_step_and_is_masked_everywhere(
    project, user, inline_workers, fast_engine
):
    secret(project, "DEPLOY_TOKEN", TOKEN)
    make_pipeline(
        project,
        """
tasks:
  deploy:
    secrets: [DEPLOY_TOKEN]
    steps:
      - run: 'echo "token=$DEPLOY_TOKEN"; echo "$DEPLOY_TOKEN" | wc -c'
        output: said
""",
    )
    build = run_build(project)
    assert build.state == "succeeded", build.tasks.values("error")
    deploy = build.tasks.get(name="deploy")
    log = task_log(build=build, name="deploy")
    assert "token=***" in log and TOKEN not in log
    assert str(len(TOKEN) + 1) in log  # the step had the real value
    assert "token=***" in deploy.outputs["stdout_tail"]
    assert deploy.outputs["said"].startswith("token=***")
    assert TOKEN not in everything_stored(build)
    api_log = api_client(user).get(f"/api/builds/{build.id}/tasks/deploy/log")
    assert api_log.status_code == 200 and TOKEN not in api_log.content.decode()


def test_undeclared_secrets_never_reach_a_step(project, inline_workers, fast_engine):
    secret(project, "DEPLOY_TOKEN", TOKEN)
    secret(project, "OTHER_SECRET", OTHER)
    make_pipeline(
        project,
        """
tasks:
  plain: {steps: [{run: env, output: env}]}
  deploy: {secrets: [DEPLOY_TOKEN], steps: [{run: env, output: env}]}
""",
    )
    build = run_build(project)
    assert build.state == "succeeded"
    plain = build.tasks.get(name="plain").outputs["env"]
    deploy = build.tasks.get(name="deploy").outputs["env"]
    assert "DEPLOY_TOKEN" not in plain and "OTHER_SECRET" not in plain
    assert "DEPLOY_TOKEN=***" in deploy.splitlines()
    assert "OTHER_SECRET" not in deploy


def test_a_value_printed_in_two_pieces_is_masked_in_the_log(project, inline_workers, fast_engine):
    """The pieces arrive in separate reads, and the log flushes in between (every
    0.25 s): the first piece must be held back until the rest shows it is a value."""
    secret(project, "SPLIT", "split-secret-value")
    make_pipeline(
        project,
        """
tasks:
  t:
    steps:
      - run: "printf 'x split-sec'; sleep 0.8; printf 'ret-value y\\n'"
""",
    )
    build = run_build(project)
    assert build.state == "succeeded"
    log = task_log(build=build, name="t")
    assert "x *** y\n" in log and "split-secret-value" not in log
    assert build.tasks.get(name="t").outputs["stdout_tail"] == "x *** y\n"


def test_a_missing_secret_fails_the_task_naming_it(project, inline_workers, fast_engine):
    make_pipeline(
        project,
        "tasks:\n  t: {secrets: [NOT_SET_YET], steps: [{run: 'echo never'}]}\n",
    )
    build = run_build(project)
    assert task_states(build) == {"t": "failed"}
    task = build.tasks.get(name="t")
    assert "NOT_SET_YET" in task.error and "not set in project 'acme'" in task.error
    assert "never" not in task_log(build=build, name="t").replace("echo never", "")


def test_step_errors_and_outputs_are_masked(project, inline_workers, fast_engine, monkeypatch):
    """Whatever a step kind puts in its error or outputs (here a kind that repeats the
    value) is masked before it is stored or shown."""
    secret(project, "DEPLOY_TOKEN", TOKEN)
    real = step_kinds()["run"]

    def leaky(step, ctx):
        ctx.log(f"about to use {ctx.secrets['DEPLOY_TOKEN']}\n")
        raise StepFailed(f"server refused {TOKEN}", {"echo": [TOKEN], TOKEN: 1})

    monkeypatch.setitem(step_kinds(), "run", StepKind("run", real.keys, leaky))
    make_pipeline(project, "tasks:\n  t: {secrets: [DEPLOY_TOKEN], steps: [{run: 'x'}]}\n")
    build = run_build(project)
    task = build.tasks.get(name="t")
    assert task.state == "failed" and "server refused ***" in task.error
    assert task.outputs["echo"] == ["***"] and task.outputs["***"] == 1
    assert "about to use ***" in task_log(build=build, name="t")
    assert TOKEN not in everything_stored(build)


def test_prompt_runs_made_by_a_step_are_masked(project, user, inline_workers, fast_engine):
    secret(project, "DEPLOY_TOKEN", TOKEN)
    prompt_services.create_prompt(
        user=user,
        project=project,
        name="echo",
        body={"template": "Repeat {{ text }}", "variables": {"text": "string"}},
    )
    make_pipeline(
        project,
        f"""
tasks:
  ask:
    steps:
      - prompt: echo@latest
        vars: {{text: "the value {TOKEN}"}}
        output: answer
""",
    )
    build = run_build(project, user=user)
    assert build.state == "succeeded", build.tasks.values("error")
    run = PromptRun.objects.get()
    stored = json.dumps([run.variables, run.rendered, run.output, run.raw_response, run.attempts])
    assert TOKEN not in stored and "***" in stored
    assert TOKEN not in everything_stored(build)


CACHED = """
tasks:
  deploy: {cache: true, secrets: [DEPLOY_TOKEN], steps: [{run: 'echo deployed'}]}
  other: {cache: true, steps: [{run: 'echo other'}]}
"""


def test_a_new_value_of_a_declared_secret_re_runs_the_cached_task(
    project, inline_workers, fast_engine
):
    secret(project, "DEPLOY_TOKEN", TOKEN)
    make_pipeline(project, CACHED)
    first = run_build(project)
    assert task_states(first) == {"deploy": "succeeded", "other": "succeeded"}
    again = run_build(project)
    assert task_states(again) == {"deploy": "cached", "other": "cached"}
    secret(project, "DEPLOY_TOKEN", TOKEN + "-rotated")
    rotated = run_build(project)
    assert task_states(rotated) == {"deploy": "succeeded", "other": "cached"}
    keys = [b.tasks.get(name="deploy").cache_key for b in (first, again, rotated)]
    assert keys[0] == keys[1] != keys[2]
    # Deleted and set again: version 1 once more, but another secret; no stale hit.
    delete_secret(user=None, project=project, name="DEPLOY_TOKEN")
    secret(project, "DEPLOY_TOKEN", TOKEN)
    assert task_states(run_build(project)) == {"deploy": "succeeded", "other": "cached"}


@pytest.mark.parametrize("name", ["lower", "1ABC", "A-B"])
def test_bad_secret_names_are_refused_with_their_line(project, user, name):
    definition = f"tasks:\n  t:\n    secrets:\n      - OK_NAME\n      - {name}\n    steps: []\n"
    r = api_client(user).post(
        "/api/projects/acme/pipelines",
        json.dumps({"name": "main", "definition": definition}),
        content_type="application/json",
    )
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["line"] == 5 and problem["loc"] == "tasks.t.secrets[1]"
    assert "not a valid secret name" in problem["msg"]


def test_the_task_log_holds_back_a_possible_start_across_flushes(project):
    from builds.execution import TaskLog
    from builds.services import trigger_build
    from tasks.models import Task

    secret(project, "DEPLOY_TOKEN", TOKEN)
    make_pipeline(project, "tasks:\n  a: {steps: [{run: 'true'}]}\n")
    task = Task.objects.get(build=trigger_build(user=None, project=project, pipeline="main"))
    log = TaskLog(task, project.id)
    log.write("value: " + TOKEN[:5])
    log.flush()  # the heartbeat's timed flush, in the middle of the value
    log.write(TOKEN[5:] + " and then tok-")
    log.flush()
    log.end_of_output()  # the step ended: "tok-" cannot become the value any more
    rest = log.take_rest()
    logs = Event.objects.filter(task=task, type="log").order_by("id")
    texts = [data["text"] for data in logs.values_list("data", flat=True)]
    assert "".join(texts) + rest == "value: *** and then tok-"
    assert texts[0] == "value: "
    assert log.mask(f"error: {TOKEN}") == "error: ***"


def test_the_secret_part_of_a_cache_key():
    from builds.cache_key import KEY_VERSION, digest, task_cache_key

    parts = dict(steps=[{"run": "x"}], env={}, params={}, inputs={}, dependencies={})
    plain = task_cache_key(**parts)
    with_v1 = task_cache_key(**parts, secrets={"DEPLOY_TOKEN": [7, 1]})
    with_v2 = task_cache_key(**parts, secrets={"DEPLOY_TOKEN": [7, 2]})
    assert len({plain, with_v1, with_v2}) == 3
    whole = {"v": KEY_VERSION, "steps": [{"run": "x"}], "env": {}, "params": {}, "inputs": {}}
    assert plain == digest({**whole, "deps": {}})  # tasks without secrets keep their keys
    assert with_v1 == digest({**whole, "deps": {}, "secrets": {"DEPLOY_TOKEN": [7, 1]}})


def test_secret_values_are_read_only_for_a_project_that_has_secrets(
    project, inline_workers, fast_engine
):
    """An attempt asks for the values only where there are some: most projects have
    none, and the query was a tenth of a worker's time per step on PostgreSQL."""
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'echo hi'}]}\n")

    def value_reads():
        with CaptureQueriesContext(connection) as queries:
            build = run_build(project)
        assert build.state == "succeeded"
        return [q["sql"] for q in queries.captured_queries if "value_encrypted" in q["sql"]]

    assert value_reads() == []
    secret(project, "UNUSED", OTHER)
    assert len(value_reads()) == 1  # the attempt still reads them to mask its log


def test_a_task_taken_in_turn_through_a_pool_gets_its_secret_masked(
    project, inline_workers, fast_engine, monkeypatch
):
    """The worker that settles a pooled task runs the next one itself (`then_next`),
    without reading the task afresh: the secrets are read for that attempt too."""
    from builds import execution
    from builds.models import ResourcePool

    taken_in_turn = []
    real_settle_and_take = execution.settle_and_take

    def recording(*args, **kwargs):
        taken = real_settle_and_take(*args, **kwargs)
        if taken is not None:
            taken_in_turn.append(taken.task.name)
        return taken

    monkeypatch.setattr(execution, "settle_and_take", recording)
    ResourcePool.objects.create(project=project, name="cpu", capacity=1)
    secret(project, "DEPLOY_TOKEN", TOKEN)
    make_pipeline(
        project,
        """
tasks:
  first: {resources: {cpu: 1}, steps: [{run: 'echo first'}]}
  second:
    needs: [first]
    resources: {cpu: 1}
    secrets: [DEPLOY_TOKEN]
    steps: [{run: 'echo "token=$DEPLOY_TOKEN"'}]
""",
    )
    build = run_build(project)
    assert build.state == "succeeded", build.tasks.values("error")
    assert taken_in_turn == ["second"]
    log = task_log(build=build, name="second")
    assert "token=***" in log and TOKEN not in everything_stored(build)
