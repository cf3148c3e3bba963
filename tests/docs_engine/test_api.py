"""The documents API: save, read, conflicts, validation, history, restore, move, roles."""

import json

import pytest

from buildsite.roles import Role
from tests.factories import add_member, api_client, make_user

pytestmark = pytest.mark.django_db
BASE = "/api/projects/acme"


def put(client, path, **body):
    return client.put(f"{BASE}/docs/{path}", json.dumps(body), content_type="application/json")


def post(client, url, **body):
    return client.post(f"{BASE}{url}", json.dumps(body), content_type="application/json")


@pytest.fixture
def alice(user, project):
    return api_client(user)


def test_save_read_and_list(alice):
    r = put(
        alice, "guides/install", title="Install", body="# Install\n\nRun it.\n", message="first"
    )
    assert r.status_code == 200, r.content
    assert r.json() == {
        "path": "guides/install", "revision": 1, "created": True, "warnings": [],
        "published": False, "pending_approval": False,
    }  # fmt: skip
    doc = alice.get(f"{BASE}/docs/guides/install").json()
    assert doc["title"] == "Install" and doc["revision"] == 1
    assert '<h1 id="install">Install</h1>' in doc["html"]
    assert doc["body"] == "# Install\n\nRun it.\n" and doc["author"] == "alice"
    listing = alice.get(f"{BASE}/docs").json()
    assert [d["path"] for d in listing] == ["guides/install"]


def test_stale_base_revision_is_a_conflict_with_the_diff(alice):
    put(alice, "a", title="A", body="one\n")
    assert put(alice, "a", title="A", body="two\n", base_revision=1).status_code == 200
    r = put(alice, "a", title="A", body="mine\n", base_revision=1)
    assert r.status_code == 409
    data = r.json()
    assert data["current_revision"] == 2
    assert "-one\n+two\n" in data["diff"]
    assert "-two\n+mine\n" in data["diff_to_yours"]
    # Saving over an existing document without a base is a conflict too.
    assert put(alice, "a", title="A", body="x\n").status_code == 409


def test_validation_errors_are_422_listing_every_problem_with_lines(alice):
    r = put(alice, "a", title="", body="# ok\n\n##\n\n[x](missing)\n")
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert {(d.get("line"), d["msg"]) for d in detail} == {
        (None, "a title is required"),
        (3, "empty heading: give it some text or remove it"),
        (5, "broken link 'missing': no document 'missing'"),
    }
    assert alice.get(f"{BASE}/docs/a").status_code == 404


def test_warnings_are_stored_with_the_revision(alice):
    r = put(alice, "a", title="A", body="# A\n\n### deep\n")
    assert r.json()["warnings"][0]["line"] == 3
    assert alice.get(f"{BASE}/docs/a").json()["warnings"][0]["msg"].startswith("heading level")


def test_bad_paths_are_refused(alice):
    assert put(alice, "Guides/Install", title="x", body="x").status_code == 422
    assert put(alice, "a/../b", title="x", body="x").status_code == 422
    assert put(alice, "a/-/b", title="x", body="x").status_code in (404, 405, 422)


def test_identical_content_writes_no_revision(alice):
    put(alice, "a", title="A", body="same")
    r = put(alice, "a", title="A", body="same", base_revision=1)
    assert r.json()["revision"] == 1 and r.json()["created"] is False


def test_history_diff_and_restore(alice):
    put(alice, "a", title="A", body="one\n", message="m1")
    put(alice, "a", title="A", body="two\n", message="m2", base_revision=1)
    revisions = alice.get(f"{BASE}/docs/a/-/revisions").json()
    assert [(r["number"], r["message"], r["parent"]) for r in revisions] == [
        (2, "m2", 1),
        (1, "m1", None),
    ]
    diff = alice.get(f"{BASE}/docs/a/-/diff?from=1&to=2").json()
    assert diff["from"] == 1 and diff["to"] == 2
    assert "-one\n+two\n" in diff["diff"]
    r = post(alice, "/docs/a/-/restore", revision=1)
    assert r.status_code == 200 and r.json()["revision"] == 3
    assert alice.get(f"{BASE}/docs/a").json()["body"] == "one\n"
    old = alice.get(f"{BASE}/docs/a/-/revisions/2").json()
    assert old["body"] == "two\n" and old["number"] == 2
    assert alice.get(f"{BASE}/docs/a/-/diff?from=1&to=9").status_code == 404


def test_move_keeps_history_and_redirects(alice):
    put(alice, "old/name", title="N", body="v1")
    put(alice, "old/name", title="N", body="v2", base_revision=1)
    r = post(alice, "/docs/old/name/-/move", to="new/name")
    assert r.status_code == 200 and r.json() == {"path": "new/name", "redirect_from": ["old/name"]}
    doc = alice.get(f"{BASE}/docs/old/name").json()
    assert doc["path"] == "new/name" and doc["redirected_from"] == "old/name"
    assert len(alice.get(f"{BASE}/docs/new/name/-/revisions").json()) == 2
    put(alice, "taken", title="T", body="t")
    assert post(alice, "/docs/new/name/-/move", to="taken").status_code == 409


