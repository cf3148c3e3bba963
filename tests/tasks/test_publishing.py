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

    async def receive() -> int:
        message = await asyncio.wait_for(layer.receive(channel), 5)
        return message["events"][0]["id"]

    return async_to_sync(receive)


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
    assert [receive() for _ in range(21)] == list(range(21))
    assert connections < 5  # other clients of this Redis may connect meanwhile; not 20


@scaled_out
def test_a_process_that_exits_at_once_still_sends_its_events():
    build_id = a_new_build_id()
    receive = listening_to(build_id)
    script = (
        "import django; django.setup()\n"
        "from tasks.events import send_payloads\n"
        f"send_payloads([{a_payload(7, build_id)!r}])\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "buildsite.settings"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert receive() == 7


def test_a_redis_that_never_answers_holds_no_commit(monkeypatch, caplog):
    from channels_redis.core import RedisChannelLayer

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are taken by the kernel, and never answered
    port = silent.getsockname()[1]
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: layer)
    monkeypatch.setattr(publisher, "PUBLISH_SECONDS", 0.3)
    try:
        with caplog.at_level(logging.WARNING, logger="tasks.publisher"):
            started = time.monotonic()
            events.send_payloads([a_payload(1, 1)])
            assert time.monotonic() - started < 0.2  # handed over, not sent
            assert publisher.flush(10)  # given up after PUBLISH_SECONDS
        assert "could not publish 1 events" in caplog.text
    finally:
        silent.close()
