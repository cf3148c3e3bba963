"""The walkthrough of the seeded demo, in a real browser on real workers: the release
build is green, its notes are published and lead to the build and to the prompt version
that drafted them, both evaluations show on the prompt page and compare, and the gate
refuses to point `production` at the version that fails it."""

import io
import re

import pytest
from django.core.management import call_command

from builds.models import Build
from evals.models import Evaluation
from tests.cluster import Cluster, wait_for
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def seed(monkeypatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "pw-123456")
    for command in ("ensure_admin", "seed_demo"):
        call_command(command, stdout=io.StringIO())


def test_a_newcomer_walks_through_the_demo(
    monkeypatch, live_server_url, browser_page, screenshot_dir
):
    page, base = browser_page, live_server_url
    seed(monkeypatch)
    release = Build.objects.get(project__slug="demo", pipeline__name="release")
    v1, v2 = Evaluation.objects.order_by("version__number")
    with Cluster(workers=2):
        wait_for(
            lambda: not Build.objects.filter(finished_at__isnull=True).exists(),
            timeout=90,
            message="the seeded builds to finish",
        )
        log_in(page, base, "admin")

        # The project's builds: the release build is there, and green.
        page.goto(f"{base}/p/demo/builds/")
        page.click(f"[data-build='{release.id}'] a >> text=#{release.id}")
        page.wait_for_url(f"**/builds/{release.id}/")
        page.wait_for_selector("[data-build-state] .state-succeeded")
        assert page.evaluate(
            """() => [...document.querySelectorAll('[data-task]')]
                 .every(n => n.classList.contains('state-succeeded'))"""
        )

        # The published notes, from the getting-started page.
        page.goto(f"{base}/p/demo/docs/getting-started")
        page.click("article a >> text=releases/1.0.0")
        page.wait_for_url("**/docs/releases/1.0.0")
        assert page.is_visible(".docs-badge.published")
        article = page.inner_text("article")
        assert "Highlights" in article and "Ran 3 tests" in article
        page.screenshot(path=str(screenshot_dir / "demo-release-notes.png"), full_page=True)

        # Provenance: the notes lead to the build that wrote them and to the prompt
        # version that drafted them (the reader page's links).
        to_build = page.locator(f"a[href='/builds/{release.id}/']", has_text=f"build #{release.id}")
        assert to_build.count() >= 1
        to_prompt = page.locator(
            "a[href^='/p/demo/prompts/release-notes/']", has_text=re.compile("version")
        )
        assert to_prompt.count() >= 1
        to_build.first.click()
        page.wait_for_url(f"**/builds/{release.id}/")
        page.go_back()
        page.wait_for_url("**/docs/releases/1.0.0")
        page.locator(
            "a[href^='/p/demo/prompts/release-notes/']", has_text=re.compile("version")
        ).first.click()
        page.wait_for_url("**/p/demo/prompts/release-notes/**")

        # The prompt page lists both evaluations: version 1 passes all, version 2 not.
        page.goto(f"{base}/p/demo/prompts/release-notes/")
        section = page.locator("section[aria-labelledby=h-evaluations]")
        rows = {
            int(section.locator("tbody tr").nth(i).locator("td").first.inner_text()): (
                section.locator("tbody tr").nth(i).inner_text()
            )
            for i in range(section.locator("tbody tr").count())
        }
        assert set(rows) == {v1.id, v2.id}
        full = re.compile(r"\b100(\.0)? %")
        assert full.search(rows[v1.id]) and "succeeded" in rows[v1.id], rows
        assert not full.search(rows[v2.id]) and "succeeded" in rows[v2.id], rows

        # Compare them: item 2 is the regression.
        page.goto(f"{base}/p/demo/prompts/release-notes/evaluations/compare/?a={v1.id}&b={v2.id}")
        assert "1 regressed" in page.inner_text("main")
        assert page.is_visible("td.change-regressed")
        page.screenshot(path=str(screenshot_dir / "demo-compare.png"), full_page=True)

        # Point production at version 2: the gate refuses, and says why.
        page.goto(f"{base}/p/demo/prompts/release-notes/")
        form = page.locator("form[action$='/labels/']")
        form.locator("input[name=label]").fill("production")
        form.locator("select[name=version]").select_option("2")
        form.locator("button[value=set]").click()
        # (Wherever the page puts the refusal: shown with the form or as a message.)
        page.wait_for_function(
            """() => document.querySelector('main').innerText
                 .includes("Label 'production' is gated")"""
        )
        message = page.inner_text("main")
        assert f"evaluation of v2 is {v2.id}" in message, message
        page.screenshot(path=str(screenshot_dir / "demo-gate-refused.png"), full_page=True)
        assert "production → #1" in page.inner_text("main")
        assert page.js_errors == []
