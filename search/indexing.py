"""The log indexer: upkeep (`run_upkeep`, registered with builds.maintenance) reads the
`Event` outbox after a stored position, as notifications/outbox.py does, and indexes
the `log` events as chunks. Off the build's path: a task's log is written as it always
was, and is searchable a tick or so later. Also drops the chunks of builds whose logs
retention removed (search hides those at once; this reclaims the space)."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import transaction
from django.db.models import Min

from tasks.models import Event
from tasks.outbox import IdGaps

from . import services
from .models import IndexPosition

POSITION = "logs"
# Events examined per read; reads go on while a backlog lasts, for at most
# ROUND_SECONDS per tick, so a burst is caught up within a few ticks without holding
# the database's write lock (SQLite) or the upkeep holder's other work for long.
BATCH = 500
ROUND_SECONDS = 0.5
SWEEP_SECONDS = 600.0
_last_sweep: list[float] = []


def gap_seconds() -> float:
    return float(settings.BUILDSITE.get("SEARCH_GAP_SECONDS", 2.0))


# Holes in the ids (PostgreSQL) hold the position back a while: tasks/outbox.py.
GAPS = IdGaps(gap_seconds)


def run_upkeep() -> int:
    """New log events indexed, and now and then the sweep of purged builds. Returns
    the chunks written or deleted."""
    done = index_new_logs()
    now = time.monotonic()
    if not _last_sweep or now - _last_sweep[0] >= SWEEP_SECONDS:
        _last_sweep[:] = [now]
        done += services.delete_purged_logs()
    return done


def _position() -> int:
    """Where reading resumes. Created just below the oldest event, so the logs written
    before search existed are indexed too (in bounded batches, like any backlog), and
    ids that were never used are not waited for as holes."""
    last = IndexPosition.objects.filter(name=POSITION).values_list("last_event_id", flat=True)
    found = last.first()
    if found is not None:
        return int(found)
    oldest = Event.objects.aggregate(m=Min("id"))["m"]
    position, _ = IndexPosition.objects.get_or_create(
        name=POSITION, defaults={"last_event_id": oldest - 1 if oldest else 0}
    )
    return int(position.last_event_id)


def index_new_logs() -> int:
    written = 0
    deadline = time.monotonic() + ROUND_SECONDS
    while True:
        done, full = _index_batch()
        written += done
        if not full or time.monotonic() > deadline:
            return written


def _index_batch() -> tuple[int, bool]:
    """(chunks written, whether more rows may be waiting)."""
    after = _position()
    rows = list(Event.objects.filter(id__gt=after).order_by("id").values_list("id", "type")[:BATCH])
    if not rows:
        return 0, False
    upto = GAPS.contiguous(after, [r[0] for r in rows])
    if upto == after:
        return 0, False
    logs = [event_id for event_id, type_ in rows if event_id <= upto and type_ == Event.Type.LOG]
    with transaction.atomic():
        # Conditional: when two clusters overlap while the upkeep lease changes hands,
        # only one moves the position and indexes these events.
        if not IndexPosition.objects.filter(name=POSITION, last_event_id=after).update(
            last_event_id=upto
        ):
            return 0, False
        written = services.index_log_events(event_ids=logs) if logs else 0
    return written, len(rows) == BATCH
