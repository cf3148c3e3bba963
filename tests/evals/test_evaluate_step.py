"""The `evaluate` pipeline step: a whole evaluation inside one task of a user's
pipeline, run by the real engine on the offline provider (fixture `capital`: items 1
and 3 pass, item 2 fails, score 0.25), recorded as an Evaluation like an API-started
one, failing its task below `min_pass_rate`."""

import pytest
from django.test import Client

from builds.selectors import task_log
from builds.steps import StepCancelled, StepContext
from evals.models import Evaluation
from evals.steps import run_evaluate_step
from prompts import services as prompt_services
from prompts.models import PromptRun
from tests.factories import api_client, make_pipeline, run_build

from .conftest import send

PROMPT = "/api/projects/acme/prompts/capital"


def pipeline(step: str) -> str:
    return f"tasks:\n  check:\n    steps:\n      - {step}\n"


def build_with(project, user, step: str):
    make_pipeline(project, pipeline(step))
    build = run_build(project, user=user)
    return build, build.tasks.get(name="check")


def test_a_passing_evaluation_records_its_results_and_succeeds(
    capital, user, inline_workers, fast_engine
):
    prompt_services.set_label(
        user=user, project=capital, name="capital", label="candidate", number=1
    )
    step = "{evaluate: capital@candidate, dataset: capitals, min_pass_rate: 0.6}"
    build, task = build_with(capital, user, step)
    assert build.state == "succeeded", task.error
    evaluation = Evaluation.objects.get()
    assert (evaluation.build_id, evaluation.task_id) == (build.id, task.id)
    assert task.outputs["evaluation"] == evaluation.id
    assert (task.outputs["passed"], task.outputs["failed"]) == (2, 1)
    assert task.outputs["pass_rate"] == pytest.approx(2 / 3)
    assert task.outputs["score"] == pytest.approx((1 + 0.25 + 1) / 3)
    assert task.claims.get("llm") == 1  # it calls models: it claims the pool
    # The runs are the task's, one per item, of the version the label pointed at.
    runs = PromptRun.objects.filter(task=task)
    assert sorted(r.variables["country"] for r in runs)[:2] == ["France", "Italy"]
    assert {r.ref for r in runs} == {"capital#1"}
    log = task_log(build=build, name="check")
    assert f"evaluation {evaluation.id}: capital#1 on dataset capitals v3 (3 items)" in log
    assert "item 1: passed, score 1.000" in log
    assert "item 2: failed (1 assertion(s)), score 0.250" in log
    assert "2 of 3 items passed, pass rate 0.666667 (min_pass_rate 0.6)" in log
    # Listed with the prompt's evaluations, in the same shape as an evaluation build's.
    alice = api_client(user)
    (listed,) = alice.get(f"{PROMPT}/evaluations").json()
    assert listed["id"] == evaluation.id and listed["build"] == build.id
    assert (listed["state"], listed["version"], listed["dataset_version"]) == ("succeeded", 1, 3)
    assert listed["tokens_in"] == sum(r.tokens_in for r in runs) > 0
    assert float(listed["cost_usd"]) == 0.0
    detail = alice.get(f"{PROMPT}/evaluations/{evaluation.id}").json()
    assert [(i["item"], i["state"], i["passed"], i["score"]) for i in detail["items"]] == [
        (1, "succeeded", True, 1.0),
        (2, "succeeded", False, 0.25),
        (3, "succeeded", True, 1.0),
    ]
    assert detail["items"][1]["failures"][0].startswith(
        "expect.1 (contains): expected text containing 'London'"
    )
    assert "capital of France?" in detail["items"][0]["output"]
    browser = Client()
    browser.force_login(user)
    page = browser.get(f"/p/acme/prompts/capital/evaluations/{evaluation.id}/").content.decode()
    assert f"build {build.id}</a> (evaluate step of task check)" in page


