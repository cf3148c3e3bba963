"""From the event outbox to deliveries: upkeep (`run_upkeep`, registered with
builds.maintenance.register_upkeep) reads `Event` rows after a stored position, once a
second in the cluster holding the upkeep lease, and turns those a target wants into
`Delivery` rows and jobs; it also queues due retries and recovers deliveries whose
worker died. Nothing here runs in a build's transaction."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from tasks.models import Event
from tasks.outbox import IdGaps
from tasks.states import BuildState, TaskState

from . import payloads, selectors
from .models import Delivery, NotificationTarget, OutboxPosition
from .services import State, enqueue_deliveries, notify_setting, timeout_seconds

POSITION = "notifications"
# Outbox rows examined per read, and reads per upkeep round while a backlog lasts: a
# burst (a 10,000-task build writes tens of thousands of events) is caught up within a
# few rounds, and no round holds the upkeep lease holder's other work for long.
BATCH = 2000
ROUND_SECONDS = 0.5
# Holes in the ids (PostgreSQL) hold the position back a while: tasks/outbox.py.
GAPS = IdGaps(lambda: notify_setting("NOTIFY_GAP_SECONDS"))


def run_upkeep() -> int:
    """Registered with builds.maintenance.register_upkeep: new events, due retries and
    deliveries whose worker died. Returns the deliveries created or queued again."""
    return process_outbox() + queue_due_retries() + recover_stuck()


def _position() -> int:
    """Where reading resumes. Created at the newest event, so the history written
    before notifications existed is not sent."""
    last = OutboxPosition.objects.filter(name=POSITION).values_list("last_event_id", flat=True)
    found = last.first()
    if found is not None:
        return int(found)
    newest = Event.objects.aggregate(m=Max("id"))["m"] or 0
    position, _ = OutboxPosition.objects.get_or_create(
        name=POSITION, defaults={"last_event_id": newest}
    )
    return int(position.last_event_id)


def _relevant(type_: str, new_state: str) -> bool:
    if type_ == Event.Type.BUILD_STATE:
        return new_state in (BuildState.FAILED, BuildState.SUCCEEDED, BuildState.CANCELLED)
    if type_ == Event.Type.TASK_STATE:
        # A failed attempt that will be retried goes to RETRYING: only the last is FAILED.
        return new_state == TaskState.FAILED
    return type_ in (
        Event.Type.DEADLINE_MISSED,
        Event.Type.LABEL_MOVED,
        Event.Type.DOCUMENT_PUBLISHED,
    )


def _outbox_name(event: Event) -> str:
    if event.type == Event.Type.BUILD_STATE:
        return f"build.{event.new_state}"
    if event.type == Event.Type.TASK_STATE:
        return "task.failed"
    return str(event.type)


def process_outbox() -> int:
    created = 0
    deadline = time.monotonic() + ROUND_SECONDS
    while True:
        done, full = _process_batch()
        created += done
        if not full or time.monotonic() > deadline:
            return created


def _process_batch() -> tuple[int, bool]:
    """(deliveries created, whether more rows may be waiting)."""
    after = _position()
    rows = list(
        Event.objects.filter(id__gt=after)
        .order_by("id")
        .values_list("id", "type", "new_state", "project_id")[:BATCH]
    )
    if not rows:
        return 0, False
    upto = GAPS.contiguous(after, [r[0] for r in rows])
    if upto == after:
        return 0, False
    relevant = [r for r in rows if r[0] <= upto and _relevant(r[1], r[2])]
    # Most projects have no targets: their events cost one query for the whole batch.
    targets = selectors.enabled_targets(r[3] for r in relevant) if relevant else {}
    wanted_ids = [r[0] for r in relevant if r[3] in targets]
    with transaction.atomic():
        # Conditional: when two clusters overlap while the upkeep lease changes hands,
        # only one moves the position and creates the deliveries of these events.
        moved = OutboxPosition.objects.filter(name=POSITION, last_event_id=after).update(
            last_event_id=upto
        )
        if not moved:
            return 0, False
        deliveries = _deliveries_for(wanted_ids, targets) if wanted_ids else []
        if deliveries:
            Delivery.objects.bulk_create(deliveries)
            ids = list(
                Delivery.objects.filter(uid__in=[d.uid for d in deliveries]).values_list(
                    "id", flat=True
                )
            )
            enqueue_deliveries(sorted(ids))
    return len(deliveries), len(rows) == BATCH


def _deliveries_for(
    event_ids: list[int], targets: dict[int, list[NotificationTarget]]
) -> list[Delivery]:
    from builds.models import Build

    events = list(Event.objects.filter(id__in=event_ids).select_related("project").order_by("id"))
    build_ids = {e.build_id for e in events if e.build_id}
    builds = {b.id: b for b in Build.objects.filter(id__in=build_ids).select_related("pipeline")}
    out: list[Delivery] = []
    for event in events:
        build = builds.get(event.build_id) if event.build_id else None
        if event.build_id and build is None:
            continue  # deleted since
        name = _outbox_name(event)
        fixed = bool(
            build is not None and name == "build.succeeded" and selectors.previous_failed(build)
        )
        payloads_by_name: dict[str, dict[str, Any]] = {}
        for target in targets.get(event.project_id, []):
            chosen = payloads.event_for(target.events, name, fixed=fixed)
            if chosen is None or not payloads.wanted(
                pipelines=target.pipelines,
                branches=target.branches,
                event=chosen,
                pipeline=build.pipeline.name if build is not None else None,
                branch=build.commit_ref if build is not None else None,
            ):
                continue
            if chosen not in payloads_by_name:
                payloads_by_name[chosen] = selectors.event_payload(
                    event=event, name=chosen, build=build
                )
            out.append(
                Delivery(
                    target=target,
                    event=event,
                    uid=str(uuid.uuid4()),
                    event_name=chosen,
                    payload=payloads_by_name[chosen],
                )
            )
    return out


def queue_due_retries() -> int:
    """Deliveries whose retry is due get their job again (django-q2 has no delay)."""
    now = timezone.now()
    due = list(
        Delivery.objects.filter(state=State.PENDING, next_attempt_at__lte=now).values_list(
            "id", flat=True
        )[:BATCH]
    )
    if not due:
        return 0
    with transaction.atomic():
        # Clearing next_attempt_at marks the job as queued; a second cluster's
        # overlapping round finds nothing due.
        claimed = [
            i
            for i in due
            if Delivery.objects.filter(id=i, state=State.PENDING, next_attempt_at__lte=now).update(
                next_attempt_at=None
            )
        ]
        enqueue_deliveries(claimed)
    return len(claimed)


def recover_stuck() -> int:
    """A delivery left DELIVERING by a worker that died mid-call goes back to PENDING
    (due now); its next attempt is counted as any other."""
    cutoff = timezone.now() - timedelta(seconds=3 * timeout_seconds() + 30)
    return int(
        Delivery.objects.filter(state=State.DELIVERING, last_attempt_at__lt=cutoff).update(
            state=State.PENDING, next_attempt_at=timezone.now(), error="worker lost"
        )
    )
