"""Event serialisation and delivery to Channels groups.

Events are rows first (written in the transaction of the change); sending them to the
channel layer happens after commit and is best-effort, because a browser that misses
one asks for everything after its last id on reconnect.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.conf import settings

from .models import Event

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

log = logging.getLogger(__name__)


def build_group(build_id: int) -> str:
    return f"build.{build_id}"


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def serialize(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "project": event.project_id,
        "build": event.build_id,
        "task": event.task_name or None,
        "state": event.new_state or None,
        "old_state": event.old_state or None,
        "data": event.data,
        "time": event.created_at.isoformat(),
    }


def send_to_groups(events: list[Event]) -> None:
    """Push events to their build and project groups on the channel layer."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None or not events:
        return
    try:
        async_to_sync(send_batches)(layer, events)
    except Exception:  # the browser catches up from the Event table on reconnect
        log.warning("could not publish %d events", len(events), exc_info=True)


BATCH = 200  # events per channel-layer message


async def send_batches(layer: BaseChannelLayer, events: list[Event]) -> None:
    """One `event.batch` message per group for every BATCH events, in id order: a
    10,000-task build sent two messages per event (build and project group), which
    cost more than writing the events."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        payload = serialize(event)
        if event.build_id:
            by_group.setdefault(build_group(event.build_id), []).append(payload)
        by_group.setdefault(project_group(event.project_id), []).append(payload)
    for group, payloads in by_group.items():
        for start in range(0, len(payloads), BATCH):
            batch = payloads[start : start + BATCH]
            await layer.group_send(group, {"type": "event.batch", "events": batch})


def publish_on_commit(events: list[Event]) -> None:
    """Called inside the transaction that wrote `events`; sends them once it commits.
    In the embedded deployment workers cannot reach the web process's in-memory
    layer, so the web process's relay sends them instead."""
    if settings.BUILDSITE["EVENT_RELAY"] or not events:
        return
    from django.db import transaction

    transaction.on_commit(lambda: send_to_groups(events))
