"""Sending events to a network channel layer (Redis) without holding the committer.

channels_redis keeps its connections per event loop, and async_to_sync makes a loop per
call: every commit connected to Redis again (1.7 ms a send, 0.3 ms on a loop that
lives on). Even then a worker that waited for its sends spent a fifth of its settling
time on them (docs/performance.md). So each process hands its events to one thread
with one loop, which sends them in the order they came; a process that exits normally
first sends what is left (for up to FLUSH_SECONDS). What is waiting when the thread
comes round goes out as one send (a busy monitor and its workers commit faster than
one send each). Large batches can be handed over `Deferred`: serialised here, and only
when somebody watches. Best-effort, as before: what cannot be sent in PUBLISH_SECONDS, or
does not fit in the queue, is dropped with a warning (a merged send that fails drops
all it merged, up to MERGE_LIMIT events), and browsers catch up from the Event table
when they reconnect.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401  (its exit hook first: see publisher())
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PUBLISH_SECONDS = 2.0  # a Redis that takes connections but never answers: give up
QUEUE_LIMIT = 10_000  # sends waiting; a Redis far behind must not grow memory for ever
FLUSH_SECONDS = 5.0  # what a process exiting waits for its last events at most
MERGE_LIMIT = 5_000  # events merged into one send at most

Payloads = list[dict[str, Any]]


@dataclass(frozen=True)
class Deferred:
    """`size` events of a few `groups`, serialised by `make` only when they are sent and
    one of those groups has a member then (`events.publish_deferred_on_commit`)."""

    groups: tuple[str, ...]
    size: int
    make: Callable[[], Payloads]


Item = Payloads | Deferred  # a hand-over


def _size(item: Item) -> int:
    return item.size if isinstance(item, Deferred) else len(item)


class Publisher:
    def __init__(self) -> None:
        self.sends: queue.Queue[Item] = queue.Queue(QUEUE_LIMIT)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="events", daemon=True)
        self.thread.start()

    def put(self, item: Item) -> None:
        """Hand over events (serialised or `Deferred`, in id order) to be sent after those
        before."""
        try:
            self.sends.put_nowait(item)
        except queue.Full:
            log.warning("could not publish %d events: %d sends waiting", _size(item), QUEUE_LIMIT)

    def flush(self, timeout: float) -> bool:
        """Wait until everything handed over was sent (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.sends.unfinished_tasks and self.thread.is_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return not self.sends.unfinished_tasks

    def _run(self) -> None:
        while True:
            merged = self._take()
            try:
                self.loop.run_until_complete(asyncio.wait_for(_send(merged), PUBLISH_SECONDS))
            except (Exception, asyncio.CancelledError):  # the thread must outlive any send
                count = sum(_size(item) for item in merged)
                log.warning("could not publish %d events", count, exc_info=True)
            finally:
                for _ in merged:
                    self.sends.task_done()

    def _take(self) -> list[Item]:
        """The next hand-over and those waiting behind it, in order."""
        merged = [self.sends.get()]
        size = _size(merged[0])
        while size < MERGE_LIMIT:
            try:
                merged.append(self.sends.get_nowait())
            except queue.Empty:
                break
            size += _size(merged[-1])
        return merged


async def _send(items: list[Item]) -> None:
    from channels.layers import get_channel_layer

    from .events import send_items

    await send_items(get_channel_layer(), items)


_publisher: Publisher | None = None
_inherited: list[Publisher] = []
_lock = threading.Lock()


def publisher() -> Publisher:
    """This process's publisher, started on first use."""
    global _publisher
    with _lock:
        if _publisher is None or not _publisher.thread.is_alive():
            _publisher = Publisher()
            # Before threads are joined at exit, so also before concurrent.futures
            # refuses new work (its hook, registered on import above, runs after ours),
            # which a first connection needs to resolve Redis's host name. A CPython
            # internal, used by concurrent.futures itself; multiprocessing's children
            # (django-q2's workers) call it on their way out too.
            threading._register_atexit(flush)  # type: ignore[attr-defined]
        return _publisher


def _after_fork_in_child() -> None:
    """Threads do not fork: a forked worker starts its own publisher. The parent's is
    kept, never closed: closing its loop would unregister the parent's wake-up pipe
    from the epoll instance both processes share."""
    global _publisher, _lock
    if _publisher is not None:
        _inherited.append(_publisher)
    _publisher, _lock = None, threading.Lock()  # the parent's lock may have been held


os.register_at_fork(after_in_child=_after_fork_in_child)


def flush(timeout: float = FLUSH_SECONDS) -> bool:
    """Wait for this process's events to be sent; True when none is left."""
    return _publisher is None or _publisher.flush(timeout)
