"""`graded_by` judges end to end against a real HTTP server speaking the OpenAI chat
API (tests.prompts.chat_server): the answer and the judge's verdict both come from the
server, through the project's provider, as they would from a hosted model."""

import json

import pytest

from evals import services as dataset_services
from prompts import services as prompt_services
from prompts.models import PromptRun
from tests.factories import api_client, make_pipeline, run_build
from tests.prompts.chat_server import ChatServer, Reply, completion

from .conftest import send, wait_for

PROMPT = "/api/projects/acme/prompts/capital"


@pytest.fixture
def server(project, user, settings):
    """Provider `local` on the server; prompt `capital` answered by it, judges `judge`
    (JSON with a numeric score) and `loose` (free text) too."""
    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}  # 127.0.0.1
    with ChatServer() as chat:
        prompt_services.save_provider(
            user=user,
            project=project,
            name="local",
            kind="openai",
            base_url=chat.base_url,
            model="test-model",
            api_key="sk-test",
            max_retries=0,
        )
        prompts = {
            "capital": {"template": "Capital of {{ country }}?", "variables": ["country"]},
            "judge": {
                "template": "Rate {{ output }} as the capital of {{ country }}.",
                "variables": ["output", "country"],
                "response_format": "json",
            },
            "loose": {"template": "Is {{ output }} right?", "variables": ["output"]},
        }
        for name, body in prompts.items():
            prompt_services.create_prompt(
                user=user, project=project, name=name, body={**body, "provider": "local"}
            )
        dataset_services.create_dataset(user=user, project=project, name="graded")
        yield chat


def add_item(project, user, country, *expect):
    dataset_services.add_item(
        user=user,
        project=project,
        name="graded",
        variables={"country": country},
        expect=list(expect),
    )


def contents(chat):
    return [r["json"]["messages"][-1]["content"] for r in chat.requests]


def test_an_evaluation_build_grades_through_the_server(
    project, user, server, inline_workers, fast_engine
):
    add_item(
        project,
        user,
        "France",
        {"type": "graded_by", "prompt": "judge", "min_score": 0.5},
        {"type": "graded_by", "prompt": "judge#1", "min_score": 0.9},
        {"type": "graded_by", "prompt": "loose"},
    )
    server.reply(
        Reply(body=completion("Paris")),
        Reply(body=completion(json.dumps({"score": 0.75}))),
        # The second assertion asks the same judge the same question: the cache answers.
        Reply(body=completion("Yes, absolutely right!")),
    )
    alice = api_client(user)
    r = send(alice, "post", f"{PROMPT}/evaluations", {"dataset": "graded"})
    assert r.status_code == 201, r.json()
    build = wait_for(r.json()["build"])
    assert build.state == "succeeded", list(build.tasks.values("name", "error"))
    (item,) = alice.get(f"{PROMPT}/evaluations/{r.json()['id']}").json()["items"]
    assert item["output"] == "Paris"
    assert item["passed"] is False and item["score"] == pytest.approx((0.75 + 0.75 + 0) / 3)
    judge_run = PromptRun.objects.filter(version__prompt__name="loose").get()
    assert item["failures"] == [
        "expect.1 (graded_by): the judge judge#1 scored 0.75, below 0.9",
        f"expect.2 (graded_by): the judge loose gave no score: run {judge_run.id} did not "
        'answer a JSON object {"score": …}',
    ]
    # What the server was asked: the item, then each judge given the answer.
    assert contents(server) == [
        "Capital of France?",
        "Rate Paris as the capital of France.",
        "Is Paris right?",
    ]
    assert {r["json"]["model"] for r in server.requests} == {"test-model"}


def test_an_evaluate_step_grades_through_the_server(
    project, user, server, inline_workers, fast_engine
):
    graded = {"type": "graded_by", "prompt": "judge", "min_score": 0.5}
    for country in ("France", "Italy", "Spain"):
        add_item(project, user, country, graded)
    server.reply(
        Reply(body=completion("Paris")),
        Reply(body=completion('{"score": 1}')),
        Reply(body=completion("Milan")),
        Reply(body=completion('{"score": 0.2}')),
        Reply(body=completion("Madrid")),
        Reply(body=completion('{"score": 1.7}')),  # JSON, but not a score from 0 to 1
    )
    make_pipeline(
        project,
        "tasks:\n  check:\n    steps:\n"
        "      - {evaluate: capital, dataset: graded, min_pass_rate: 0.5}\n",
    )
    build = run_build(project, user=user)
    task = build.tasks.get()
    assert task.state == "failed"
    assert "pass rate 0.333333 is below min_pass_rate 0.5" in task.error
    body = api_client(user).get(f"{PROMPT}/evaluations/{task.outputs['evaluation']}").json()
    assert [(i["output"], i["passed"], i["score"]) for i in body["items"]] == [
        ("Paris", True, 1.0),
        ("Milan", False, 0.2),
        ("Madrid", False, 0.0),
    ]
    assert body["items"][1]["failures"] == [
        "expect.0 (graded_by): the judge judge scored 0.2, below 0.5"
    ]
    assert body["items"][2]["failures"] == [
        "expect.0 (graded_by): the judge judge returned 1.7, not a score from 0 to 1"
    ]
    assert body["tokens_in"] == 6 * 11 and body["tokens_out"] == 6 * 7  # answers and judges
    assert contents(server)[2:4] == ["Capital of Italy?", "Rate Milan as the capital of Italy."]
