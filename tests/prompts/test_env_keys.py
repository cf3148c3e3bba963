"""Server environment keys go only to the projects the operator listed in
BUILDSITE_PROVIDER_ENV_KEYS, and refusals never tell whether a variable exists."""

import json

import pytest

from buildsite.settings import provider_env_keys
from prompts import services
from prompts.models import PromptRun, ProviderConfig
from prompts.providers import ProviderError
from tests.factories import api_client, make_project, make_user

from .chat_server import Reply, completion

SERVER_KEY = "sk-server-owned-key"


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def mallory(db):
    """A user unknown to the operator who maintains a project of her own ('evil')."""
    user = make_user("mallory")
    make_project(owner=user, slug="evil", name="Evil")
    return api_client(user)


def provider_body(chat_server, **extra):
    return {
        "name": "exfil",
        "kind": "openai",
        "base_url": chat_server.base_url,  # a server the attacker controls
        "model": "m",
        "api_key_env": "OPENAI_API_KEY",
        **extra,
    }


def test_a_strangers_project_cannot_send_the_servers_key(
    mallory, chat_server, env_keys, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)
    env_keys(OPENAI_API_KEY=["acme"])
    r = post(mallory, "/api/projects/evil/providers", provider_body(chat_server))
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == "api_key_env"
    assert problem["msg"] == (
        "project 'evil' may not use the server's OPENAI_API_KEY: store the key in the "
        "provider (api_key), or ask the operator to allow it in BUILDSITE_PROVIDER_ENV_KEYS"
    )
    assert not ProviderConfig.objects.filter(name="exfil").exists()
    assert chat_server.requests == []


def test_the_refusal_is_the_same_whether_the_variable_is_set_or_not(
    mallory, chat_server, env_keys, monkeypatch
):
    env_keys(OPENAI_API_KEY=["acme"])
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)
    when_set = post(mallory, "/api/projects/evil/providers", provider_body(chat_server))
    monkeypatch.delenv("OPENAI_API_KEY")
    when_unset = post(mallory, "/api/projects/evil/providers", provider_body(chat_server))
    assert (when_set.status_code, when_set.content) == (when_unset.status_code, when_unset.content)
    # a name no server has gets the same answer, but for its name
    never = post(
        mallory,
        "/api/projects/evil/providers",
        provider_body(chat_server, api_key_env="NO_SUCH_API_KEY"),
    )
    assert never.content == when_set.content.replace(b"OPENAI_API_KEY", b"NO_SUCH_API_KEY")


def test_without_the_setting_no_project_may_use_an_environment_key(alice_api, chat_server):
    r = post(alice_api, "/api/projects/acme/providers", provider_body(chat_server))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "api_key_env"


def test_listed_projects_may_and_star_means_every_project(
    alice_api, mallory, chat_server, env_keys
):
    env_keys(OPENAI_API_KEY=["demo", "acme"])
    r = post(alice_api, "/api/projects/acme/providers", provider_body(chat_server))
    assert r.status_code == 201 and r.json()["api_key_env"] == "OPENAI_API_KEY"
    r = post(mallory, "/api/projects/evil/providers", provider_body(chat_server))
    assert r.status_code == 422
    env_keys(OPENAI_API_KEY=["*"])
    r = post(mallory, "/api/projects/evil/providers", provider_body(chat_server))
    assert r.status_code == 201


def test_a_stored_key_works_for_any_project(mallory, chat_server):
    body = provider_body(chat_server, api_key_env="", api_key="sk-mallorys-own")
    assert post(mallory, "/api/projects/evil/providers", body).status_code == 201
    chat_server.reply(Reply(body=completion("hello")))
    prompt = {"name": "p", "template": "hi", "provider": "exfil"}
    assert post(mallory, "/api/projects/evil/prompts", prompt).status_code == 201
    run = post(mallory, "/api/projects/evil/prompts/p/runs", {}).json()
    assert run["status"] == "succeeded"
    assert chat_server.requests[0]["headers"]["Authorization"] == "Bearer sk-mallorys-own"


@pytest.mark.parametrize("variable_set", [True, False])
def test_a_provider_whose_permission_was_withdrawn_is_refused_at_run_time(
    alice_api, chat_server, env_keys, monkeypatch, variable_set
):
    env_keys(OPENAI_API_KEY=["acme"])
    assert (
        post(alice_api, "/api/projects/acme/providers", provider_body(chat_server)).status_code
        == 201
    )
    prompt = {"name": "p", "template": "hi", "provider": "exfil"}
    assert post(alice_api, "/api/projects/acme/prompts", prompt).status_code == 201
    env_keys()  # the operator removes acme from the list
    if variable_set:
        monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)
    else:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    r = post(alice_api, "/api/projects/acme/prompts/p/runs", {"cache": False})
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {
            "msg": "project 'acme' may not use the server's OPENAI_API_KEY: store the key in "
            "the provider (api_key), or ask the operator to allow it in "
            "BUILDSITE_PROVIDER_ENV_KEYS",
            "level": "error",
            "loc": "provider",
        }
    ]
    assert chat_server.requests == [] and PromptRun.objects.count() == 0


def test_private_addresses_are_refused_unless_the_operator_allows_them(
    alice_api, chat_server, settings
):
    body = provider_body(chat_server, api_key_env="", api_key="sk-x")
    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": False}
    r = post(alice_api, "/api/projects/acme/providers", body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "base_url"
    assert "BUILDSITE_ALLOW_PRIVATE_URLS=1" in r.json()["detail"][0]["msg"]
    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}
    assert post(alice_api, "/api/projects/acme/providers", body).status_code == 201
    prompt = {"name": "p", "template": "hi", "provider": "exfil"}
    assert post(alice_api, "/api/projects/acme/prompts", prompt).status_code == 201
    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": False}
    run = post(alice_api, "/api/projects/acme/prompts/p/runs", {"cache": False}).json()
    assert run["status"] == "failed" and "endpoint refused" in run["error"]
    assert chat_server.requests == []


def test_the_client_never_reads_a_variable_the_project_may_not_use(project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)
    config = ProviderConfig.objects.create(  # written past the services, e.g. by hand
        project=project,
        name="raw",
        kind="openai",
        base_url="http://10.0.0.1/v1",
        api_key_env="OPENAI_API_KEY",
    )
    with pytest.raises(ProviderError) as info:
        services.client_for(config)
    assert info.value.kind == "config" and "may not use the server's OPENAI_API_KEY" in str(
        info.value
    )


# --- the setting's syntax -------------------------------------------------------------------
def test_the_setting_lists_projects_per_variable():
    assert provider_env_keys("") == {}
    assert provider_env_keys(" OPENAI_API_KEY = demo, research ; OTHER_API_KEY=* ;") == {
        "OPENAI_API_KEY": ["demo", "research"],
        "OTHER_API_KEY": ["*"],
    }


@pytest.mark.parametrize(
    "raw",
    [
        "OPENAI_API_KEY",
        "OPENAI_API_KEY=",
        "DATABASE_URL=*",
        "OPENAI_API_KEY:demo",
        "OPENAI_API_KEY=Demo",
    ],
)
def test_a_malformed_setting_stops_the_server_with_the_syntax(raw):
    with pytest.raises(SystemExit, match="NAME_API_KEY=project,project;OTHER_API_KEY="):
        provider_env_keys(raw)
