"""Upkeep inside every worker cluster, done by one cluster at a time.

Due retries, expired leases, stale jobs, deadlines, cache eviction and file retention
(`builds/maintenance.py`) used to need a separate `manage.py ticker` that nothing
reminded anyone to run. Now each cluster's monitor process runs an `UpkeepThread`;
the threads of all clusters compete for one lease row, and only its holder ticks. The
holder renews the lease every tick; if its host dies, the lease expires after
`UPKEEP_LEASE_SECONDS` and another cluster's thread takes over. A row, not a
PostgreSQL advisory lock, so the rule is the same on SQLite.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from buildsite.heartbeats import Beater

from .cluster import kill_orphans, sweep_workspaces
from .maintenance import tick
from .models import UpkeepLease

log = logging.getLogger(__name__)
LEASE_NAME = "upkeep"


def lease_seconds() -> float:
    seconds: float = 5 * settings.BUILDSITE["TICK_SECONDS"]
    return max(5.0, seconds)


def hold_upkeep_lease(*, holder: str, seconds: float | None = None) -> bool:
    """Take or renew the upkeep lease; True while `holder` has it."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds or lease_seconds())
    with transaction.atomic():
        renewed = (
            UpkeepLease.objects.filter(name=LEASE_NAME)
            .filter(holder=holder)
            .update(expires_at=until)
        ) or (
            UpkeepLease.objects.filter(name=LEASE_NAME, expires_at__lt=now).update(
                holder=holder, expires_at=until
            )
        )
        if renewed:
            return True
        try:
            with transaction.atomic():
                UpkeepLease.objects.create(name=LEASE_NAME, holder=holder, expires_at=until)
        except IntegrityError:  # someone else holds it
            return False
        return True


def release_upkeep_lease(*, holder: str) -> None:
    UpkeepLease.objects.filter(name=LEASE_NAME, holder=holder).delete()


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class UpkeepThread(threading.Thread):
    """Ticks every `TICK_SECONDS` while this process holds the upkeep lease."""

    def __init__(self, *, workers: int = 0) -> None:
        """`workers`: how many job workers the cluster runs (0 for `manage.py ticker`),
        as its heartbeat reports them to /metrics."""
        super().__init__(daemon=True, name="buildsite-upkeep")
        self.holder = new_holder()
        self.stopped = threading.Event()
        self.heartbeat = Beater(holder=self.holder, workers=workers)

    def run(self) -> None:
        interval = settings.BUILDSITE["TICK_SECONDS"]
        try:
            while not self.stopped.wait(interval):
                self.round()
        finally:
            try:
                release_upkeep_lease(holder=self.holder)  # the next cluster need not wait
            except Exception:
                log.warning("could not release the upkeep lease", exc_info=True)
            connection.close()

    def round(self) -> None:
        close_old_connections()
        try:
            kill_orphans()  # this host's own: every cluster, lease or not
            sweep_workspaces()
        except Exception:
            log.warning("cleaning up after lost workers failed", exc_info=True)
        ticked = False
        try:
            if hold_upkeep_lease(holder=self.holder):
                tick()
                ticked = True
        except Exception:  # a passing database error must not end upkeep
            log.warning("upkeep round failed", exc_info=True)
        try:
            self.heartbeat.beat(upkeep_done=ticked)
        except Exception:
            log.warning("could not record the cluster's heartbeat", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=3)
