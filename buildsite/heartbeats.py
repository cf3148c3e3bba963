"""Worker clusters saying they are alive, and when upkeep last ran (read by /metrics).

Each cluster's upkeep thread (`builds/upkeep.py`) calls `beat` every round; it writes at
most every `BEAT_SECONDS` (one small UPDATE), so a deployment of many clusters on SQLite
pays little for it. A cluster counts as alive while its row is younger than
`ALIVE_SECONDS`, which allows two missed beats.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, IntegerField, Max, Sum, When
from django.utils import timezone

from .models import ClusterHeartbeat

BEAT_SECONDS = 5.0
ALIVE_SECONDS = 3 * BEAT_SECONDS
FORGET_AFTER = timedelta(days=1)  # rows of clusters gone this long are deleted


class Beater:
    """The heartbeat of one cluster: `holder` names it (unique per process)."""

    def __init__(self, *, holder: str, workers: int) -> None:
        self.holder = holder
        self.workers = workers
        self.host = socket.gethostname()
        self.last = float("-inf")  # monotonic time of the last write
        self.upkeep_pending = False

    def beat(self, *, upkeep_done: bool) -> bool:
        """Note a round (`upkeep_done`: this process ticked upkeep in it); write the row
        when the last write is `BEAT_SECONDS` old. True when it wrote."""
        self.upkeep_pending = self.upkeep_pending or upkeep_done
        if time.monotonic() - self.last < BEAT_SECONDS:
            return False
        now = timezone.now()
        fields: dict[str, object] = {"host": self.host, "workers": self.workers, "seen_at": now}
        if self.upkeep_pending:
            fields["upkeep_at"] = now
        with transaction.atomic():
            if self.last == float("-inf"):  # once per process: forget long-gone clusters
                ClusterHeartbeat.objects.filter(seen_at__lt=now - FORGET_AFTER).delete()
            if not ClusterHeartbeat.objects.filter(holder=self.holder).update(**fields):
                ClusterHeartbeat.objects.create(holder=self.holder, **fields)
        self.last = time.monotonic()
        self.upkeep_pending = False
        return True


def workers_alive(*, now: datetime) -> dict[str, int]:
    """Per host with a recorded cluster: the workers of its clusters that beat within
    `ALIVE_SECONDS` (0 for a host whose clusters all stopped or died)."""
    cutoff = now - timedelta(seconds=ALIVE_SECONDS)
    rows = ClusterHeartbeat.objects.values("host").annotate(
        alive=Sum(
            Case(When(seen_at__gte=cutoff, then="workers"), default=0, output_field=IntegerField())
        )
    )
    return {row["host"]: int(row["alive"] or 0) for row in rows}


def last_upkeep_at() -> datetime | None:
    """When any cluster last ended an upkeep round holding the lease (None: never)."""
    latest: datetime | None = ClusterHeartbeat.objects.aggregate(at=Max("upkeep_at"))["at"]
    return latest
