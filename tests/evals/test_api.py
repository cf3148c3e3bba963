"""The datasets API end to end: versions, JSONL upload and export, refusals, roles,
bounds and the audit log."""

import json

import pytest
from django.test import Client

from audit.models import AuditEntry
from buildsite.roles import Role
from evals import services
from tests.factories import add_member, api_client, make_user

pytestmark = pytest.mark.django_db

URL = "/api/projects/acme/datasets"
ITEMS = f"{URL}/capitals/items"


def send(client, method, path, body=None):
    return getattr(client, method)(path, json.dumps(body), content_type="application/json")


def item(city, country="France"):
    return {"variables": {"country": country}, "expect": [{"type": "contains", "value": city}]}


@pytest.fixture
def alice(user, project):
    client = api_client(user)
    assert send(client, "post", URL, {"name": "capitals", "description": "d"}).status_code == 201
    return client


def test_create_list_detail_patch_and_delete(alice):
    assert send(alice, "post", URL, {"name": "capitals"}).status_code == 409
    assert send(alice, "post", URL, {"name": "Bad Name"}).json()["detail"][0]["loc"] == "name"
    listed = alice.get(URL).json()
    assert [(d["name"], d["version"], d["items"]) for d in listed] == [("capitals", 0, 0)]
    r = send(alice, "patch", f"{URL}/capitals", {"description": "capital cities"})
    assert r.status_code == 200 and r.json()["description"] == "capital cities"
    assert r.json()["version"] == 0  # the description is not part of a version
    assert alice.delete(f"{URL}/capitals").status_code == 204
    assert alice.get(f"{URL}/capitals").status_code == 404
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "target"))
    assert actions[-3:] == [
        ("dataset.create", "dataset capitals"),
        ("dataset.update", "dataset capitals"),
        ("dataset.delete", "dataset capitals"),
    ]


def test_every_change_is_a_version_and_old_versions_keep_their_items(alice):
    r = send(alice, "post", ITEMS, item("Paris"))
    assert r.status_code == 201 and r.json() == {"item": 1, "version": 1}
    assert send(alice, "post", ITEMS, item("Rome", "Italy")).json() == {"item": 2, "version": 2}
    r = send(alice, "put", f"{ITEMS}/1", item("Paris!"))
    assert r.json() == {"item": 1, "version": 3}
    assert alice.delete(f"{ITEMS}/2").json() == {"item": 2, "version": 4}
    assert send(alice, "post", ITEMS, item("Berlin", "Germany")).json() == {"item": 3, "version": 5}

    def values(version=None):
        suffix = "" if version is None else f"?version={version}"
        return [(i["item"], i["expect"][0]["value"]) for i in alice.get(ITEMS + suffix).json()]

    assert values(0) == []
    assert values(1) == [(1, "Paris")]
    assert values(2) == [(1, "Paris"), (2, "Rome")]
    assert values(3) == [(1, "Paris!"), (2, "Rome")]
    assert values(4) == [(1, "Paris!")]
    assert values() == values(5) == [(1, "Paris!"), (3, "Berlin")]
    assert alice.get(f"{ITEMS}?version=6").status_code == 404
    assert alice.get(f"{URL}/capitals").json()["items"] == 2
    assert alice.delete(f"{ITEMS}/2").status_code == 404  # already removed
    assert alice.delete(f"{ITEMS}/{2**70}").status_code == 404
    assert alice.get(f"{ITEMS}?version={2**70}").status_code in (404, 422)
    assert alice.get(f"{ITEMS}?offset={2**70}").status_code == 422
    assert alice.get(f"{ITEMS}?limit=1&offset=1").json()[0]["item"] == 3
    details = AuditEntry.objects.filter(action="dataset.items").order_by("id")
    assert [d.detail for d in details][:2] == ["version 1: added item 1", "version 2: added item 2"]


def test_unknown_assertion_types_and_bad_items_are_refused_by_field(alice):
    body = {"variables": {}, "expect": [{"type": "is_json"}, {"type": "is_json"}, {"type": "x"}]}
    r = send(alice, "post", ITEMS, body)
    assert r.status_code == 422
    assert [p["loc"] for p in r.json()["detail"]] == ["expect.2.type"]
    r = send(alice, "post", ITEMS, {"variables": [], "expect": []})
    assert r.status_code == 422
    judge = {"variables": {}, "expect": [{"type": "graded_by", "prompt": "judge"}]}
    r = send(alice, "post", ITEMS, judge)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "expect.0.prompt"
    big = {"variables": {"text": "x" * (services.MAX_ITEM_BYTES + 1)}, "expect": []}
    assert send(alice, "post", ITEMS, big).status_code == 422
    assert alice.get(f"{URL}/capitals").json()["version"] == 0  # nothing was stored


def test_graded_by_accepts_a_prompt_of_the_project(alice, user, project):
    from prompts.services import create_prompt

    create_prompt(user=user, project=project, name="judge", body={"template": "Rate it."})
    judge = {"variables": {}, "expect": [{"type": "graded_by", "prompt": "judge@production"}]}
    assert send(alice, "post", ITEMS, judge).status_code == 201


