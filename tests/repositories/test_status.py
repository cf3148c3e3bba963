"""Commit status reports to a stub forge on 127.0.0.1, in each forge's API format."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from builds.models import Build
from repositories.status import repo_path, report_for
from tests.factories import api_client
from tests.repositories.conftest import PIPELINE

pytestmark = pytest.mark.usefixtures("inline_workers")


@pytest.fixture
def stub_forge():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(201)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.received = received
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def register(user, forge, **extra):
    response = api_client(user).post(
        "/api/projects/acme/repositories",
        {"name": "app", "url": forge.url("app"), **extra},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_github_statuses_go_pending_then_success_with_a_link(user, project, forge, stub_forge):
    from vault.services import set_secret

    set_secret(user=None, project=project, name="STATUS_TOKEN", value="ghp-status-token-1")
    sha = forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "x\n"})
    forge.copy.push()
    register(
        user, forge, status_forge="github", status_api_url=stub_forge.url,
        status_token_secret="STATUS_TOKEN",
    )  # fmt: skip
    response = api_client(user).post(
        "/api/projects/acme/builds", {"repository": "app"}, content_type="application/json"
    )
    build = Build.objects.get(id=response.json()["id"])
    assert build.state == "succeeded"
    paths = {path for path, _, _ in stub_forge.received}
    assert paths == {f"/repos/app/statuses/{sha}"}
    states = [json.loads(body)["state"] for _, _, body in stub_forge.received]
    assert states == ["pending", "success"]
    _, headers, body = stub_forge.received[-1]
    assert headers["authorization"] == "Bearer ghp-status-token-1"
    sent = json.loads(body)
    assert sent["target_url"].endswith(f"/builds/{build.id}/")
    assert sent["context"] == "buildsite/app"


def test_gitlab_reports_failure_in_its_own_words(user, project, forge, stub_forge):
    from vault.services import set_secret

    set_secret(user=None, project=project, name="GL_TOKEN", value="glpat-status-2")
    failing = PIPELINE.replace("cat hello.txt", "exit 3")
    sha = forge.copy.commit({".buildsite.yml": failing})
    forge.copy.push()
    register(
        user, forge, status_forge="gitlab", status_api_url=stub_forge.url,
        status_token_secret="GL_TOKEN",
    )  # fmt: skip
    api_client(user).post(
        "/api/projects/acme/builds", {"repository": "app"}, content_type="application/json"
    )
    assert [p for p, _, _ in stub_forge.received] == [f"/api/v4/projects/app/statuses/{sha}"] * 2
    forms = [parse_qs(body.decode()) for _, _, body in stub_forge.received]
    assert [f["state"] for f in forms] == [["running"], ["failed"]]
    assert stub_forge.received[0][1]["private-token"] == "glpat-status-2"


def test_a_forge_that_is_down_does_not_fail_the_build(user, project, forge):
    from vault.services import set_secret

    set_secret(user=None, project=project, name="STATUS_TOKEN", value="token-for-nothing")
    forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "x\n"})
    forge.copy.push()
    register(
        user, forge, status_forge="gitea", status_api_url="http://127.0.0.1:9",
        status_token_secret="STATUS_TOKEN",
    )  # fmt: skip
    response = api_client(user).post(
        "/api/projects/acme/builds", {"repository": "app"}, content_type="application/json"
    )
    assert Build.objects.get(id=response.json()["id"]).state == "succeeded"


def test_report_requests_per_forge():
    gitea = report_for(
        forge="gitea", api="", repo_url="https://git.example.org/team/app.git", sha="a" * 40,
        state="cancelled", token="t0ken!", target="https://ci/builds/1/", context="buildsite/app",
    )  # fmt: skip
    assert gitea.url == f"https://git.example.org/api/v1/repos/team/app/statuses/{'a' * 40}"
    assert gitea.headers == {"Authorization": "token t0ken!"}
    assert gitea.json["state"] == "error"
    gitlab = report_for(
        forge="gitlab", api="", repo_url="git@gitlab.example.com:group/sub/app.git", sha="b" * 40,
        state="succeeded", token="t", target="x", context="c",
    )  # fmt: skip
    assert gitlab.url.startswith("https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fapp/")
    assert repo_path("ssh://git@host:22/o/r.git") == "o/r"


def test_reporting_statuses_needs_a_token_secret(user, project, repo_settings):
    response = api_client(user).post(
        "/api/projects/acme/repositories",
        {"name": "app", "url": "https://example.com/app.git", "status_forge": "github"},
        content_type="application/json",
    )
    assert response.status_code == 422
    assert "status_token_secret" in {p["loc"] for p in response.json()["detail"]}
