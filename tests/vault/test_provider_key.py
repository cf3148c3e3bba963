"""A provider's API key kept as a project secret: sent to the provider, never shown,
refused when the secret does not exist, and a clear failure once it is deleted."""

import json

import pytest

from prompts.models import PromptRun, ProviderConfig
from tests.factories import api_client
from tests.prompts.chat_server import ChatServer, Reply, completion
from vault.services import delete_secret, set_secret

pytestmark = pytest.mark.django_db
KEY = "sk-project-secret-4421"


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def chat_server(settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}  # 127.0.0.1
    with ChatServer() as server:
        yield server


@pytest.fixture
def alice(user, project):
    return api_client(user)


def provider(chat_server, **extra):
    return {
        "name": "llm",
        "kind": "openai",
        "base_url": chat_server.base_url,
        "model": "m",
        "api_key_secret": "LLM_KEY",
        **extra,
    }


def test_the_key_comes_from_the_secret_and_is_never_shown(alice, project, chat_server):
    set_secret(user=None, project=project, name="LLM_KEY", value=KEY)
    r = post(alice, "/api/projects/acme/providers", provider(chat_server))
    assert r.status_code == 201, r.json()
    assert r.json()["api_key_secret"] == "LLM_KEY" and r.json()["has_stored_key"] is False
    chat_server.reply(Reply(body=completion("hello")))
    post(alice, "/api/projects/acme/prompts", {"name": "p", "template": "hi", "provider": "llm"})
    run = post(alice, "/api/projects/acme/prompts/p/runs", {"cache": False}).json()
    assert run["status"] == "succeeded"
    assert chat_server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    listed = alice.get("/api/projects/acme/providers").content.decode()
    assert KEY not in listed and "LLM_KEY" in listed
    # Rotating the secret is rotating the key.
    set_secret(user=None, project=project, name="LLM_KEY", value=KEY + "-new")
    post(alice, "/api/projects/acme/prompts/p/runs", {"cache": False})
    assert chat_server.requests[1]["headers"]["Authorization"] == f"Bearer {KEY}-new"


def test_a_secret_that_does_not_exist_is_refused_when_saving(alice, chat_server):
    r = post(alice, "/api/projects/acme/providers", provider(chat_server))
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == "api_key_secret" and "no secret 'LLM_KEY'" in problem["msg"]
    bad = post(alice, "/api/projects/acme/providers", provider(chat_server, api_key_secret="x"))
    assert bad.status_code == 422 and "not a valid secret name" in bad.json()["detail"][0]["msg"]
    assert not ProviderConfig.objects.exists()


def test_one_key_source_at_a_time(alice, project, chat_server):
    set_secret(user=None, project=project, name="LLM_KEY", value=KEY)
    r = post(alice, "/api/projects/acme/providers", provider(chat_server, api_key="sk-stored"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "api_key_secret"
    # A stored key is replaced by the secret, and the other way round.
    body = provider(chat_server, api_key_secret="", api_key="sk-stored")
    assert post(alice, "/api/projects/acme/providers", body).status_code == 201
    assert ProviderConfig.objects.get().has_stored_key
    assert post(alice, "/api/projects/acme/providers", provider(chat_server)).status_code == 200
    config = ProviderConfig.objects.get()
    assert config.api_key_secret == "LLM_KEY" and not config.has_stored_key


def test_a_deleted_secret_fails_the_run_naming_it(alice, project, chat_server):
    set_secret(user=None, project=project, name="LLM_KEY", value=KEY)
    post(alice, "/api/projects/acme/providers", provider(chat_server))
    post(alice, "/api/projects/acme/prompts", {"name": "p", "template": "hi", "provider": "llm"})
    delete_secret(user=None, project=project, name="LLM_KEY")
    run = post(alice, "/api/projects/acme/prompts/p/runs", {"cache": False}).json()
    assert run["status"] == "failed" and "LLM_KEY" in run["error"]
    assert chat_server.requests == [] and PromptRun.objects.count() == 1


def test_the_providers_page_takes_the_secret(user, project, chat_server):
    from django.test import Client

    set_secret(user=None, project=project, name="LLM_KEY", value=KEY)
    browser = Client()
    browser.force_login(user)
    r = browser.post(
        "/p/acme/prompts/_providers/",
        {"action": "save", **provider(chat_server)},
    )
    assert r.status_code == 302
    page = browser.get("/p/acme/prompts/_providers/").content.decode()
    assert "from secret <code>LLM_KEY</code>" in page and KEY not in page