def test_below_the_threshold_the_task_fails_and_the_evaluation_still_counts_for_a_gate(
    capital, user, inline_workers, fast_engine
):
    alice = api_client(user)
    gate = {"dataset": "capitals", "min_pass_rate": 0.6}
    assert send(alice, "put", f"{PROMPT}/labels/production/gate", gate).status_code == 200
    build, task = build_with(capital, user, "{evaluate: 'capital#1', dataset: capitals}")
    assert build.state == "failed" and task.state == "failed"
    assert "pass rate 0.666667 is below min_pass_rate 1" in task.error  # default: 1
    assert "2 of 3 items passed" in task.error
    assert task.outputs["pass_rate"] == pytest.approx(2 / 3)  # outputs kept on failure
    evaluation = task.outputs["evaluation"]
    # Every item ran and was judged: the evaluation finished, and the gate's own
    # threshold (0.6) is what decides the label move.
    assert alice.get(f"{PROMPT}/evaluations/{evaluation}").json()["state"] == "succeeded"
    r = send(alice, "put", f"{PROMPT}/labels/production", {"version": 1})
    assert r.status_code == 200, r.json()
    assert alice.get(PROMPT).json()["label_history"][0]["evaluation"] == evaluation
    # A stricter gate names the inline evaluation as the best one found.
    send(alice, "put", f"{PROMPT}/labels/staging/gate", {**gate, "min_pass_rate": 0.9})
    r = send(alice, "put", f"{PROMPT}/labels/staging", {"version": 1})
    assert r.status_code == 409
    assert f"best evaluation of v1 is {evaluation}, with 0.666667" in r.json()["detail"]


def test_a_missing_dataset_or_prompt_fails_the_task_with_a_clear_message(
    capital, user, inline_workers, fast_engine
):
    _, task = build_with(capital, user, "{evaluate: 'capital#1', dataset: nope}")
    assert task.state == "failed"
    assert "no dataset 'nope' in project 'acme'" in task.error
    _, task = build_with(capital, user, "{evaluate: capital@gone, dataset: capitals}")
    assert task.state == "failed" and "gone" in task.error
    assert not Evaluation.objects.exists()


def test_an_item_that_cannot_run_fails_the_step_and_the_evaluation(
    capital, user, inline_workers, fast_engine, down_provider
):
    step = "{evaluate: 'capital#1', dataset: capitals, min_pass_rate: 0, provider: down}"
    _, task = build_with(capital, user, step)
    assert task.state == "failed"
    assert "3 item(s) could not run (item 1: prompt run" in task.error
    assert "cannot connect" in task.error
    body = api_client(user).get(f"{PROMPT}/evaluations/{task.outputs['evaluation']}").json()
    assert body["state"] == "failed" and body["provider"] == "down"
    assert all(i["passed"] is None and "cannot connect" in i["error"] for i in body["items"])
    assert "item 2: not judged: prompt run" in task_log(build=task.build, name="check")
    # Not finished: it justifies no gated move.
    alice = api_client(user)
    send(
        alice,
        "put",
        f"{PROMPT}/labels/production/gate",
        {"dataset": "capitals", "min_pass_rate": 0},
    )
    assert send(alice, "put", f"{PROMPT}/labels/production", {"version": 1}).status_code == 409


@pytest.mark.parametrize(
    ("step", "key", "message"),
    [
        ("{evaluate: 'Capital!', dataset: capitals}", "evaluate", "is not a prompt reference"),
        ("{evaluate: capital@prod}", "dataset", "dataset must be the name of a dataset"),
        ("{evaluate: capital, dataset: ''}", "dataset", "dataset must be the name"),
        ("{evaluate: capital, dataset: d, min_pass_rate: 1.5}", "min_pass_rate", "0 to 1"),
        ("{evaluate: capital, dataset: d, min_pass_rate: high}", "min_pass_rate", "0 to 1"),
        ("{evaluate: capital, dataset: d, min_pass_rate: true}", "min_pass_rate", "0 to 1"),
        ("{evaluate: capital, dataset: d, provider: ''}", "provider", "non-empty string"),
        ("{evaluate: capital, dataset: d, vars: {}}", "vars", "unknown key(s)"),
    ],
)
def test_bad_definitions_are_refused_at_save_naming_the_key(project, user, step, key, message):
    r = send(
        api_client(user),
        "post",
        "/api/projects/acme/pipelines",
        {"name": "main", "definition": pipeline(step)},
    )
    assert r.status_code == 422, r.json()
    (problem,) = r.json()["detail"]
    assert message in problem["msg"] and key in problem["msg"]
    assert problem["loc"] == "tasks.check.steps[0]" and problem["line"] == 4


