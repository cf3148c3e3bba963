"""Hostile request bodies and numbers: always a 4xx naming what is wrong, never a 500."""

import json

import pytest

from buildsite.api import json_body_problems
from docs_engine.models import Document
from docs_engine.services import save_document
from tests.factories import api_client, make_pipeline, run_build

PIPELINE = "tasks:\n  hello: {steps: [{run: 'echo hello'}]}\n"


@pytest.fixture
def client(user):
    client = api_client(user)
    client.raise_request_exception = False  # a 500 is an answer here, not an exception
    return client


def send(client, method, url, raw: str):
    return getattr(client, method)(url, data=raw, content_type="application/json")


def locs(response) -> list[str]:
    assert response.status_code == 422, response.content
    return [problem["loc"] for problem in response.json()["detail"]]


# --- lone surrogates -----------------------------------------------------------------


def test_a_lone_surrogate_is_a_422_naming_the_field(client, project):
    # json.dumps writes the escape "\ud800": valid JSON, but not text any database stores.
    name = send(
        client, "post", "/api/projects/acme/resources", '{"name": "a\\ud800", "capacity": 1}'
    )
    assert locs(name) == ["name"]
    doc = send(
        client,
        "put",
        "/api/projects/acme/docs/guide",
        '{"body": "# Hi\\n\\udc00", "tags": ["ok", "\\ud800"], "message": "fine"}',
    )
    assert locs(doc) == ["body", "tags.1"]
    assert "surrogate" in doc.json()["detail"][0]["msg"]
    assert not Document.objects.exists()
    key = send(
        client, "post", "/api/projects/acme/builds", '{"pipeline": "x", "params": {"\\ud800": 1}}'
    )
    assert locs(key) == ["params"]


def test_a_surrogate_in_a_project_name_is_a_422(user, client):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    response = send(client, "post", "/api/projects", '{"slug": "web", "name": "Web \\ud800"}')
    assert locs(response) == ["name"]


def test_nul_characters_are_refused_too(client, project):
    # SQLite keeps them; PostgreSQL refuses them (a 500 there).
    response = send(client, "put", "/api/projects/acme/docs/guide", '{"body": "a\\u0000b"}')
    assert locs(response) == ["body"]


# --- bodies that are not objects -----------------------------------------------------


@pytest.mark.parametrize("raw", ["[null, null]", "null", "123", '"text"', "true"])
def test_a_body_that_is_not_a_json_object_is_a_422(client, project, raw):
    assert locs(send(client, "post", "/api/projects/acme/cache/purge", raw)) == ["body"]
    assert locs(send(client, "put", "/api/projects/acme/docs/-/settings", raw)) == ["body"]


def test_a_non_object_body_does_not_reset_settings_to_their_defaults(client, project):
    saved = send(client, "put", "/api/projects/acme/docs/-/settings", '{"require_approval": true}')
    assert saved.status_code == 200 and saved.json()["require_approval"] is True
    assert send(client, "put", "/api/projects/acme/docs/-/settings", "123").status_code == 422
    assert client.get("/api/projects/acme/docs/-/settings").json()["require_approval"] is True


def test_an_empty_body_still_means_the_defaults(client, project):
    response = client.post(
        "/api/projects/acme/cache/purge", data="", content_type="application/json"
    )
    assert response.status_code == 200 and response.json() == {"deleted": 0}


# --- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("number", [str(2**63), str(-(2**63) - 1), "1" + "0" * 40])
def test_integers_beyond_64_bits_in_a_body_are_a_422(client, project, number):
    raw = '{"name": "cpu", "capacity": NUMBER}'.replace("NUMBER", number)
    assert locs(send(client, "post", "/api/projects/acme/resources", raw)) == ["capacity"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_a_body_are_a_422(client, project, number):
    raw = '{"pipeline": "x", "params": {"n": NUMBER}}'.replace("NUMBER", number)
    assert locs(send(client, "post", "/api/projects/acme/builds", raw)) == ["params.n"]


@pytest.mark.parametrize(
    "offset", [str(2**63 - 1), str(2**63), str(10**30), str(-(2**63) - 1), "-1"]
)
def test_huge_search_offsets_find_nothing_instead_of_a_500(user, client, project, offset):
    save_document(user=user, project=project, path="guide", title="Guide", body="hello world")
    assert len(client.get("/api/projects/acme/search?q=hello").json()["results"]) == 1
    response = client.get(f"/api/projects/acme/search?q=hello&offset={offset}")
    assert response.status_code == 200, response.content
    expected = 1 if offset.startswith("-") else 0  # a negative offset counts as 0
    assert len(response.json()["results"]) == expected
    assert client.get(f"/api/projects/acme/search?offset={offset}").status_code == 200


@pytest.mark.parametrize("offset", [str(2**63 - 1), str(2**63), str(10**30), str(-(2**64))])
def test_huge_log_offsets_are_never_a_500(client, project, inline_workers, fast_engine, offset):
    make_pipeline(project, PIPELINE, name="hello")
    build = run_build(project, "hello")
    response = client.get(f"/api/builds/{build.id}/tasks/hello/log?offset={offset}")
    assert response.status_code == 200
    whole = client.get(f"/api/builds/{build.id}/tasks/hello/log").content
    assert response.content == (whole if offset.startswith("-") else b"")
    too_long = client.get(f"/api/builds/{build.id}/tasks/hello/log?offset={'9' * 5000}")
    assert too_long.status_code == 422


# --- size ----------------------------------------------------------------------------


def test_a_body_over_the_upload_limit_is_a_json_413(client, project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"name": "big", "definition": "x" * 2000})
    response = send(client, "post", "/api/projects/acme/pipelines", body)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert "1000 bytes" in response.json()["detail"]
    small = json.dumps({"name": "ok", "definition": PIPELINE})
    assert send(client, "post", "/api/projects/acme/pipelines", small).status_code == 201


# --- the check itself ----------------------------------------------------------------


def test_json_body_problems_names_nested_fields():
    data = {"a": [1, {"b": "\ud800"}], "c": {"d": 2**64}, "ok": ["fine", 1.5, True, None]}
    assert [(p.where, p.message[:12]) for p in json_body_problems(data)] == [
        ("a.1.b", "Text with a "),
        ("c.d", "Integers mus"),
    ]
    assert json_body_problems({}) == []
    assert [p.where for p in json_body_problems([])] == ["body"]
