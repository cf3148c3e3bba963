"""Publishing events to a network channel layer (Redis): from one loop per process, so
one connection serves every commit, and bounded in time when Redis stops answering."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from tasks import events

REDIS_LAYER = "channels_redis.core.RedisChannelLayer"
scaled_out = pytest.mark.skipif(
    settings.CHANNEL_LAYERS["default"]["BACKEND"] != REDIS_LAYER,
    reason="the channel layer is Redis only with REDIS_URL (the PostgreSQL + Redis lane)",
)


def a_payload(event_id: int, build_id: int) -> dict:
    return {"id": event_id, "type": "task.state", "project": 1, "build": build_id}


@scaled_out
def test_events_reach_the_group_in_order_over_one_connection():
    import redis
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    build_id = 10_000_000 + int(time.time() * 1000) % 1_000_000
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.build_group(build_id), channel)
    server = redis.Redis.from_url(settings.REDIS_URL)
    events.send_payloads([a_payload(0, build_id)])  # connects, once
    before = server.info("stats")["total_connections_received"]
    for event_id in range(1, 21):
        events.send_payloads([a_payload(event_id, build_id)])
    connections = server.info("stats")["total_connections_received"] - before
    received = [async_to_sync(layer.receive)(channel)["events"][0]["id"] for _ in range(21)]
    assert received == list(range(21))
    assert connections < 5  # other clients of this Redis may connect meanwhile; not 20


def test_a_redis_that_never_answers_does_not_hold_the_commit(monkeypatch, caplog):
    from channels.layers import get_channel_layer  # noqa: F401 (the name patched below)
    from channels_redis.core import RedisChannelLayer

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are taken by the kernel, and never answered
    port = silent.getsockname()[1]
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: layer)
    monkeypatch.setattr(events, "PUBLISH_SECONDS", 0.5)
    sender = threading.Thread(target=events.send_payloads, args=([a_payload(1, 1)],))
    try:
        with caplog.at_level(logging.WARNING, logger="tasks.events"):
            sender.start()
            sender.join(timeout=10)
            assert not sender.is_alive()
        assert "could not publish 1 events" in caplog.text
    finally:
        silent.close()