def test_templated_values_are_checked_once_rendered(capital, user, inline_workers, fast_engine):
    definition = """params: {rate: "0.5", prompt: capital}
tasks:
  check:
    steps:
      - evaluate: "{{ params.prompt }}#1"
        dataset: capitals
        min_pass_rate: "{{ params.rate }}"
"""
    make_pipeline(capital, definition)
    assert run_build(capital, user=user).state == "succeeded"
    build = run_build(capital, user=user, params={"rate": "lots"})
    assert "min_pass_rate must be a number from 0 to 1, not 'lots'" in build.tasks.get().error


@pytest.fixture
def step_context(capital, user, tmp_path):
    """The context of a task of a build that no worker runs, for calling the step."""
    from builds.services import trigger_build

    make_pipeline(capital, pipeline("{evaluate: 'capital#1', dataset: capitals}"))
    build = trigger_build(user=user, project=capital, pipeline="main")
    lines: list[str] = []

    def context(**kwargs):
        values = {
            "project": capital,
            "build": build,
            "task": build.tasks.get(),
            "workspace": tmp_path,
            "env": {},
            "timeout": 60.0,
            "log": lines.append,
            "should_stop": lambda: False,
            **kwargs,
        }
        return StepContext(**values)

    return context, lines


def test_a_stop_request_cancels_the_evaluation_between_items(step_context):
    context, lines = step_context
    # Stop once the first item is logged.
    ctx = context(should_stop=lambda: any(line.startswith("item 1") for line in lines))
    with pytest.raises(StepCancelled):
        run_evaluate_step({"evaluate": "capital#1", "dataset": "capitals"}, ctx)
    evaluation = Evaluation.objects.get()
    assert evaluation.state == "cancelled"
    states = [(r["item"], r["state"]) for r in evaluation.item_results]
    assert states == [(1, "succeeded"), (2, "cancelled"), (3, "cancelled")]


def test_running_out_of_time_fails_the_step_and_the_evaluation(step_context):
    from builds.steps import StepFailed

    context, _ = step_context
    with pytest.raises(StepFailed, match=r"evaluation \d+ timed out after 0 of 3 items"):
        run_evaluate_step({"evaluate": "capital#1", "dataset": "capitals"}, context(timeout=0.0))
    assert Evaluation.objects.get().state == "failed"


def test_a_stale_running_evaluation_does_not_mark_its_tasks_other_evaluation_failed(
    capital, user, inline_workers, fast_engine
):
    """A worker died in attempt 1 (its row stayed running) and the retry finished: the
    lists show the retry's evaluation as it is and the dead one as failed."""
    build, task = build_with(capital, user, "{evaluate: 'capital#1', dataset: capitals}")
    finished = Evaluation.objects.get()
    stale = Evaluation.objects.get(pk=finished.pk)
    stale.pk = None
    stale.state = Evaluation.State.RUNNING
    stale.save()
    listed = {e["id"]: e["state"] for e in api_client(user).get(f"{PROMPT}/evaluations").json()}
    assert listed == {finished.id: "succeeded", stale.id: "failed"}


def test_a_judge_gets_only_the_time_left_of_the_step(step_context, capital):
    """Judges run after the answer, within the same step timeout: with none left the
    graded assertion fails with the reason, and no judge is called."""
    import time

    from evals.judging import judge_run
    from prompts.refs import parse_ref

    context, _ = step_context
    run = prompt_services.run_prompt(
        user=None, project=capital, ref=parse_ref("capital#1"), variables={"country": "Peru"}
    )
    expect = [{"type": "graded_by", "prompt": "capital#1"}]
    judged = judge_run(run, expect, context(), deadline=time.monotonic() - 1)
    assert not judged.result.passed and judged.judge_runs == []
    assert "no time left to run the judge" in judged.result.failures[0]
    assert PromptRun.objects.count() == 1
