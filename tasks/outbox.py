"""Readers of the Event table as an outbox (notifications' deliveries, search's log
index) keep a position: the highest event id they handled. This is the one rule for
how far that position may move over the ids a read returned.

On SQLite there is one writer at a time, so ids appear in order and every id read may
be passed. On PostgreSQL a lower id can commit after a higher one: a hole below the
newest row holds the position back until it fills or `wait_seconds()` passes since it
was first seen (a rolled-back transaction leaves a permanent hole). The live-update
relay (tasks/relay.py) waits on holes the same way for its own, in-memory position.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connection


class IdGaps:
    """The holes one reader has seen, with when it first saw each (per process: a
    reader that moves to another cluster waits once more, which is only later)."""

    def __init__(self, wait_seconds: Callable[[], float]) -> None:
        self.wait_seconds = wait_seconds
        self.seen: dict[int, float] = {}

    def contiguous(self, after: int, ids: list[int]) -> int:
        """How far the position may move over `ids` (ascending, all > after)."""
        if not ids:
            return after
        if connection.vendor == "sqlite":  # one writer at a time: ids appear in order
            return ids[-1]
        wait = self.wait_seconds()
        expected, upto = after + 1, after
        for event_id in ids:
            if event_id != expected:
                seen = self.seen.setdefault(upto, time.monotonic())
                if time.monotonic() - seen < wait:
                    return upto
                self.seen.pop(upto, None)
            upto, expected = event_id, event_id + 1
        return upto

    def clear(self) -> None:
        self.seen.clear()
