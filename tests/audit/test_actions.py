"""Every change a person or a token makes is recorded once, in the transaction of the
change: one table row per action, performed the way a user performs it (the API; the
admin for revoking a token; the command for creating one)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from audit.models import AuditEntry
from builds.models import Build
from buildsite.models import ApiToken
from tests.audit.conftest import PIPELINE, World

pytestmark = pytest.mark.django_db


@dataclass
class Expect:
    target: str
    actor: str = "alice"  # alice calls through her token unless a case says otherwise
    token: bool = True
    project: str | None = "acme"
    detail: str = ""  # a part the detail must contain


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.content
    return response.json() if response.content else None


# --- setups: what must exist before the action (their own entries are not counted) ---
def build_id(w: World) -> int:
    return int(ok(w.alice.call("POST", "/builds", {"pipeline": "main"}), 201)["id"])


def cancelled_build(w: World) -> int:
    number = build_id(w)
    ok(w.alice.call("POST", f"/api/builds/{number}/cancel"))
    return number


def prompt(w: World, labelled: bool = False) -> None:
    ok(w.alice.call("POST", "/prompts", {"name": "greet", "template": "Hi"}), 201)
    ok(w.alice.call("POST", "/prompts/greet/versions", {"template": "Hello"}), 201)
    if labelled:
        ok(w.alice.call("PUT", "/prompts/greet/labels/production", {"version": 1}))


def document(w: World) -> None:
    ok(w.alice.call("PUT", "/docs/guide", {"title": "Guide", "body": "one\n"}))


def repository(w: World) -> int:
    body = {"name": "app", "url": "http://127.0.0.1:9/app.git"}
    return int(ok(w.alice.call("POST", "/repositories", body), 201)["id"])


def schedule(w: World) -> int:
    body = {"pipeline": "main", "cron": "0 3 * * *"}
    return int(ok(w.alice.call("POST", "/schedules", body), 201)["id"])


# --- the actions ------------------------------------------------------------------------
def project_create(w: World, _: Any) -> Expect:
    ok(w.root.call("POST", "/api/projects", {"slug": "newp", "name": "New"}), 201)
    return Expect("project newp", actor="root", project="newp", detail="maintainer root")


def project_update(w: World, _: Any) -> Expect:
    ok(w.alice.call("PATCH", "/api/projects/acme", {"public_badges": True}))
    return Expect("project acme", detail="public badges on")


def member_set(w: World, _: Any) -> Expect:
    ok(w.alice.call("PUT", "/api/projects/acme/members", {"username": "bob", "role": "viewer"}))
    return Expect("member bob", detail="role viewer (was editor)")


def member_remove(w: World, _: Any) -> Expect:
    response = w.alice.call("DELETE", "/api/projects/acme/members/vic")
    assert response.status_code == 204, response.content
    return Expect("member vic", detail="was viewer")


def token_create(w: World, _: Any) -> Expect:
    out = io.StringIO()
    call_command("create_token", "alice", "--project", "acme", stdout=out, stderr=io.StringIO())
    raw = out.getvalue().strip()
    return Expect(f"token {raw[:10]}…", token=False, detail="of alice")


def token_revoke(w: World, token: ApiToken) -> Expect:
    admin = Client()
    admin.force_login(w.admin)
    response = admin.post(f"/admin/buildsite/apitoken/{token.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ApiToken.objects.filter(id=token.id).exists()
    return Expect(f"token {token.prefix}…", actor="root", token=False, detail="of bob")


def scoped_token(w: World) -> ApiToken:
    from buildsite.services import create_token

    return create_token(user=w.bob.user, project=w.project, name="ci")[0]


def pipeline_save(w: World, _: Any) -> Expect:
    body = {"name": "main", "definition": PIPELINE + "# two\n"}
    ok(w.alice.call("POST", "/pipelines", body), 201)
    return Expect("pipeline main", detail="version 2")


def build_trigger(w: World, _: Any) -> Expect:
    body = {"pipeline": "main", "params": {"version": "2.0"}}
    number = ok(w.alice.call("POST", "/builds", body), 201)["id"]
    return Expect(f"build {number}", detail="pipeline main v1, params version")


def build_cancel(w: World, number: int) -> Expect:
    ok(w.alice.call("POST", f"/api/builds/{number}/cancel"))
    return Expect(f"build {number}", detail="was queued")


def build_retry(w: World, number: int) -> Expect:
    ok(w.alice.call("POST", f"/api/builds/{number}/retry"))
    return Expect(f"build {number}", detail="was cancelled")


def build_rerun(w: World, number: int) -> Expect:
    new = ok(w.alice.call("POST", f"/api/builds/{number}/rerun", {"from": "b"}), 201)["id"]
    return Expect(f"build {new}", detail=f"re-run of build {number} from task b")


def pool_set(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/resources", {"name": "cpu", "capacity": 4}), 201)
    return Expect("pool cpu", detail="capacity 4")


def cache_purge(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/cache/purge", {"task": "a"}))
    return Expect("cache", detail="task a, 0 entries removed")


def provider_save(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/providers", {"name": "local", "kind": "offline"}), 201)
    return Expect("provider local", detail="created: offline")


def provider_delete(w: World, _: Any) -> Expect:
    ok(w.alice.call("DELETE", "/providers/local"), 204)
    return Expect("provider local")


def prompt_create(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/prompts", {"name": "greet", "template": "Hi"}), 201)
    return Expect("prompt greet", detail="version 1")


def prompt_version(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/prompts/greet/versions", {"template": "Hey"}), 201)
    return Expect("prompt greet", detail="version 3")


def label_move(w: World, _: Any) -> Expect:
    ok(w.alice.call("PUT", "/prompts/greet/labels/production", {"version": 2}))
    return Expect("prompt greet", detail="production v1 → v2")


def label_remove(w: World, _: Any) -> Expect:
    ok(w.alice.call("DELETE", "/prompts/greet/labels/production"), 204)
    return Expect("prompt greet", detail="production (was v1)")


def document_publish(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/docs/guide/-/publish", {}))
    return Expect("document guide", detail="revision 1")


def awaiting_approval(w: World) -> None:
    ok(w.alice.call("PUT", "/docs/-/settings", {"require_approval": True}))
    document(w)
    ok(w.alice.call("POST", "/docs/guide/-/publish", {}))


def document_approve(w: World, _: Any) -> Expect:
    ok(w.bob.call("POST", "/docs/guide/-/approve", {}))
    return Expect("document guide", actor="bob", detail="revision 1")


def document_move(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/docs/guide/-/move", {"to": "manual"}))
    return Expect("document guide", detail="to manual")


def document_delete(w: World, _: Any) -> Expect:
    ok(w.alice.call("DELETE", "/docs/guide"), 204)
    return Expect("document guide")


def two_revisions(w: World) -> None:
    document(w)
    body = {"title": "Guide", "body": "two\n", "base_revision": 1}
    ok(w.alice.call("PUT", "/docs/guide", body))


def document_restore(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/docs/guide/-/restore", {"revision": 1}))
    return Expect("document guide", detail="revision 1 as revision 3")


def docs_settings(w: World, _: Any) -> Expect:
    ok(w.alice.call("PUT", "/docs/-/settings", {"require_approval": True}))
    return Expect("docs settings", detail="approval required")


def snapshot_create(w: World, _: Any) -> Expect:
    ok(w.alice.call("POST", "/snapshots", {"name": "v1"}), 201)
    return Expect("snapshot v1", detail="1 document(s)")


def snapshot_delete(w: World, _: Any) -> Expect:
    ok(w.alice.call("DELETE", "/snapshots/v1"), 204)
    return Expect("snapshot v1")


def repository_create(w: World, _: Any) -> Expect:
    body = {"name": "app", "url": "http://127.0.0.1:9/app.git"}
    ok(w.alice.call("POST", "/repositories", body), 201)
    return Expect("repository app", detail="http://127.0.0.1:9/app.git (main)")


def repository_rotate(w: World, repository_id: int) -> Expect:
    secret = ok(w.alice.call("POST", f"/repositories/{repository_id}/webhook-secret"))
    w.extra["secret"] = secret["webhook_secret"]
    return Expect("repository app")


def repository_delete(w: World, repository_id: int) -> Expect:
    ok(w.alice.call("DELETE", f"/repositories/{repository_id}"), 204)
    return Expect("repository app")


def repository_build(w: World, _: Any) -> Expect:
    number = ok(w.alice.call("POST", "/builds", {"repository": "app", "ref": "dev"}), 201)["id"]
    return Expect(f"build {number}", detail="repository app at dev")


def schedule_create(w: World, _: Any) -> Expect:
    number = schedule(w)
    return Expect(f"schedule {number}", detail="pipeline main at '0 3 * * *' (UTC)")


def schedule_pause(w: World, number: int) -> Expect:
    ok(w.alice.call("PATCH", f"/schedules/{number}", {"paused": True}))
    return Expect(f"schedule {number}")


def paused_schedule(w: World) -> int:
    number = schedule(w)
    ok(w.alice.call("PATCH", f"/schedules/{number}", {"paused": True}))
    return number


def schedule_resume(w: World, number: int) -> Expect:
    ok(w.alice.call("PATCH", f"/schedules/{number}", {"paused": False}))
    return Expect(f"schedule {number}")


def schedule_delete(w: World, number: int) -> Expect:
    ok(w.alice.call("DELETE", f"/schedules/{number}"), 204)
    return Expect(f"schedule {number}")


SECRET_VALUE = "hunter2-do-not-record-me"


def secret_set(w: World, _: Any) -> Expect:
    ok(w.alice.call("PUT", "/secrets/API_KEY", {"value": SECRET_VALUE}))
    return Expect("secret API_KEY", detail="version 1")


def secret_delete(w: World, _: Any) -> Expect:
    ok(w.alice.call("DELETE", "/secrets/API_KEY"), 204)
    return Expect("secret API_KEY")


def a_secret(w: World) -> None:
    ok(w.alice.call("PUT", "/secrets/API_KEY", {"value": SECRET_VALUE}))


def a_provider(w: World) -> None:
    ok(w.alice.call("POST", "/providers", {"name": "local", "kind": "offline"}), 201)


def nothing(w: World) -> None:
    return None


Setup = Callable[[World], Any]
Act = Callable[[World, Any], Expect]
CASES: list[tuple[str, Setup, Act]] = [
    ("project.create", nothing, project_create),
    ("project.update", nothing, project_update),
    ("member.set", nothing, member_set),
    ("member.remove", nothing, member_remove),
    ("token.create", nothing, token_create),
    ("token.revoke", scoped_token, token_revoke),
    ("pipeline.save", nothing, pipeline_save),
    ("build.trigger", nothing, build_trigger),
    ("build.trigger", repository, repository_build),
    ("build.cancel", build_id, build_cancel),
    ("build.retry", cancelled_build, build_retry),
    ("build.rerun", cancelled_build, build_rerun),
    ("pool.set", nothing, pool_set),
    ("cache.purge", nothing, cache_purge),
    ("provider.save", nothing, provider_save),
    ("provider.delete", a_provider, provider_delete),
    ("prompt.create", nothing, prompt_create),
    ("prompt.version", prompt, prompt_version),
    ("label.move", lambda w: prompt(w, labelled=True), label_move),
    ("label.remove", lambda w: prompt(w, labelled=True), label_remove),
    ("document.publish", document, document_publish),
    ("document.approve", awaiting_approval, document_approve),
    ("document.move", document, document_move),
    ("document.delete", document, document_delete),
    ("document.restore", two_revisions, document_restore),
    ("docs.settings", nothing, docs_settings),
    ("snapshot.create", document, snapshot_create),
    ("snapshot.delete", lambda w: (document(w), snapshot_create(w, None)), snapshot_delete),
    ("repository.create", nothing, repository_create),
    ("repository.rotate_secret", repository, repository_rotate),
    ("repository.delete", repository, repository_delete),
    ("schedule.create", nothing, schedule_create),
    ("schedule.pause", schedule, schedule_pause),
    ("schedule.resume", paused_schedule, schedule_resume),
    ("schedule.delete", schedule, schedule_delete),
    ("secret.set", nothing, secret_set),
    ("secret.delete", a_secret, secret_delete),
]


@pytest.mark.parametrize(
    ("action", "setup", "act"), CASES, ids=[f"{a}-{act.__name__}" for a, _, act in CASES]
)
def test_each_action_is_recorded_once(world, action, setup, act):
    state = setup(world)
    before = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    expect = act(world, state)
    new = list(AuditEntry.objects.filter(id__gt=before))
    assert [e.action for e in new] == [action]
    entry = new[0]
    assert entry.target == expect.target
    assert expect.detail in entry.detail
    assert (entry.project.slug if entry.project else None) == expect.project
    assert entry.actor is not None and entry.actor.username == expect.actor
    if expect.token:
        who = {"alice": world.alice, "bob": world.bob, "root": world.root}[expect.actor]
        assert entry.actor_name == who.actor_name
    else:
        assert entry.actor_name == expect.actor
    # Whatever the action, no secret ever reaches the log.
    for secret in (SECRET_VALUE, world.extra.get("secret")):
        if secret:
            assert secret not in entry.target + entry.detail


ACTION_NAME = re.compile(
    r'(?:action=|_record\(user, project, |else )"([a-z_]+\.[a-z_]+)"|"([a-z_]+\.[a-z_]+)" if paused'
)


def test_the_table_covers_every_action_the_services_record():
    """A new record_action call with a new action name must get a row above."""
    root = Path(__file__).resolve().parents[2]
    apps = ("buildsite", "builds", "prompts", "docs_engine", "repositories", "schedules", "vault")
    recorded = {
        name
        for app in apps
        for path in (root / app).glob("*.py")
        for match in ACTION_NAME.findall(path.read_text())
        for name in match
        if name
    }
    assert {"build.cancel", "schedule.pause", "schedule.resume", "document.move"} <= recorded
    assert recorded == {action for action, _, _ in CASES}


def test_a_refused_action_leaves_no_entry(world):
    number = cancelled_build(world)
    before = AuditEntry.objects.count()
    assert world.alice.call("POST", f"/api/builds/{number}/cancel").status_code == 409
    bad = {"name": "main", "definition": "tasks:\n  a:\n    needs: [nope]\n"}
    assert world.alice.call("POST", "/pipelines", bad).status_code == 422
    assert world.bob.call("PUT", "/secrets/X_TOKEN", {"value": SECRET_VALUE}).status_code == 403
    assert AuditEntry.objects.count() == before


def test_an_action_that_fails_after_recording_rolls_the_entry_back(world, monkeypatch):
    """The entry shares the change's transaction: a failure after record_action (here,
    in the last step of a cancel) leaves neither the change nor the entry."""
    from builds import services

    number = build_id(world)
    before = AuditEntry.objects.count()

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "refresh_build_state", broken)
    with pytest.raises(RuntimeError):
        services.cancel_build(user=world.alice.user, build=Build.objects.get(id=number))
    assert AuditEntry.objects.count() == before
    assert not Build.objects.get(id=number).cancel_requested


def test_a_secret_value_is_never_recorded(world):
    for value in (SECRET_VALUE, SECRET_VALUE + "-second"):
        ok(world.alice.call("PUT", "/secrets/DEPLOY_KEY", {"value": value}))
    entries = AuditEntry.objects.filter(action="secret.set")
    assert [(e.target, e.detail) for e in entries.order_by("id")] == [
        ("secret DEPLOY_KEY", "version 1"),
        ("secret DEPLOY_KEY", "version 2"),
    ]
    listed = world.alice.call("GET", "/audit").content.decode()
    assert SECRET_VALUE not in listed and "DEPLOY_KEY" in listed


def test_saving_the_same_pipeline_text_again_records_nothing(world):
    before = AuditEntry.objects.count()
    ok(world.alice.call("POST", "/pipelines", {"name": "main", "definition": PIPELINE}), 201)
    assert AuditEntry.objects.count() == before


def test_a_scheduled_build_is_recorded_as_the_server_naming_the_schedule(world):
    from datetime import timedelta

    from django.utils import timezone

    from schedules.models import Schedule
    from schedules.services import fire_due_schedules

    number = schedule(world)
    due = timezone.now() - timedelta(minutes=1)
    Schedule.objects.filter(id=number).update(next_run=due)
    assert fire_due_schedules(now=timezone.now()) == 1
    build = Build.objects.get(id=Schedule.objects.get(id=number).last_build_id)
    entry = AuditEntry.objects.get(action="build.trigger")
    assert (entry.actor, entry.actor_name, entry.target) == (None, "(server)", f"build {build.id}")
    assert entry.detail.startswith(f"schedule {number} ('0 3 * * *' UTC): pipeline main v1")


def test_a_push_webhook_build_is_recorded_as_the_server_naming_the_forge(world):
    from tests.repositories.conftest import payload
    from tests.repositories.test_webhooks import sign

    repository_id = repository(world)
    secret = ok(world.alice.call("POST", f"/repositories/{repository_id}/webhook-secret"))
    body = payload("github", after="a" * 40)
    headers = sign("github", body, secret["webhook_secret"])
    response = Client().post(
        f"/api/hooks/{repository_id}", body, content_type="application/json", **headers
    )
    assert response.status_code in (200, 201, 202), response.content
    entry = AuditEntry.objects.get(action="build.trigger")
    assert (entry.actor, entry.actor_name) == (None, "(server)")
    assert entry.detail.startswith(f"push webhook from github: repository app at main ({'a' * 12})")


def test_purging_cache_entries_in_the_admin_is_recorded_per_project(world):
    from django.utils import timezone

    from builds.models import CacheEntry

    now = timezone.now()
    entries = [
        CacheEntry.objects.create(
            project=world.project, key=f"{n:064x}", task_name="a", created_at=now, last_used_at=now
        )
        for n in range(2)
    ]
    admin = Client()
    admin.force_login(world.admin)
    action = {"action": "purge_selected", "_selected_action": [e.id for e in entries]}
    assert admin.post("/admin/builds/cacheentry/", action).status_code == 302
    assert not CacheEntry.objects.exists()
    entry = AuditEntry.objects.get(action="cache.purge")
    assert (entry.actor, entry.project, entry.target) == (world.admin, world.project, "cache")
    assert entry.detail == "2 selected in the admin, 2 entries removed"


def test_removing_a_repository_in_the_admin_is_recorded_as_the_staff_user(world):
    repository_id = repository(world)
    admin = Client()
    admin.force_login(world.admin)
    path = f"/admin/repositories/repository/{repository_id}/delete/"
    assert admin.post(path, {"post": "yes"}).status_code == 302
    entry = AuditEntry.objects.get(action="repository.delete")
    assert (entry.actor, entry.actor_name) == (world.admin, "root")  # not "(server)"


def test_role_changes_and_removals_in_the_admin_are_recorded_as_the_staff_user(world):
    from buildsite.models import Membership

    admin = Client()
    admin.force_login(world.admin)
    vic = Membership.objects.get(project=world.project, user__username="vic")
    path = f"/admin/buildsite/membership/{vic.id}/change/"
    assert admin.post(path, {"role": "editor"}).status_code == 302
    assert Membership.objects.get(id=vic.id).role == "editor"
    changed = AuditEntry.objects.get(action="member.set", actor_name="root")
    assert (changed.actor_name, changed.target, changed.detail) == (
        "root",
        "member vic",
        "role editor (was viewer)",
    )
    path = f"/admin/buildsite/membership/{vic.id}/delete/"
    assert admin.post(path, {"post": "yes"}).status_code == 302
    assert not Membership.objects.filter(id=vic.id).exists()
    removed = AuditEntry.objects.get(action="member.remove")
    assert (removed.actor_name, removed.project, removed.detail) == (
        "root",
        world.project,
        "was editor",
    )
