"""Publishing a new build's events without the relay (PostgreSQL + Redis): they are
read back as ids, not as models, and must reach browsers exactly as stored."""

from __future__ import annotations

from builds.services import trigger_build
from tasks import events
from tasks.models import Event
from tests.factories import make_pipeline

PIPELINE = """
tasks:
  a: {steps: [{run: "true"}]}
  b: {steps: [{run: "true"}]}
  c: {needs: [a, b], steps: [{run: "true"}]}
"""


def test_a_new_builds_events_are_published_as_stored(
    project, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.BUILDSITE = {**settings.BUILDSITE, "EVENT_RELAY": False}
    published: list[dict] = []
    monkeypatch.setattr(events, "send_payloads", published.extend)
    monkeypatch.setattr(events, "send_deferred", lambda batch: published.extend(batch.make()))
    monkeypatch.setattr(
        events, "send_to_groups", lambda rows: published.extend(map(events.serialize, rows))
    )
    make_pipeline(project, PIPELINE)
    with django_capture_on_commit_callbacks(execute=True):
        build = trigger_build(user=None, project=project, pipeline="main")
    stored = [events.serialize(e) for e in Event.objects.filter(build=build).order_by("id")]
    assert sorted(published, key=lambda p: p["id"]) == stored
    ready = [p["task"] for p in published if p["old_state"] == "pending"]
    assert sorted(ready) == ["a", "b"]  # c waits: no event until it moves


def test_events_someone_else_wrote_meanwhile_are_published_too(
    project, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """When the ids read back are not exactly the rows just written, what is stored is
    published as stored (never ids matched to the wrong rows)."""
    from tasks import rawsql
    from tasks import services as task_services

    settings.BUILDSITE = {**settings.BUILDSITE, "EVENT_RELAY": False}
    published: list[dict] = []
    monkeypatch.setattr(events, "send_payloads", published.extend)
    monkeypatch.setattr(
        events, "send_to_groups", lambda rows: published.extend(map(events.serialize, rows))
    )
    real_fetch = rawsql.fetch

    def one_more(sql, params, **options):
        rows = real_fetch(sql, params, **options)
        return [*rows, (10**9,)] if "ORDER BY id" in sql and "build_id" in sql else rows

    monkeypatch.setattr(task_services.rawsql, "fetch", one_more)
    make_pipeline(project, PIPELINE)
    with django_capture_on_commit_callbacks(execute=True):
        build = trigger_build(user=None, project=project, pipeline="main")
    monkeypatch.setattr(task_services.rawsql, "fetch", real_fetch)
    stored = [events.serialize(e) for e in Event.objects.filter(build=build).order_by("id")]
    assert sorted(published, key=lambda p: p["id"]) == stored
