"""Runs through the service against the real test server: repair, errors, cost, keys."""

import json

import pytest

from prompts import services
from prompts.models import PromptRun
from prompts.refs import parse_ref

from .chat_server import Reply, completion

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.fixture
def remote(project, user, chat_server, monkeypatch, env_keys):
    monkeypatch.setenv("TEST_LLM_API_KEY", "sk-from-env-999")
    env_keys(TEST_LLM_API_KEY=[project.slug])
    services.save_provider(
        user=user,
        project=project,
        name="local",
        kind="openai",
        base_url=chat_server.base_url,
        model="test-model",
        api_key_env="TEST_LLM_API_KEY",
        price_in="1",
        price_out="2",
        max_retries=1,
    )
    services.create_prompt(
        user=user,
        project=project,
        name="count",
        body={
            "template": "Count {{ what }}",
            "variables": {"what": "string"},
            "provider": "local",
            "response_format": "json",
            "response_schema": SCHEMA,
            "max_repairs": 1,
        },
    )
    return chat_server


def run(project, user, **kwargs):
    return services.run_prompt(
        user=user,
        project=project,
        ref=parse_ref("count"),
        variables={"what": "apples"},
        sleep=lambda s: None,
        **kwargs,
    )


def test_an_invalid_answer_is_repaired_and_every_attempt_recorded(project, user, remote):
    remote.reply(
        Reply(
            body=completion(
                'Sure! ```json\n{"n": "three"}\n```', prompt_tokens=10, completion_tokens=5
            )
        ),
        Reply(body=completion('{"n": 3}', prompt_tokens=30, completion_tokens=4)),
    )
    result = run(project, user)
    assert result.status == "succeeded" and result.parsed == {"n": 3}
    assert [a["n"] for a in result.attempts] == [1, 2]
    assert "not of type 'integer'" in result.attempts[0]["error"]
    assert (result.tokens_in, result.tokens_out) == (40, 9)
    assert str(result.cost_usd) == "0.000058"  # (40*1 + 9*2) / 1e6
    repair = remote.requests[1]["json"]["messages"]
    assert repair[-2] == {"role": "assistant", "content": 'Sure! ```json\n{"n": "three"}\n```'}
    assert "could not be used" in repair[-1]["content"]
    assert remote.requests[0]["headers"]["Authorization"] == "Bearer sk-from-env-999"


def test_failure_after_all_repairs_is_stored_with_the_reason(project, user, remote):
    remote.reply(Reply(body=completion("no json here")))
    result = run(project, user)
    assert result.status == "failed"
    assert (
        result.error == "invalid response after 2 attempt(s): no JSON object found in the response"
    )
    assert len(result.attempts) == 2
    assert PromptRun.objects.get(id=result.id).status == "failed"


def test_provider_errors_end_in_a_stored_failed_run(project, user, remote):
    remote.reply(Reply(500, {"error": "down"}))
    result = run(project, user)
    assert result.status == "failed"
    assert result.error.startswith("provider error: server error HTTP 500")
    assert result.attempts[0]["kind"] == "server"
    assert len(remote.requests) == 2  # one retry (max_retries=1)


def test_the_api_key_reaches_no_record(project, user, remote):
    remote.reply(Reply(401, {"error": {"message": "bad key sk-from-env-999"}}))
    result = run(project, user)
    stored = json.dumps(
        {k: str(v) for k, v in PromptRun.objects.filter(id=result.id).values().first().items()}
    )
    assert "sk-from-env-999" not in stored
    assert "[redacted]" in result.error


def test_a_missing_key_variable_is_a_clear_stored_error(project, user, remote, monkeypatch):
    monkeypatch.delenv("TEST_LLM_API_KEY")
    result = run(project, user)
    assert result.status == "failed"
    assert "TEST_LLM_API_KEY is not set" in result.error
    assert remote.requests == []
