"""Against a live daphne: an alias bomb and a template bomb are each refused at once,
and the server keeps answering other requests meanwhile."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.builds.test_definition import ALIAS_BOMB
from tests.cluster import WebServer
from tests.factories import create_token, make_project, make_user

pytestmark = pytest.mark.slow


def test_bombs_are_refused_at_once_while_health_keeps_answering(transactional_db):
    user = make_user("owner")
    project = make_project(owner=user, slug="bombs")
    _, token = create_token(user=user, project=project)
    server = WebServer()
    latencies: list[float] = []
    done = threading.Event()

    def watch_health() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not done.is_set():
                started = time.monotonic()
                assert client.get("/api/health").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)

    watcher = threading.Thread(target=watch_health, daemon=True)
    watcher.start()
    try:
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        # The first API call of a fresh process imports and builds the whole API (a
        # second or so on a busy machine): made first, so the timings are the bombs'.
        assert api.get("/api/projects/bombs/pipelines").status_code == 200
        timings = {}
        started = time.monotonic()
        saved = api.post(
            "/api/projects/bombs/pipelines", json={"name": "bomb", "definition": ALIAS_BOMB}
        )
        timings["alias bomb"] = time.monotonic() - started
        assert saved.status_code == 422 and "aliases" in saved.text
        bomb = "{{ (10 ** 100000000) > 1 }}"
        started = time.monotonic()
        created = api.post("/api/projects/bombs/prompts", json={"name": "bomb", "template": bomb})
        rendered = api.post("/api/projects/bombs/prompts/bomb/render", json={"variables": {}})
        timings["template bomb"] = time.monotonic() - started
        assert created.status_code == 201, created.text
        assert rendered.status_code == 422 and "too large" in rendered.text
        time.sleep(0.3)
    finally:
        done.set()
        watcher.join(timeout=10)
        server.stop()
    assert all(seconds < 1.0 for seconds in timings.values()), timings
    assert latencies and max(latencies) < 1.0, max(latencies)
