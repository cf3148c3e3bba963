"""The build page lists a task's artifacts as soon as it finishes, with links that download
the stored bytes: daphne, a qcluster worker and Chromium."""

import pytest

from tests.cluster import Cluster
from tests.e2e.conftest import log_in
from tests.factories import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The task waits for the test's go-ahead, so the page is open before the file exists.
FILES = """
tasks:
  make:
    steps:
      - run: |
          for i in $(seq 300); do [ -e '{go}' ] && break; sleep 0.1; done
          mkdir -p 'my dir' && printf 'hello artifact\\n' > 'my dir/a&b.txt'
    artifacts: [my dir/]
"""


@pytest.mark.usefixtures("unsandboxed")  # the step waits for a file the test creates
def test_artifacts_appear_live_and_download(project, user, live_server_url, browser_page, tmp_path):
    page = browser_page
    go = tmp_path / "go"
    make_pipeline(project, FILES.format(go=go), name="files")
    with Cluster(workers=1):
        log_in(page, live_server_url, user.username)
        page.goto(f"{live_server_url}/p/{project.slug}/pipelines/files/")
        page.click("text=Run files v1")
        page.wait_for_url("**/builds/*/")
        page.evaluate("window.__noReload = true")
        page.wait_for_selector("[data-live-status][data-status=live]")
        assert page.is_visible("[data-artifacts-none]")
        assert page.is_hidden("[data-task-artifacts]")

        go.touch()
        link = page.wait_for_selector("[data-artifacts] a", timeout=30_000)
        assert link.inner_text() == "my dir/a&b.txt"
        href = link.get_attribute("href")
        assert href.endswith("/artifacts/make/my%20dir/a%26b.txt")
        row = page.inner_text("[data-artifacts] tr")
        assert "make" in row and "15\xa0bytes" in row
        assert page.is_hidden("[data-artifacts-none]")
        # The running task was selected on its own: its panel lists the file too.
        panel = page.wait_for_selector("[data-task-artifacts] a")
        assert panel.get_attribute("href") == href

        response = page.request.get(f"{live_server_url}{href}")
        assert response.ok and response.body() == b"hello artifact\n"
        assert page.evaluate("window.__noReload") is True
        assert page.js_errors == []
