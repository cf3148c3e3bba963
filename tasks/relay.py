"""The embedded-mode event relay: the web process forwards new Event rows to Channels.

In the embedded deployment the channel layer is in-memory and lives in the daphne
process, while workers are other processes that cannot reach it. So the web process
polls the Event table for rows after the last id it forwarded and group_sends them.
It runs only inside the ASGI server: consumers start it on their first connect
(`ensure_relay`), never workers, and it stops itself when nobody has listened for a while.

Ids are forwarded strictly in order. On SQLite writers are serialised, so rows become
visible in id order; on PostgreSQL a lower id can commit after a higher one, so an id
missing below the newest row holds back what follows until it appears or `GAP_SECONDS`
pass (a rolled-back transaction leaves a permanent hole).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Max

from .events import send_batches, serialize
from .models import Event

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

BATCH = 500


def _setting(name: str, default: float) -> float:
    return float(settings.BUILDSITE.get(name, default))


def relay_enabled() -> bool:
    return bool(settings.BUILDSITE.get("EVENT_RELAY"))


class EventRelay:
    """One per event loop; the database work runs on its own thread so that polling
    never queues behind request handling on Django's shared sync thread."""

    def __init__(self) -> None:
        self.poll = _setting("RELAY_POLL_SECONDS", 0.02)
        self.idle_stop = _setting("RELAY_IDLE_SECONDS", 30.0)
        self.gap_wait = _setting("RELAY_GAP_SECONDS", 2.0)
        self.last_id = 0
        self.listeners = 0
        self.idle_since: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-relay")
        self.gap_seen: float | None = None

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.last_id = await loop.run_in_executor(self.executor, _max_event_id)
        self.task = loop.create_task(self._run(), name="event-relay")

    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def attach(self) -> None:
        self.listeners += 1
        self.idle_since = None

    def detach(self) -> None:
        self.listeners = max(0, self.listeners - 1)
        if self.listeners == 0:
            self.idle_since = time.monotonic()

    # --- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        loop = asyncio.get_running_loop()
        try:
            while not self._idle_too_long():
                try:
                    rows = await loop.run_in_executor(self.executor, _rows_after, self.last_id)
                    if released := self._releasable(rows):
                        await send_batches(layer, [serialize(e) for e in released])
                        self.last_id = released[-1].id
                except Exception:  # keep relaying; browsers catch up from the table anyway
                    log.warning("event relay poll failed", exc_info=True)
                    await loop.run_in_executor(self.executor, _drop_connection)
                    await asyncio.sleep(1.0)
                await asyncio.sleep(self.poll)
        finally:
            # No await here: between the last idle check and the task being done nothing
            # else runs on the loop, so `running()` never reports a relay that is leaving.
            self.executor.submit(_drop_connection)

    def _idle_too_long(self) -> bool:
        return (
            self.listeners == 0
            and self.idle_since is not None
            and time.monotonic() - self.idle_since > self.idle_stop
        )

    def _releasable(self, rows: list[Event]) -> list[Event]:
        """Rows in id order up to the first hole (or all of them once a hole is old)."""
        out: list[Event] = []
        expected = self.last_id + 1
        for event in rows:
            if event.id != expected and connection.vendor != "sqlite":
                if self.gap_seen is None:
                    self.gap_seen = time.monotonic()
                if time.monotonic() - self.gap_seen < self.gap_wait:
                    break
            self.gap_seen = None
            out.append(event)
            expected = event.id + 1
        return out


def _max_event_id() -> int:
    close_old_connections()
    return Event.objects.aggregate(m=Max("id"))["m"] or 0


def _rows_after(last_id: int) -> list[Event]:
    return list(Event.objects.filter(id__gt=last_id).order_by("id")[:BATCH])


def _drop_connection() -> None:
    connection.close()


_relays: dict[asyncio.AbstractEventLoop, EventRelay] = {}
_lock: asyncio.Lock | None = None


async def ensure_relay() -> EventRelay | None:
    """Start (once per event loop) and return the relay when this deployment needs it."""
    global _lock
    if not relay_enabled():
        return None
    loop = asyncio.get_running_loop()
    for old in [lp for lp in _relays if lp.is_closed()]:
        _relays.pop(old).executor.shutdown(wait=False)
    if _lock is None or getattr(_lock, "_buildsite_loop", None) is not loop:
        _lock = asyncio.Lock()
        _lock._buildsite_loop = loop  # type: ignore[attr-defined]
    async with _lock:
        relay = _relays.get(loop)
        if relay is None or not relay.running():
            relay = relay or EventRelay()
            relay.idle_since = None
            await relay.start()
            _relays[loop] = relay
    return relay
