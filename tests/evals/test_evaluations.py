"""Evaluations end to end: a build of one task per dataset item (prompt step + assert
step) on the offline provider, its results read from the build, cancelling, a provider
that is down, the API's refusals and roles."""

import pytest

from audit.models import AuditEntry
from builds.models import Build
from buildsite.roles import Role
from evals import pipeline
from evals.models import Evaluation
from prompts import services as prompt_services
from prompts.models import PromptRun
from tests.factories import add_member, api_client, make_user

from .conftest import send, wait_for

URL = "/api/projects/acme/prompts/capital/evaluations"


def test_an_evaluation_runs_every_item_and_reports_exact_results(
    capital, user, inline_workers, fast_engine
):
    alice = api_client(user)
    r = send(alice, "post", URL, {"dataset": "capitals", "version": 1})
    assert r.status_code == 201, r.json()
    started = r.json()
    assert set(started) == {"id", "build"}
    build = wait_for(started["build"])
    assert build.state == "succeeded", list(build.tasks.values("name", "state", "error"))
    assert build.trigger == "evaluation" and build.pipeline.name == "eval-capital"
    r = alice.get(f"{URL}/{started['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == started["id"] and body["build"] == build.id
    assert (body["state"], body["version"], body["dataset"], body["dataset_version"]) == (
        "succeeded",
        1,
        "capitals",
        3,
    )
    assert (body["passed"], body["failed"]) == (2, 1)
    assert body["pass_rate"] == pytest.approx(2 / 3)
    assert body["score"] == pytest.approx((1 + 0.25 + 1) / 3)
    runs = PromptRun.objects.filter(task__build=build)
    assert runs.count() == 3
    assert body["tokens_in"] == sum(r.tokens_in for r in runs) > 0
    assert body["tokens_out"] == sum(r.tokens_out for r in runs) > 0
    assert float(body["cost_usd"]) == 0.0  # offline: known, zero
    items = body["items"]
    assert [(i["item"], i["passed"], i["score"]) for i in items] == [
        (1, True, 1.0),
        (2, False, 0.25),
        (3, True, 1.0),
    ]
    assert items[0]["failures"] == [] and "capital of France?" in items[0]["output"]
    assert len(items[1]["failures"]) == 1
    expected = "expect.1 (contains): expected text containing 'London', got '[offline provider"
    assert items[1]["failures"][0].startswith(expected)
    # Template markup in an item's data reached the model verbatim, not rendered.
    run3 = runs.get(task__name="item-3")
    assert run3.variables == {"country": "{{ params.x }} {% raw %}"}
    assert run3.version.number == 1 and run3.ref == "capital#1"
    entry = AuditEntry.objects.get(action="evaluation.start")
    assert entry.target == "prompt capital" and f"build {build.id}" in entry.detail


def test_the_same_evaluation_reuses_its_pipeline_version(capital, user):
    alice = api_client(user)
    first = send(alice, "post", URL, {"dataset": "capitals"}).json()
    second = send(alice, "post", URL, {"dataset": "capitals", "label": "latest"}).json()
    a, b = (Build.objects.get(id=x["build"]) for x in (first, second))
    assert a.pipeline_version_id == b.pipeline_version_id
    assert a.pipeline_version.spec["description"] == pipeline.description("capital")
    spec = a.pipeline_version.spec["tasks"]
    assert sorted(spec) == ["item-1", "item-2", "item-3"]
    assert spec["item-1"]["resources"] == {"cpu": 1, "llm": 1}  # the prompt step's claim
    listed = alice.get(URL).json()
    assert [e["id"] for e in listed] == [second["id"], first["id"]]  # newest first
    assert listed[0]["state"] == "queued" and listed[0]["pass_rate"] == 0.0


def test_cancelling_the_build_cancels_the_evaluation(capital, user):
    alice = api_client(user)
    started = send(alice, "post", URL, {"dataset": "capitals"}).json()
    r = alice.post(f"/api/builds/{started['build']}/cancel")
    assert r.status_code == 200, r.content
    body = alice.get(f"{URL}/{started['id']}").json()
    assert body["state"] == "cancelled"
    assert (body["passed"], body["failed"], body["score"]) == (0, 0, None)
    assert {i["state"] for i in body["items"]} == {"cancelled"}
    assert all(i["passed"] is None for i in body["items"])


def test_a_provider_that_is_down_fails_the_build(
    capital, user, inline_workers, fast_engine, down_provider
):
    alice = api_client(user)
    r = send(alice, "post", URL, {"dataset": "capitals", "provider": "down", "model": "other"})
    assert r.status_code == 201, r.json()
    build = wait_for(r.json()["build"])
    assert build.state == "failed"
    body = alice.get(f"{URL}/{r.json()['id']}").json()
    assert body["state"] == "failed" and (body["provider"], body["model"]) == ("down", "other")
    assert body["passed"] == 0 and body["pass_rate"] == 0.0
    assert all(i["passed"] is None and "cannot connect" in i["error"] for i in body["items"])
    assert {r.model for r in PromptRun.objects.filter(task__build=build)} == {"other"}


def test_bad_input_is_refused_naming_the_field(capital, user):
    alice = api_client(user)
    cases = [
        ({"dataset": "nope"}, 404, None),
        ({"dataset": "capitals", "version": 9}, 404, None),
        ({"dataset": "capitals", "label": "production"}, 404, None),
        ({"dataset": "capitals", "version": 1, "label": "latest"}, 422, "label"),
        ({"dataset": "capitals", "provider": "missing"}, 422, "provider"),
        ({"dataset": "capitals", "model": ""}, 422, "model"),
        ({}, 422, None),
    ]
    for body, status, loc in cases:
        r = send(alice, "post", URL, body)
        assert r.status_code == status, (body, r.json())
        if loc:
            assert r.json()["detail"][0]["loc"] == loc, (body, r.json())
    from evals import services

    services.create_dataset(user=user, project=capital, name="empty")
    r = send(alice, "post", URL, {"dataset": "empty"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "dataset"
    assert alice.get(f"{URL}/999").status_code == 404
    assert not Evaluation.objects.exists() and not Build.objects.exists()


def test_a_users_pipeline_of_the_same_name_is_never_written_to(capital, user):
    from tests.factories import make_pipeline

    make_pipeline(capital, "tasks: {a: {steps: [{run: 'true'}]}}", name="eval-capital")
    r = send(api_client(user), "post", URL, {"dataset": "capitals"})
    assert r.status_code == 409 and "eval-capital" in r.json()["detail"]


def test_access(capital, user):
    viewer, editor, outsider = make_user("vic"), make_user("eddie"), make_user("olga")
    add_member(capital, viewer, Role.VIEWER)
    add_member(capital, editor, Role.EDITOR)
    r = send(api_client(viewer), "post", URL, {"dataset": "capitals"})
    assert r.status_code == 403
    r = send(api_client(editor), "post", URL, {"dataset": "capitals"})
    assert r.status_code == 201
    evaluation = r.json()["id"]
    assert api_client(viewer).get(URL).status_code == 200
    assert api_client(viewer).get(f"{URL}/{evaluation}").status_code == 200
    assert api_client(outsider).get(URL).status_code == 404
    assert api_client(outsider).get(f"{URL}/{evaluation}").status_code == 404
    from django.test import Client

    assert Client().get(URL).status_code == 401


def test_literal_gives_back_any_text():
    from buildsite.templating import render_value

    for text in ["{{ x }}", '"}}\\', "{% raw %}a{% endraw %}\n", "é\x00{#", "\\x41{{"]:
        assert render_value(pipeline.as_rendered({"v": [text]}), {}) == {"v": [text]}
    assert pipeline.as_rendered({"n": 3, "s": "plain"}) == {"n": 3, "s": "plain"}


def test_graded_by_runs_the_judge_and_a_bad_judge_is_a_failed_assertion(
    capital, user, inline_workers, fast_engine
):
    from evals import services

    schema = {
        "type": "object",
        "properties": {"score": {"type": "number", "const": 0.8}},
        "required": ["score"],
    }
    prompt_services.create_prompt(
        user=user,
        project=capital,
        name="judge",
        body={
            "template": "Grade {{ output }} for {{ country }}",
            "variables": ["output", "country"],
            "response_format": "json",
            "response_schema": schema,
        },
    )
    prompt_services.create_prompt(
        user=user,
        project=capital,
        name="chatty",
        body={"template": "Say {{ output }}", "variables": ["output"]},
    )
    services.create_dataset(user=user, project=capital, name="graded")
    expect = [
        {"type": "graded_by", "prompt": "judge", "min_score": 0.5},
        {"type": "graded_by", "prompt": "judge", "min_score": 0.9},
        {"type": "graded_by", "prompt": "chatty"},
    ]
    services.add_item(
        user=user, project=capital, name="graded", variables={"country": "Peru"}, expect=expect
    )
    r = send(api_client(user), "post", URL, {"dataset": "graded"})
    build = wait_for(r.json()["build"])
    assert build.state == "succeeded"
    item = api_client(user).get(f"{URL}/{r.json()['id']}").json()["items"][0]
    assert item["passed"] is False
    assert item["score"] == pytest.approx((0.8 + 0.8 + 0) / 3)
    assert item["failures"][0] == "expect.1 (graded_by): the judge judge scored 0.8, below 0.9"
    assert item["failures"][1].startswith("expect.2 (graded_by): the judge chatty gave no score")
    judged = PromptRun.objects.filter(task__build=build, version__prompt__name="judge").first()
    assert judged.variables["country"] == "Peru" and "Peru" in judged.variables["output"]


def test_listing_evaluations_reads_their_results_in_a_fixed_number_of_queries(capital, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    alice = api_client(user)

    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert alice.get(URL).status_code == 200
        return len(captured)

    for _ in range(2):
        send(alice, "post", URL, {"dataset": "capitals"})
    few = queries_for_list()
    for _ in range(4):
        send(alice, "post", URL, {"dataset": "capitals"})
    assert len(alice.get(URL).json()) == 6
    assert queries_for_list() == few
