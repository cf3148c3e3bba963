"""Reading the outbox: the position, batches, projects without targets, and holes in
the ids (PostgreSQL commits ids out of order)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from notifications import outbox, services
from notifications.models import Delivery, OutboxPosition
from tasks import outbox as tasks_outbox
from tasks.models import Event
from tasks.services import record_event


def position() -> int:
    return OutboxPosition.objects.get(name=outbox.POSITION).last_event_id


@pytest.mark.django_db
def test_the_position_starts_at_the_newest_event_and_skips_projects_without_targets(project):
    first = record_event(project_id=project.id, type=Event.Type.LABEL_MOVED, data={})
    assert outbox.process_outbox() == 0
    assert position() == first.id  # history before the first round is not replayed
    later = [
        record_event(project_id=project.id, type=Event.Type.LABEL_MOVED, data={"prompt": "p"})
        for _ in range(3)
    ]
    assert outbox.process_outbox() == 0  # no targets: nothing to create
    assert position() == later[-1].id
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_a_backlog_is_read_in_bounded_batches(project, monkeypatch, notify_settings):
    services.create_target(
        user=None, project=project, name="t", kind="webhook",
        url="http://127.0.0.1:9/x", events=["label.moved"],
    )  # fmt: skip
    outbox.process_outbox()
    start = position()
    for i in range(7):
        record_event(
            project_id=project.id,
            type=Event.Type.LABEL_MOVED,
            data={"prompt": "p", "label": "l", "version": i},
        )
    monkeypatch.setattr(outbox, "BATCH", 3)
    monkeypatch.setattr(outbox, "ROUND_SECONDS", -1.0)  # one batch per round
    assert outbox.process_outbox() == 3
    new_ids = list(Event.objects.filter(id__gt=start).order_by("id").values_list("id", flat=True))
    assert position() == new_ids[2]  # ids need not follow `start` at once on PostgreSQL
    assert outbox.process_outbox() == 3
    assert outbox.process_outbox() == 1
    assert outbox.process_outbox() == 0
    versions = sorted(d.payload["prompt"]["version"] for d in Delivery.objects.all())
    assert versions == list(range(7))


@pytest.mark.django_db
def test_a_hole_in_the_ids_holds_the_position_back_for_a_while(monkeypatch, settings):
    monkeypatch.setattr(tasks_outbox, "connection", SimpleNamespace(vendor="postgresql"))
    outbox.GAPS.clear()
    settings.BUILDSITE = {**settings.BUILDSITE, "NOTIFY_GAP_SECONDS": 3600.0}
    assert outbox.GAPS.contiguous(10, [11, 12, 14, 15]) == 12  # 13 may still commit
    assert outbox.GAPS.contiguous(10, [11, 12, 13, 14, 15]) == 15
    settings.BUILDSITE = {**settings.BUILDSITE, "NOTIFY_GAP_SECONDS": 0.0}
    assert outbox.GAPS.contiguous(10, [11, 12, 14, 15]) == 15  # an old hole is given up on
    monkeypatch.setattr(tasks_outbox, "connection", SimpleNamespace(vendor="sqlite"))
    assert outbox.GAPS.contiguous(10, [14, 20]) == 20  # one writer: ids appear in order
