"""Event serialisation and delivery to Channels groups.

Events are rows first (written in the transaction of the change); sending them to the
channel layer happens after commit and is best-effort, because a browser that misses
one asks for everything after its last id on reconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.conf import settings

from .models import Event
from .publisher import Deferred, Payloads, publisher

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

log = logging.getLogger(__name__)


def build_group(build_id: int) -> str:
    return f"build.{build_id}"


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def serialize(event: Event) -> dict[str, Any]:
    return payload(
        id=event.id,
        type=event.type,
        project_id=event.project_id,
        build_id=event.build_id,
        task_name=event.task_name,
        old_state=event.old_state,
        new_state=event.new_state,
        data=event.data,
        created_at=event.created_at,
    )


def payload(
    *,
    id: int,
    type: str,
    project_id: int,
    build_id: int | None,
    task_name: str,
    old_state: str,
    new_state: str,
    data: dict[str, Any],
    created_at: datetime,
) -> dict[str, Any]:
    """What browsers and the API get of an event (`serialize`, or the columns of a row
    not read back as a model)."""
    return {  # plain strings: states and types may come as enum members
        "id": id,
        "type": str(type),
        "project": project_id,
        "build": build_id,
        "task": task_name or None,
        "state": str(new_state) if new_state else None,
        "old_state": str(old_state) if old_state else None,
        "data": data,
        "time": created_at.isoformat(),
    }


def send_to_groups(events: list[Event]) -> None:
    """Push events to their build and project groups on the channel layer."""
    send_payloads([serialize(e) for e in events])


def send_deferred(deferred: Deferred) -> None:
    """`send_payloads` for events serialised only when sent, and only when watched."""
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):  # tests and a single process: at once
        send_payloads(deferred.make())
    else:
        publisher().put(deferred)


async def send_items(layer: BaseChannelLayer, items: list[Payloads | Deferred]) -> None:
    """Send what was handed over in order; a `Deferred` batch is serialised only when
    one of its groups has a member now (after the commit that wrote it, so a socket
    that joins later reads these events from the table)."""
    deferred = [item for item in items if isinstance(item, Deferred)]
    watched = set()
    if deferred:
        watched = await listened_groups(layer, list({g for d in deferred for g in d.groups}))
    payloads: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, Deferred):
            payloads.extend(item)
        elif watched.intersection(item.groups):
            try:
                payloads.extend(item.make())
            except Exception:  # the batches merged with it still go out
                log.warning("could not serialise %d events", item.size, exc_info=True)
    await send_batches(layer, payloads)


def send_payloads(payloads: list[dict[str, Any]]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None or not payloads:
        return
    from channels.layers import InMemoryChannelLayer

    if not isinstance(layer, InMemoryChannelLayer):
        publisher().put(payloads)
        return
    try:
        # Its queues belong to the loop its readers wait on (the web process's, or a
        # test's), where async_to_sync runs the send when called from under it.
        async_to_sync(send_batches)(layer, payloads)
    except Exception:  # the browser catches up from the Event table on reconnect
        log.warning("could not publish %d events", len(payloads), exc_info=True)


BATCH = 200  # events per channel-layer message


async def send_batches(layer: BaseChannelLayer, payloads: list[dict[str, Any]]) -> None:
    """One `event.batch` message per group for every BATCH events, in id order: a
    10,000-task build sent two messages per event (build and project group), which
    cost more than writing the events. Groups nobody has joined get nothing."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for payload in payloads:
        if payload["build"]:
            by_group.setdefault(build_group(payload["build"]), []).append(payload)
        by_group.setdefault(project_group(payload["project"]), []).append(payload)
    listened = await listened_groups(layer, list(by_group))
    for group, payloads in by_group.items():
        if group not in listened:
            continue
        for start in range(0, len(payloads), BATCH):
            batch = payloads[start : start + BATCH]
            await layer.group_send(group, {"type": "event.batch", "events": batch})


async def listened_groups(layer: BaseChannelLayer, groups: list[str]) -> set[str]:
    """The groups with at least one member. On Redis, one pipelined ZCARD per server
    instead of a `group_send` per group (two round trips each, and about 0.3 ms of a
    worker's CPU even for an empty group: a build nobody watches is the common case).
    Skipping an empty group loses nothing: a socket joins its group before it reads
    the Event table (`tasks/consumers.py`), and these events were committed before
    this check, so a socket that joins after it finds them in the table.
    Uses channels_redis's group key and connection helpers (its minor version is pinned
    in pyproject.toml)."""
    from channels_redis.core import RedisChannelLayer

    if not isinstance(layer, RedisChannelLayer):
        return set(groups)
    by_server: dict[int, list[str]] = {}
    for group in groups:
        by_server.setdefault(layer.consistent_hash(group), []).append(group)
    listened: set[str] = set()
    for index, on_server in by_server.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for group in on_server:
            pipe.zcard(layer._group_key(group))
        counts = await pipe.execute()
        listened.update(g for g, count in zip(on_server, counts, strict=True) if count)
    return listened


def publish_on_commit(events: list[Event]) -> None:
    """Called inside the transaction that wrote `events`; sends them once it commits.
    In the embedded deployment workers cannot reach the web process's in-memory
    layer, so the web process's relay sends them instead."""
    if settings.BUILDSITE["EVENT_RELAY"] or not events:
        return
    from django.db import transaction

    transaction.on_commit(lambda: send_to_groups(events))


def publish_deferred_on_commit(
    *, project_id: int, build_id: int, size: int, make: Callable[[], Payloads]
) -> None:
    """`publish_payloads_on_commit` for a large batch of one build's events, serialised
    by `make` only if somebody watches the build or its project when they are sent:
    the payloads of a new 10,000-task build took a tenth of its trigger on the
    scaled-out set-up, mostly for builds nobody watches."""
    if settings.BUILDSITE["EVENT_RELAY"] or not size:
        return
    from django.db import transaction

    deferred = Deferred((build_group(build_id), project_group(project_id)), size, make)
    transaction.on_commit(lambda: send_deferred(deferred))


def publish_payloads_on_commit(payloads: list[dict[str, Any]]) -> None:
    """`publish_on_commit` for events already serialised (`payload`)."""
    if settings.BUILDSITE["EVENT_RELAY"] or not payloads:
        return
    from django.db import transaction

    transaction.on_commit(lambda: send_payloads(payloads))
