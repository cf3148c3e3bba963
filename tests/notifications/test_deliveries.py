"""From outbox events to messages at a receiver on 127.0.0.1: builds run with inline
workers, upkeep (run_upkeep) turns their events into deliveries whose jobs run inline."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.core import mail

from notifications import outbox, services
from notifications.models import Delivery, NotificationTarget
from tests.factories import make_pipeline, run_build

FAILING = "tasks:\n  compile: {steps: [{run: 'echo line-one; echo the-last-line; exit 3'}]}\n"
BY_PARAM = "params: {code: 0}\ntasks:\n  t: {steps: [{run: 'exit {{ params.code }}'}]}\n"

pytestmark = pytest.mark.usefixtures("inline_workers", "fast_engine", "notify_settings", "outbox")


def webhook(project, url, *, events=("build.failed",), name="hook", **extra) -> NotificationTarget:
    return services.create_target(
        user=None, project=project, name=name, kind="webhook", url=url, events=list(events),
        **extra,
    )  # fmt: skip


def settle_notifications(rounds: int = 20) -> None:
    """Upkeep rounds until no delivery is waiting (retries are due at once here)."""
    for _ in range(rounds):
        outbox.run_upkeep()
        if not Delivery.objects.filter(state__in=["pending", "delivering"]).exists():
            return
    raise AssertionError(list(Delivery.objects.values("state", "attempts", "error")))


def test_failed_build_sends_a_signed_webhook(project, receiver):
    target = webhook(project, receiver.url, secret="top-secret")
    make_pipeline(project, FAILING)
    build = run_build(project)
    assert build.state == "failed"
    settle_notifications()

    (request,) = receiver.wait_for(1)
    assert request.path == "/hook"
    assert request.headers["X-Buildsite-Event"] == "build.failed"
    expected = "sha256=" + hmac.new(b"top-secret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Buildsite-Signature-256"] == expected
    body = json.loads(request.body)
    assert body["event"] == "build.failed" and body["project"] == project.slug
    assert body["delivery"] == request.headers["X-Buildsite-Delivery"]
    assert body["build"]["id"] == build.id and body["build"]["state"] == "failed"
    assert body["build"]["pipeline"] == "main"
    assert body["build"]["url"].endswith(f"/builds/{build.id}/")
    assert body["build"]["finished_at"] and body["sent_at"]
    assert [t["name"] for t in body["build"]["failed_tasks"]] == ["compile"]
    delivery = Delivery.objects.get(target=target)
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("succeeded", 1, 200)
    assert delivery.response_excerpt == "answer 200"
    assert b"top-secret" not in request.body


def test_no_signature_without_a_secret(project, receiver):
    webhook(project, receiver.url, events=["build.succeeded"])
    make_pipeline(project, BY_PARAM)
    run_build(project)
    settle_notifications()
    (request,) = receiver.wait_for(1)
    assert "X-Buildsite-Signature-256" not in request.headers


def test_a_500_is_retried_until_delivered(project, receiver):
    target = webhook(project, receiver.url)
    receiver.statuses = [500, 503]
    make_pipeline(project, FAILING)
    run_build(project)
    settle_notifications()
    requests = receiver.wait_for(3)
    assert len({r.headers["X-Buildsite-Delivery"] for r in requests}) == 1  # one delivery
    delivery = Delivery.objects.get(target=target)
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("succeeded", 3, 200)


def test_retries_end_after_max_attempts(project, receiver):
    target = webhook(project, receiver.url)
    receiver.statuses = [500] * 10
    make_pipeline(project, FAILING)
    run_build(project)
    settle_notifications()
    delivery = Delivery.objects.get(target=target)
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("failed", 3, 500)
    assert len(receiver.requests) == 3


def test_a_400_is_not_retried_and_can_be_redelivered(project, receiver, user):
    target = webhook(project, receiver.url)
    receiver.statuses = [400]
    make_pipeline(project, FAILING)
    run_build(project)
    settle_notifications()
    first = Delivery.objects.get(target=target)
    assert (first.state, first.attempts, first.response_code) == ("failed", 1, 400)
    outbox.run_upkeep()
    assert len(receiver.requests) == 1

    again = services.redeliver(user=user, delivery=first)
    settle_notifications()
    requests = receiver.wait_for(2)
    again.refresh_from_db()
    assert again.state == "succeeded" and again.redelivery_of_id == first.id
    assert again.uid != first.uid
    assert requests[1].headers["X-Buildsite-Delivery"] == again.uid
    one, two = (json.loads(r.body) for r in requests)
    assert one["build"] == two["build"] and one["delivery"] != two["delivery"]


def test_slack_gets_its_incoming_webhook_format(project, receiver):
    services.create_target(
        user=None, project=project, name="chat", kind="slack", url=receiver.url,
        events=["build.failed"],
    )  # fmt: skip
    make_pipeline(project, FAILING)
    build = run_build(project)
    settle_notifications()
    (request,) = receiver.wait_for(1)
    body = json.loads(request.body)
    assert set(body) == {"text"}
    assert f"main build #{build.id} failed" in body["text"]
    assert f"/builds/{build.id}/|open>" in body["text"]
    assert "Failed tasks: compile" in body["text"]
    assert "X-Buildsite-Signature-256" not in request.headers


def test_email_with_failed_tasks_and_masked_log_tail(project):
    from vault.services import set_secret

    set_secret(user=None, project=project, name="TOKEN", value="hunter2-value")
    services.create_target(
        user=None, project=project, name="team", kind="email",
        emails=["dev@example.com", "ops@example.com"], events=["build.failed"],
    )  # fmt: skip
    make_pipeline(
        project,
        "tasks:\n  compile:\n    secrets: [TOKEN]\n"
        "    steps: [{run: 'echo token is $TOKEN; echo the-last-line; exit 3'}]\n",
    )
    run_build(project)
    settle_notifications()
    (message,) = mail.outbox
    assert message.to == ["dev@example.com", "ops@example.com"]
    assert "failed" in message.subject and project.slug in message.subject
    assert "compile" in message.body and "the-last-line" in message.body
    assert "hunter2-value" not in message.body
    html, mime = message.alternatives[0]
    assert mime == "text/html" and "the-last-line" in html and "hunter2-value" not in html


def test_event_selection_by_event_pipeline_and_branch(project, receiver):
    make_pipeline(project, FAILING)
    make_pipeline(project, FAILING, name="other")
    webhook(project, receiver.url + "/all", name="all")
    webhook(project, receiver.url + "/main", name="main-only", pipelines=["main"])
    webhook(project, receiver.url + "/release", name="release", branches=["release/*"])
    webhook(project, receiver.url + "/ok", name="ok-only", events=["build.succeeded"])
    off = webhook(project, receiver.url + "/off", name="off")
    services.update_target(user=None, target=off, enabled=False)
    run_build(project, "main")
    run_build(project, "other")
    settle_notifications()
    paths = sorted(r.path for r in receiver.requests)
    assert paths == ["/hook/all", "/hook/all", "/hook/main"]


def test_build_fixed_is_the_first_success_after_a_failure(project, receiver):
    make_pipeline(project, BY_PARAM)
    webhook(project, receiver.url + "/both", name="both", events=["build.succeeded", "build.fixed"])
    webhook(project, receiver.url + "/ok", name="ok", events=["build.succeeded"])
    webhook(project, receiver.url + "/fixed", name="fixed", events=["build.fixed"])
    run_build(project, params={"code": 0})
    run_build(project, params={"code": 1})
    run_build(project, params={"code": 0})  # fixed
    run_build(project, params={"code": 0})
    settle_notifications()
    got = sorted((r.path, json.loads(r.body)["event"]) for r in receiver.requests)
    assert got == sorted(
        [("/hook/both", "build.succeeded")] * 2
        + [("/hook/both", "build.fixed")]
        + [("/hook/ok", "build.succeeded")] * 3
        + [("/hook/fixed", "build.fixed")]
    )


def test_task_failed_once_per_task_not_per_retried_attempt(project, receiver):
    target = webhook(project, receiver.url, events=["task.failed"])
    make_pipeline(project, "tasks:\n  flaky: {retries: 2, steps: [{run: 'exit 1'}]}\n")
    build = run_build(project)
    assert build.state == "failed"
    settle_notifications()
    (delivery,) = Delivery.objects.filter(target=target)
    assert delivery.payload["task"]["name"] == "flaky"
    assert delivery.payload["task"]["attempts"] == 3


def test_cancelled_build(project, receiver, user):
    from builds.services import cancel_build, trigger_build

    webhook(project, receiver.url, events=["build.cancelled", "build.failed"])
    make_pipeline(
        project,
        "tasks:\n  a: {steps: [{run: 'exit 0'}]}\n  b: {needs: [a], steps: [{run: 'exit 0'}]}\n",
    )
    from django_q.conf import Conf

    Conf.SYNC = False  # keep the build queued so it can be cancelled (monkeypatch restores)
    build = trigger_build(user=None, project=project, pipeline="main")
    cancel_build(user=None, build=build)
    Conf.SYNC = True
    settle_notifications()
    (request,) = receiver.wait_for(1)
    assert json.loads(request.body)["event"] == "build.cancelled"


def test_label_moved_and_document_published(project, receiver, user):
    from docs_engine.services import save_document
    from prompts.services import add_version, create_prompt, set_label

    webhook(project, receiver.url, events=["label.moved", "document.published"])
    create_prompt(user=user, project=project, name="notes", body={"template": "v1"})
    add_version(user=user, project=project, name="notes", body={"template": "v2"})
    set_label(user=user, project=project, name="notes", label="production", number=1)
    set_label(user=user, project=project, name="notes", label="production", number=2)
    set_label(user=user, project=project, name="notes", label="production", number=2)  # no move
    save_document(user=user, project=project, path="guide/intro", title="Intro", body="# Hi\n",
                  publish=True)  # fmt: skip
    settle_notifications()
    bodies = [json.loads(r.body) for r in receiver.wait_for(3)]
    moved = [b for b in bodies if b["event"] == "label.moved"]
    assert [(b["prompt"]["version"], b["prompt"]["previous_version"]) for b in moved] == [
        (1, None),
        (2, 1),
    ]
    assert moved[0]["prompt"]["url"].endswith(f"/p/{project.slug}/prompts/notes/")
    assert "build" not in moved[0]
    (published,) = [b for b in bodies if b["event"] == "document.published"]
    assert published["document"]["path"] == "guide/intro"
    assert published["document"]["revision"] == 1


def test_history_before_the_first_round_is_not_sent(project, receiver, transactional_db):
    from notifications.models import OutboxPosition

    make_pipeline(project, FAILING)
    run_build(project)
    OutboxPosition.objects.all().delete()  # as on the first start after an upgrade
    webhook(project, receiver.url)
    outbox.run_upkeep()
    assert not Delivery.objects.exists()


def test_the_url_is_checked_again_when_sending(project, receiver, settings):
    target = webhook(project, receiver.url)
    make_pipeline(project, FAILING)
    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": False}
    run_build(project)
    settle_notifications()
    delivery = Delivery.objects.get(target=target)
    assert delivery.state == "failed" and "refused" in delivery.error
    assert receiver.requests == []


def test_deliveries_are_created_once_however_often_upkeep_runs(project, receiver):
    target = webhook(project, receiver.url)
    make_pipeline(project, FAILING)
    run_build(project)
    for _ in range(3):
        outbox.run_upkeep()
    settle_notifications()
    assert Delivery.objects.filter(target=target).count() == 1
    assert len(receiver.requests) == 1


def test_disabling_a_target_stops_its_retries(project, receiver, settings):
    from django.utils import timezone

    settings.BUILDSITE = {**settings.BUILDSITE, "NOTIFY_BACKOFF_SECONDS": 3600.0}
    target = webhook(project, receiver.url)
    receiver.statuses = [500] * 10
    make_pipeline(project, FAILING)
    run_build(project)
    outbox.run_upkeep()
    first = Delivery.objects.get(target=target)
    assert (first.state, first.attempts) == ("pending", 1)
    assert first.next_attempt_at > timezone.now()  # the retry waits its backoff
    outbox.run_upkeep()
    assert len(receiver.requests) == 1
    services.update_target(user=None, target=target, enabled=False)
    Delivery.objects.filter(id=first.id).update(next_attempt_at=timezone.now())  # now due
    settle_notifications()
    delivery = Delivery.objects.get(target=target)
    assert (delivery.state, delivery.attempts) == ("failed", 2)
    assert delivery.error == "the target is disabled"
    assert len(receiver.requests) == 1