def upload(client, text, path=f"{ITEMS}/upload", content_type="application/x-ndjson"):
    data = text.encode() if isinstance(text, str) else text
    return client.post(path, data, content_type=content_type)


def test_jsonl_upload_is_all_or_nothing_and_names_the_line(alice):
    good = "\n".join(json.dumps(item(c)) for c in ["Paris", "Lyon"])
    bad_type = json.dumps({"variables": {}, "expect": [{"type": "contains", "value": "a"}, {}]})
    text = good + "\n\n" + bad_type + "\nnot json\n" + json.dumps({"variable": {}}) + "\n"
    r = upload(alice, text)
    assert r.status_code == 422
    detail = [(p["line"], p["loc"]) for p in r.json()["detail"]]
    assert detail == [(4, "expect.1.type"), (5, "body"), (6, "variable")]
    assert alice.get(f"{URL}/capitals").json()["version"] == 0
    r = upload(alice, good + "\n", content_type="text/plain")
    assert r.status_code == 201 and r.json() == {"added": 2, "version": 1}
    assert [i["item"] for i in alice.get(ITEMS).json()] == [1, 2]
    assert upload(alice, "\n \n").status_code == 422
    assert upload(alice, b'{"variables": {"a": "\xff"}}').json()["detail"][0]["line"] == 1
    assert upload(alice, '{"variables": {"a": "\\u0000"}}').json()["detail"][0]["loc"] == (
        "variables.a"
    )


def test_export_round_trips_into_upload(alice):
    for city in ["Paris", "Nice", "Lyon"]:
        send(alice, "post", ITEMS, item(city))
    alice.delete(f"{ITEMS}/2")
    r = alice.get(f"{ITEMS}/export?version=3")
    assert r.status_code == 200 and r["Content-Type"].startswith("application/x-ndjson")
    assert 'filename="capitals-v3.jsonl"' in r["Content-Disposition"]
    exported = b"".join(r.streaming_content)
    assert len(exported.splitlines()) == 3
    send(alice, "post", URL, {"name": "copy"})
    assert upload(alice, exported, path=f"{URL}/copy/items/upload").status_code == 201
    original = [(i["variables"], i["expect"]) for i in alice.get(f"{ITEMS}?version=3").json()]
    copied = [(i["variables"], i["expect"]) for i in alice.get(f"{URL}/copy/items").json()]
    assert copied == original


def test_uploads_are_bounded(alice, monkeypatch):
    monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", 1000)
    r = upload(alice, "\n".join(json.dumps(item("Paris")) for _ in range(30)))
    assert r.status_code == 413
    monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", 5 * 1024 * 1024)
    monkeypatch.setattr(services, "MAX_UPLOAD_LINES", 3)
    r = upload(alice, "\n".join(json.dumps(item("Paris")) for _ in range(4)))
    assert r.status_code == 422 and "at most 3 lines" in r.json()["detail"][0]["msg"]
    monkeypatch.setattr(services, "MAX_ITEMS", 3)
    assert upload(alice, "\n".join(json.dumps(item("Paris")) for _ in range(3))).status_code == 201
    r = send(alice, "post", ITEMS, item("Nice"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "items"


def test_an_upload_over_the_django_body_limit_is_read_up_to_ours(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100  # the upload reads the stream itself
    r = upload(alice, "\n".join(json.dumps(item("Paris")) for _ in range(10)))
    assert r.status_code == 201 and r.json()["added"] == 10


@pytest.fixture
def clients(user, project, alice):
    send(alice, "post", ITEMS, item("Paris"))
    editor, viewer, outsider = make_user("ed"), make_user("vi"), make_user("out")
    add_member(project, editor, Role.EDITOR)
    add_member(project, viewer, Role.VIEWER)
    return {
        "editor": api_client(editor),
        "viewer": api_client(viewer),
        "outsider": api_client(outsider),
        "anonymous": Client(),
    }


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [("editor", 200, 201), ("viewer", 200, 403), ("outsider", 404, 404), ("anonymous", 401, 401)],
)
def test_roles(clients, role, read, write):
    client = clients[role]
    reads = [client.get(URL), client.get(f"{URL}/capitals"), client.get(ITEMS)]
    reads.append(client.get(f"{ITEMS}/export"))
    assert {r.status_code for r in reads} == {read}
    writes = [send(client, "post", ITEMS, item("Lyon")), upload(client, json.dumps(item("Nice")))]
    assert {w.status_code for w in writes} == {write}
    if write != 201:
        others = [
            send(client, "put", f"{ITEMS}/1", item("Lyon")),
            client.delete(f"{ITEMS}/1"),
            send(client, "patch", f"{URL}/capitals", {"description": ""}),
            client.delete(f"{URL}/capitals"),
            send(client, "post", URL, {"name": "other"}),
        ]
        assert {o.status_code for o in others} == {write}
