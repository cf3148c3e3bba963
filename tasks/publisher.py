"""Sending events to a network channel layer (Redis) without holding the committer.

channels_redis keeps its connections per event loop, and async_to_sync makes a loop per
call: every commit connected to Redis again (1.7 ms a send, 0.3 ms on a loop that
lives on). Even then a worker that waited for its sends spent a fifth of its settling
time on them (docs/performance.md). So each process hands its events to one thread
with one loop, which sends them in the order they came; the process flushes what is
left when it exits. Best-effort, as before: what cannot be sent in PUBLISH_SECONDS, or
does not fit in the queue, is dropped with a warning, and browsers catch up from the
Event table when they reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from multiprocessing import util
from typing import Any

log = logging.getLogger(__name__)

PUBLISH_SECONDS = 2.0  # a Redis that takes connections but never answers: give up
QUEUE_LIMIT = 10_000  # sends waiting; a Redis far behind must not grow memory for ever
FLUSH_SECONDS = 5.0  # what a process exiting waits for its last events at most

Send = Callable[[], Coroutine[Any, Any, None]]


class Publisher:
    def __init__(self) -> None:
        self.sends: queue.Queue[tuple[Send, int]] = queue.Queue(QUEUE_LIMIT)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, name="events", daemon=True).start()

    def put(self, send: Send, count: int) -> None:
        try:
            self.sends.put_nowait((send, count))
        except queue.Full:
            log.warning("could not publish %d events: %d sends waiting", count, QUEUE_LIMIT)

    def flush(self, timeout: float) -> bool:
        """Wait until everything handed over was sent (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.sends.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        while True:
            send, count = self.sends.get()
            try:
                self.loop.run_until_complete(asyncio.wait_for(send(), PUBLISH_SECONDS))
            except Exception:
                log.warning("could not publish %d events", count, exc_info=True)
            finally:
                self.sends.task_done()


_publisher: Publisher | None = None
_publisher_pid = 0
_lock = threading.Lock()


def publisher() -> Publisher:
    """This process's publisher (a forked worker starts its own: threads do not fork)."""
    global _publisher, _publisher_pid
    with _lock:
        if _publisher is None or _publisher_pid != os.getpid():
            _publisher, _publisher_pid = Publisher(), os.getpid()
            # Run at exit by multiprocessing in every process: also in its children
            # (django-q2's workers), which leave through os._exit, skipping atexit.
            util.Finalize(None, flush, exitpriority=100)
        return _publisher


def flush(timeout: float = FLUSH_SECONDS) -> bool:
    """Wait for this process's events to be sent; True when none is left."""
    if _publisher is None or _publisher_pid != os.getpid():
        return True
    return _publisher.flush(timeout)
