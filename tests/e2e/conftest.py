"""End-to-end fixtures: a live daphne server (a real subprocess on a free port, against
the test database), real workers (tests.cluster.Cluster) and Debian's Chromium driven by
Playwright. Without /usr/bin/chromium the tests skip with the reason printed, unless
BUILDSITE_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from tests.cluster import WebServer


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    """Playwright's sync API keeps an event loop in this thread; Django's ORM calls made
    by the test itself are still plain synchronous calls. Only for these tests, so the
    rest of the suite keeps Django's async-safety check."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"{CHROMIUM} is missing (install Debian's chromium: make system-deps)"
    if os.environ.get("BUILDSITE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are required here but {reason}")
    print(f"\nSKIPPING browser tests: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture
def live_server_url(transactional_db):
    server = WebServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def browser_page(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors
        try:
            yield page
        finally:
            context.close()
            browser.close()
            # The test's ORM calls ran beside Playwright's event loop; close what they
            # opened here, or PostgreSQL will not drop the test database.
            connections.close_all()


@pytest.fixture
def screenshot_dir() -> Path | None:
    """Set BUILDSITE_SCREENSHOT_DIR (e.g. docs/screenshots) to keep the run's screenshots."""
    target = os.environ.get("BUILDSITE_SCREENSHOT_DIR")
    path = Path(target) if target else Path(settings.DATA_DIR) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_in(page, base: str, username: str, password: str = "pw-123456") -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login/" not in page.url, "login failed"