def test_delete_removes_document_and_redirects(alice):
    put(alice, "a", title="A", body="x")
    assert alice.delete(f"{BASE}/docs/a").status_code == 204
    assert alice.get(f"{BASE}/docs/a").status_code == 404
    assert put(alice, "a", title="A again", body="y").json()["revision"] == 1


def test_roles_viewers_read_editors_write_maintainers_configure(project, alice):
    put(alice, "a", title="A", body="x")
    viewer, editor = make_user("vic"), make_user("eve")
    add_member(project, viewer, Role.VIEWER)
    add_member(project, editor, Role.EDITOR)
    v, e = api_client(viewer), api_client(editor)
    assert v.get(f"{BASE}/docs/a").status_code == 200
    assert put(v, "b", title="B", body="x").status_code == 403
    assert v.delete(f"{BASE}/docs/a").status_code == 403
    assert post(v, "/docs/a/-/move", to="c").status_code == 403
    assert put(e, "b", title="B", body="x").status_code == 200
    settings = {"require_approval": True, "front_matter_schema": None, "max_body_bytes": 4096}
    r = e.put(f"{BASE}/docs/-/settings", json.dumps(settings), content_type="application/json")
    assert r.status_code == 403
    outsider = api_client(make_user("mallory"))
    assert outsider.get(f"{BASE}/docs/a").status_code == 404


def test_publish_with_and_without_second_approval(project, alice):
    put(alice, "a", title="A", body="x", publish=True)
    assert alice.get(f"{BASE}/docs/a").json()["published_revision"] == 1
    settings = {"require_approval": True, "front_matter_schema": None, "max_body_bytes": 65536}
    r = alice.put(f"{BASE}/docs/-/settings", json.dumps(settings), content_type="application/json")
    assert r.status_code == 200 and r.json()["require_approval"] is True
    r = put(alice, "a", title="A", body="draft", base_revision=1, publish=True)
    assert r.json()["pending_approval"] is True and r.json()["published"] is False
    assert alice.get(f"{BASE}/docs/a?published=true").json()["body"] == "x"
    assert alice.get(f"{BASE}/docs/a").json()["body"] == "draft"
    assert post(alice, "/docs/a/-/approve").status_code == 403  # not by the same person
    bob = make_user("bob")
    add_member(project, bob, Role.EDITOR)
    r = post(api_client(bob), "/docs/a/-/approve")
    assert r.status_code == 200 and r.json()["published_revision"] == 2
    assert alice.get(f"{BASE}/docs/a?published=true").json()["body"] == "draft"


def test_front_matter_schema_setting_is_enforced(alice):
    schema = {"type": "object", "required": ["owner"]}
    settings = {"require_approval": False, "front_matter_schema": schema, "max_body_bytes": 65536}
    alice.put(f"{BASE}/docs/-/settings", json.dumps(settings), content_type="application/json")
    r = put(alice, "a", title="A", body="---\nx: 1\n---\nbody")
    assert r.status_code == 422 and "'owner' is a required property" in r.json()["detail"][0]["msg"]
    assert put(alice, "a", title="A", body="---\nowner: me\n---\nbody").status_code == 200
    bad = {**settings, "front_matter_schema": {"type": 12}}
    r = alice.put(f"{BASE}/docs/-/settings", json.dumps(bad), content_type="application/json")
    assert r.status_code == 422


def test_preview_renders_and_lists_problems_without_saving(alice):
    r = post(
        alice, "/docs/-/preview", path="x", title="X", body="# Hi\n\n[a](nope)\n<script>1</script>"
    )
    data = r.json()
    assert '<h1 id="hi">Hi</h1>' in data["html"] and "<script" not in data["html"]
    assert data["errors"][0]["line"] == 3
    assert alice.get(f"{BASE}/docs/x").status_code == 404


def test_snapshots_browse_and_diff_against_today(alice):
    put(alice, "a", title="A", body="one\n")
    put(alice, "b", title="B", body="bee\n")
    r = post(alice, "/snapshots", name="v1.2")
    assert r.status_code == 201
    assert [(e["path"], e["revision"]) for e in r.json()["entries"]] == [("a", 1), ("b", 1)]
    assert post(alice, "/snapshots", name="v1.2").status_code == 409
    put(alice, "a", title="A", body="two\n", base_revision=1)
    alice.delete(f"{BASE}/docs/b")
    put(alice, "c", title="C", body="new\n")
    changes = {c["path"]: c for c in alice.get(f"{BASE}/snapshots/v1.2/diff").json()}
    assert changes["a"]["status"] == "changed" and "-one\n+two\n" in changes["a"]["diff"]
    assert changes["b"]["status"] == "deleted"
    assert changes["c"]["status"] == "added"
    frozen = alice.get(f"{BASE}/snapshots/v1.2/docs/a").json()
    assert frozen["body"] == "one\n" and frozen["number"] == 1
    assert [s["name"] for s in alice.get(f"{BASE}/snapshots").json()] == ["v1.2"]


def test_malformed_json_and_missing_fields_are_422_not_500(alice):
    r = alice.put(f"{BASE}/docs/a", "{not json", content_type="application/json")
    assert r.status_code in (400, 422)
    assert put(alice, "a", title="A").status_code == 422
