"""The prompt API: the issue's contract, roles, and that keys never come back."""

import json

import pytest

from buildsite.roles import Role
from prompts.models import PromptRun, ProviderConfig
from tests.factories import add_member, api_client, make_user

BASE = "/api/projects/acme"
JSON_VERSION = {
    "messages": [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "Release notes for {{ version }}"},
    ],
    "variables": {"version": {"type": "string"}},
    "response_format": "json",
    "response_schema": {
        "type": "object",
        "properties": {"summary": {"type": "string"}},
        "required": ["summary"],
    },
}


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def put(client, path, body):
    return client.put(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def alice(user, project):
    return api_client(user)


@pytest.fixture
def notes(alice):
    r = post(alice, f"{BASE}/prompts", {"name": "notes", **JSON_VERSION})
    assert r.status_code == 201, r.content
    return "notes"


def test_create_returns_name_and_version_1(alice):
    r = post(
        alice,
        f"{BASE}/prompts",
        {
            "name": "greet",
            "template": "Hi {{ who }}",
            "variables": {"who": {"type": "string"}},
            "temperature": 0,
        },
    )
    assert (r.status_code, r.json()) == (201, {"name": "greet", "version": 1})
    assert post(alice, f"{BASE}/prompts", {"name": "greet", "template": "x"}).status_code == 409


def test_syntax_error_is_422_with_its_line(alice):
    r = post(alice, f"{BASE}/prompts", {"name": "bad", "template": "ok\n{% for x in %}\n"})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["line"] == 2 and detail["loc"] == "template"
    assert "syntax error" in detail["msg"]


def test_versions_labels_and_diff(alice, notes):
    r = post(alice, f"{BASE}/prompts/notes/versions", {**JSON_VERSION, "temperature": 0.7})
    assert (r.status_code, r.json()) == (201, {"version": 2})
    assert (
        put(alice, f"{BASE}/prompts/notes/labels/production", {"version": 1}).json()["version"] == 1
    )
    assert put(alice, f"{BASE}/prompts/notes/labels/production", {"version": 2}).status_code == 200
    assert put(alice, f"{BASE}/prompts/notes/labels/latest", {"version": 1}).status_code == 422
    assert put(alice, f"{BASE}/prompts/notes/labels/staging", {"version": 9}).status_code == 404

    versions = alice.get(f"{BASE}/prompts/notes/versions").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["labels"] == ["latest", "production"]
    assert versions[0]["created_by"] == "alice"

    d = alice.get(f"{BASE}/prompts/notes/diff?from=1&to=2").json()
    assert d["changes"] == [{"field": "temperature", "from": 0.0, "to": 0.7}]
    assert "-temperature: 0.0" in d["unified"] and "+temperature: 0.7" in d["unified"]

    history = alice.get(f"{BASE}/prompts/notes").json()["label_history"]
    assert [(m["from_version"], m["to_version"]) for m in history] == [(1, 2), (None, 1)]


def test_render_returns_messages_and_names_a_missing_variable(alice, notes):
    r = post(alice, f"{BASE}/prompts/notes/render", {"variables": {"version": "2.0"}})
    assert r.status_code == 200
    assert r.json()["messages"][1] == {"role": "user", "content": "Release notes for 2.0"}
    r = post(alice, f"{BASE}/prompts/notes/render", {"variables": {}, "version": 1})
    assert r.status_code == 422
    assert "missing variable 'version'" in r.json()["detail"][0]["msg"]


def test_runs_are_stored_and_cached_at_temperature_zero(alice, notes):
    first = post(alice, f"{BASE}/prompts/notes/runs", {"variables": {"version": "1.0"}}).json()
    assert first["status"] == "succeeded" and first["cached"] is False
    assert set(first) >= {
        "id",
        "status",
        "output",
        "parsed",
        "error",
        "tokens_in",
        "tokens_out",
        "cached",
    }
    assert isinstance(first["parsed"]["summary"], str) and first["tokens_in"] > 0

    second = post(alice, f"{BASE}/prompts/notes/runs", {"variables": {"version": "1.0"}}).json()
    assert second["cached"] is True and second["parsed"] == first["parsed"]

    bypass = post(
        alice, f"{BASE}/prompts/notes/runs", {"variables": {"version": "1.0"}, "cache": False}
    ).json()
    assert bypass["cached"] is False

    listed = alice.get(f"{BASE}/prompts/notes/runs").json()
    assert [r["id"] for r in listed] == [bypass["id"], second["id"], first["id"]]
    detail = alice.get(f"{BASE}/prompts/notes/runs/{first['id']}").json()
    assert detail["rendered"][1]["content"] == "Release notes for 1.0"
    assert detail["variables"] == {"version": "1.0"}
    assert len(detail["attempts"]) == 1


def test_temperature_above_zero_is_not_cached_unless_asked(alice):
    post(alice, f"{BASE}/prompts", {"name": "warm", "template": "hi", "temperature": 0.8})
    runs = [post(alice, f"{BASE}/prompts/warm/runs", {}).json() for _ in range(2)]
    assert [r["cached"] for r in runs] == [False, False]
    forced = [post(alice, f"{BASE}/prompts/warm/runs", {"cache": True}).json() for _ in range(2)]
    assert [r["cached"] for r in forced] == [False, True]


def test_roles(project, notes):
    viewer, editor, outsider = make_user("vic"), make_user("ed"), make_user("out")
    add_member(project, viewer, Role.VIEWER)
    add_member(project, editor, Role.EDITOR)
    v, e, o = api_client(viewer), api_client(editor), api_client(outsider)

    assert v.get(f"{BASE}/prompts").status_code == 200
    assert v.get(f"{BASE}/prompts/notes/runs").status_code == 200
    assert post(v, f"{BASE}/prompts/notes/versions", JSON_VERSION).status_code == 403
    assert (
        post(v, f"{BASE}/prompts/notes/render", {"variables": {"version": "1"}}).status_code == 403
    )
    assert post(v, f"{BASE}/prompts/notes/runs", {"variables": {"version": "1"}}).status_code == 403
    assert put(v, f"{BASE}/prompts/notes/labels/prod", {"version": 1}).status_code == 403

    assert post(e, f"{BASE}/prompts/notes/versions", JSON_VERSION).status_code == 201
    assert put(e, f"{BASE}/prompts/notes/labels/prod", {"version": 1}).status_code == 200
    assert post(e, f"{BASE}/prompts/notes/runs", {"variables": {"version": "1"}}).status_code == 200
    assert post(e, f"{BASE}/providers", {"name": "x", "kind": "offline"}).status_code == 403

    assert o.get(f"{BASE}/prompts").status_code == 404


def test_providers_keys_are_write_only(alice, chat_server):
    secret = "sk-very-secret-value"
    r = post(
        alice,
        f"{BASE}/providers",
        {
            "name": "local",
            "kind": "openai",
            "base_url": chat_server.base_url,
            "model": "m",
            "api_key": secret,
        },
    )
    assert r.status_code == 201
    assert r.json()["has_stored_key"] is True
    assert secret not in r.content.decode()
    assert secret not in alice.get(f"{BASE}/providers").content.decode()
    stored = ProviderConfig.objects.get(name="local")
    assert secret not in stored.api_key_encrypted

    r = post(
        alice,
        f"{BASE}/providers",
        {
            "name": "local",
            "kind": "openai",
            "base_url": chat_server.base_url,
            "api_key_env": "DATABASE_URL",
        },
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "api_key_env"
    r = post(
        alice,
        f"{BASE}/providers",
        {"name": "meta", "kind": "openai", "base_url": "http://169.254.169.254/v1"},
    )
    assert r.status_code == 422
    assert alice.delete(f"{BASE}/providers/local").status_code == 204


def test_a_version_must_name_a_configured_provider(alice):
    r = post(alice, f"{BASE}/prompts", {"name": "p", "template": "x", "provider": "nowhere"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "provider"
    assert PromptRun.objects.count() == 0
