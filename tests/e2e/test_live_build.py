"""A real browser watching real builds: daphne, qcluster workers and Chromium.

Each test marks the page's window object first; the mark still being there at the end
proves every change arrived over the socket, without a reload.
"""

import pytest

from builds.demo import DEMO_PIPELINE
from builds.models import Build
from builds.selectors import task_log
from tests.cluster import Cluster, wait_for
from tests.e2e.conftest import log_in
from tests.factories import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LONG = """
tasks:
  prepare: {steps: [{run: "echo ready"}]}
  long:
    needs: [prepare]
    steps:
      - run: |
          echo "long task started"
          sleep 300
"""

NODE_STATE = "(name) => document.querySelector(`[data-task='${name}']`).getAttribute('class')"


def all_nodes(page, state: str) -> bool:
    return page.evaluate(
        """(state) => [...document.querySelectorAll('[data-task]')]
            .every(n => n.classList.contains('state-' + state))""",
        state,
    )


def test_demo_pipeline_runs_live_in_the_browser(
    project, user, live_server_url, browser_page, screenshot_dir
):
    page = browser_page
    make_pipeline(project, DEMO_PIPELINE, name="demo")
    with Cluster(workers=2):
        log_in(page, live_server_url, user.username)
        assert page.url.endswith(f"/p/{project.slug}/")
        page.wait_for_selector("[data-live-status][data-status=live]")
        page.click("text=Run demo")
        page.wait_for_url("**/builds/*/")
        build = Build.objects.get(project=project)
        page.evaluate("window.__noReload = true")
        page.wait_for_selector("[data-live-status][data-status=live]")

        # Pick the 'test' task; its log must stream while the task is still running.
        page.click("[data-task-row='test'] button")
        page.wait_for_function(
            """() => document.querySelector('[data-log]').textContent.includes('test 1/4 ok')
                 && document.querySelector("[data-task='test']")
                      .classList.contains('state-running')""",
            timeout=60_000,
        )
        assert "test 4/4 ok" not in page.inner_text("[data-log]")
        page.screenshot(path=str(screenshot_dir / "build-running.png"), full_page=True)

        # Drop the socket mid-build: the page reconnects with ?after=<last id> and
        # misses nothing, repeats nothing.
        page.evaluate("window.buildsiteSocket.ws.close()")

        page.wait_for_function(
            """() => [...document.querySelectorAll('[data-task]')]
                 .every(n => n.classList.contains('state-succeeded'))""",
            timeout=90_000,
        )
        page.wait_for_selector("[data-build-state] .state-succeeded", timeout=30_000)
        assert page.evaluate("window.__noReload") is True
        assert page.inner_text("[data-done]") == "5"

        page.click("[data-task-row='test'] button")
        page.wait_for_function(
            "() => document.querySelector('[data-log]').textContent.includes('4 passed')"
        )
        shown = page.inner_text("[data-log]")
        stored = task_log(build=build, name="test")
        assert shown.strip() == stored.strip(), "every log chunk exactly once, in order"
        assert page.js_errors == []

        page.goto(f"{live_server_url}/builds/{build.id}/?task=package")
        page.wait_for_selector("[data-live-status][data-status=live]")
        page.wait_for_selector("[data-outputs]:not([hidden])")
        page.screenshot(path=str(screenshot_dir / "build-finished.png"), full_page=True)
        page.goto(f"{live_server_url}/p/{project.slug}/")
        page.screenshot(path=str(screenshot_dir / "dashboard.png"), full_page=True)
    build.refresh_from_db()
    assert build.state == "succeeded"


def test_cancel_a_long_task_from_the_build_page(project, user, live_server_url, browser_page):
    page = browser_page
    make_pipeline(project, LONG, name="long")
    with Cluster(workers=2):
        log_in(page, live_server_url, user.username)
        page.goto(f"{live_server_url}/p/{project.slug}/pipelines/long/")
        page.click("text=Run long v1")
        page.wait_for_url("**/builds/*/")
        page.evaluate("window.__noReload = true")
        page.wait_for_function(
            f"() => ({NODE_STATE})('long').includes('state-running')", timeout=60_000
        )
        page.wait_for_function(
            "() => document.querySelector('[data-log]').textContent.includes('long task started')"
        )
        page.click("text=Cancel build")
        page.wait_for_function(
            f"() => ({NODE_STATE})('long').includes('state-cancelled')", timeout=30_000
        )
        page.wait_for_selector("[data-build-state] .state-cancelled", timeout=30_000)
        assert page.is_hidden("[data-action=cancel]")
        assert page.is_visible("[data-action=retry]")
        assert page.evaluate("window.__noReload") is True
        wait_for(
            lambda: Build.objects.get(project=project).state == "cancelled",
            timeout=10,
            message="build cancelled in the database",
        )


def test_pipeline_editor_shows_problems_at_their_line(
    project, user, live_server_url, browser_page, screenshot_dir
):
    page = browser_page
    make_pipeline(project, DEMO_PIPELINE, name="demo")
    log_in(page, live_server_url, user.username)
    page.goto(f"{live_server_url}/p/{project.slug}/pipelines/demo/")
    broken = DEMO_PIPELINE.replace(
        "needs: [checkout, lint, test]", "needs: [checkout, lint, tests]"
    )
    assert broken != DEMO_PIPELINE
    page.fill("#definition", broken)
    page.click("[data-check]")
    page.wait_for_selector("[data-problems] li")
    problem = page.inner_text("[data-problems] li")
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if text.strip() == "package:")
    assert f"line {line}" in problem and "tests" in problem
    assert page.is_visible(f"[data-gutter] span.bad >> text={line}")
    page.screenshot(path=str(screenshot_dir / "pipeline-editor.png"), full_page=True)
