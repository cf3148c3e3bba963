"""Publishing events to a network channel layer (Redis): handed to one thread per
process, which sends them in order over one connection without holding the commit,
gives up on a Redis that stops answering, and sends what is left when the process
exits."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from tasks import events, publisher

REDIS_LAYER = "channels_redis.core.RedisChannelLayer"
scaled_out = pytest.mark.skipif(
    settings.CHANNEL_LAYERS["default"]["BACKEND"] != REDIS_LAYER,
    reason="the channel layer is Redis only with REDIS_URL (the PostgreSQL + Redis lane)",
)


def a_payload(event_id: int, build_id: int) -> dict:
    return {"id": event_id, "type": "task.state", "project": 1, "build": build_id}


def listening_to(build_id: int):
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.build_group(build_id), channel)

    async def receive() -> list[int]:
        """The ids of the group's next message (events sent together share one)."""
        message = await asyncio.wait_for(layer.receive(channel), 5)
        return [event["id"] for event in message["events"]]

    return async_to_sync(receive)


def received(receive, count: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        ids += receive()
    return ids


def a_new_build_id() -> int:
    return 10_000_000 + (time.time_ns() // 1000) % 1_000_000_000


@scaled_out
def test_events_reach_the_group_in_order_over_one_connection():
    import redis

    build_id = a_new_build_id()
    receive = listening_to(build_id)
    server = redis.Redis.from_url(settings.REDIS_URL)
    events.send_payloads([a_payload(0, build_id)])  # connects, once
    assert publisher.flush(5)
    before = server.info("stats")["total_connections_received"]
    for event_id in range(1, 21):
        events.send_payloads([a_payload(event_id, build_id)])
    assert publisher.flush(5)
    connections = server.info("stats")["total_connections_received"] - before
    assert received(receive, 21) == list(range(21))
    assert connections < 5  # other clients of this Redis may connect meanwhile; not 20


@scaled_out
def test_a_process_that_exits_at_once_still_sends_its_events():
    """Even when its first send has to connect, so resolve Redis's host name, at exit."""
    build_id = a_new_build_id()
    receive = listening_to(build_id)
    script = (
        "import django; django.setup()\n"
        "from tasks.events import send_payloads\n"
        f"send_payloads([{a_payload(7, build_id)!r}])\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "buildsite.settings",
        "REDIS_URL": settings.REDIS_URL.replace("127.0.0.1", "localhost"),
    }
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert receive() == [7]


class FlakyLayer:
    """A network layer whose first send is cancelled inside the library."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    async def group_send(self, group: str, message: dict) -> None:
        if not self.sent:
            self.sent.append(0)
            raise asyncio.CancelledError
        self.sent.extend(e["id"] for e in message["events"] if group.startswith("build."))


def test_a_send_that_fails_leaves_the_publisher_sending(monkeypatch, caplog):
    layer = FlakyLayer()
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: layer)
    with caplog.at_level(logging.WARNING, logger="tasks.publisher"):
        events.send_payloads([a_payload(1, 1)])
        assert publisher.flush(10)
        events.send_payloads([a_payload(2, 1)])
        assert publisher.flush(10)
    assert layer.sent == [0, 2]
    assert "could not publish 1 events" in caplog.text


def test_a_redis_that_never_answers_does_not_hold_the_caller(monkeypatch, caplog):
    from channels_redis.core import RedisChannelLayer

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are taken by the kernel, and never answered
    port = silent.getsockname()[1]
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: layer)
    try:
        with caplog.at_level(logging.WARNING, logger="tasks.publisher"):
            started = time.monotonic()
            events.send_payloads([a_payload(1, 1)])
            assert time.monotonic() - started < 1  # handed over; a send waits 2 s
            assert publisher.flush(10)  # given up after PUBLISH_SECONDS
        assert "could not publish 1 events" in caplog.text
    finally:
        silent.close()


class SlowLayer:
    """A layer whose first send waits until the test lets it go on."""

    def __init__(self) -> None:
        self.sending = threading.Event()
        self.go_on = threading.Event()
        self.messages: list[list[int]] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.sending.set()
        while not self.go_on.is_set():
            await asyncio.sleep(0.005)
        if group.startswith("build."):
            self.messages.append([e["id"] for e in message["events"]])


def test_events_handed_over_during_a_send_go_out_together_in_order(monkeypatch):
    layer = SlowLayer()
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: layer)
    events.send_payloads([a_payload(1, 1)])
    assert layer.sending.wait(5)  # the publisher is inside the first send
    for event_id in (2, 3, 4):
        events.send_payloads([a_payload(event_id, 1)])
    layer.go_on.set()
    assert publisher.flush(10)
    assert layer.messages == [[1], [2, 3, 4]]


@scaled_out
def test_only_groups_someone_joined_are_sent_to(monkeypatch):
    from channels.layers import get_channel_layer

    build_id = a_new_build_id()
    receive = listening_to(build_id)
    layer = get_channel_layer()
    watched, unwatched = events.build_group(build_id), events.build_group(build_id + 1)
    listened = async_to_sync(events.listened_groups)(layer, [watched, unwatched])
    assert listened == {watched}
    sent_to: list[str] = []
    group_send = layer.group_send

    async def recording(group: str, message: dict) -> None:
        sent_to.append(group)
        await group_send(group, message)

    monkeypatch.setattr(layer, "group_send", recording)
    events.send_payloads([a_payload(5, build_id), a_payload(6, build_id + 1)])
    assert publisher.flush(5)
    assert receive() == [5]
    assert watched in sent_to and unwatched not in sent_to


@scaled_out
def test_a_deferred_batch_is_serialised_only_when_its_build_is_watched():
    """A new build's thousands of events are handed over unserialised; nobody watching
    its build or project (the common case), they are never serialised at all."""
    watched = a_new_build_id()
    receive = listening_to(watched)
    made: list[int] = []

    def deferred(build_id: int, ids: list[int]) -> publisher.Deferred:
        def make() -> list[dict]:
            made.append(build_id)
            return [a_payload(event_id, build_id) for event_id in ids]

        groups = (events.build_group(build_id), events.project_group(987_654_321))
        return publisher.Deferred(groups, len(ids), make)

    events.send_payloads([a_payload(1, watched)])
    events.send_deferred(deferred(watched + 1, [2, 3]))
    events.send_deferred(deferred(watched, [4, 5]))
    events.send_payloads([a_payload(6, watched)])
    assert publisher.flush(5)
    assert received(receive, 4) == [1, 4, 5, 6]
    assert made == [watched]


def test_a_batch_that_cannot_be_serialised_costs_only_its_own_events(caplog):
    class RecordingLayer:
        def __init__(self) -> None:
            self.sent: list[int] = []

        async def group_send(self, group: str, message: dict) -> None:
            if group.startswith("build."):
                self.sent.extend(e["id"] for e in message["events"])

    def broken() -> list[dict]:
        raise ValueError("not serialisable")

    layer = RecordingLayer()
    items = [
        [a_payload(1, 7)],
        publisher.Deferred((events.build_group(7),), 2, broken),
        [a_payload(4, 7)],
    ]
    with caplog.at_level(logging.WARNING, logger="tasks.events"):
        async_to_sync(events.send_items)(layer, items)
    assert layer.sent == [1, 4]
    assert "could not serialise 2 events" in caplog.text
