"""Push webhooks as GitHub, GitLab and Gitea send them (payloads in their own formats,
tests/repositories/payloads), signed with the repository's webhook secret."""

import hashlib
import hmac
import uuid

import pytest
from django.test import Client

from builds.models import Build
from repositories.models import Delivery
from repositories.webhooks import BadSignature, verify
from tests.factories import api_client
from tests.repositories.conftest import PIPELINE, payload

pytestmark = pytest.mark.usefixtures("inline_workers")


def sign(forge_name: str, body: bytes, secret: str, *, event: str = "push", delivery=None):
    delivery = delivery or str(uuid.uuid4())
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if forge_name == "github":
        return {
            "HTTP_X_GITHUB_EVENT": event,
            "HTTP_X_GITHUB_DELIVERY": delivery,
            "HTTP_X_HUB_SIGNATURE_256": f"sha256={digest}",
        }
    if forge_name == "gitlab":
        return {
            "HTTP_X_GITLAB_EVENT": "Push Hook" if event == "push" else event,
            "HTTP_X_GITLAB_EVENT_UUID": delivery,
            "HTTP_X_GITLAB_TOKEN": secret,
        }
    return {
        "HTTP_X_GITEA_EVENT": event,
        "HTTP_X_GITEA_DELIVERY": delivery,
        "HTTP_X_GITEA_SIGNATURE": digest,
    }


@pytest.fixture
def repo(user, project, forge):
    forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "pushed\n"})
    forge.copy.push()
    response = api_client(user).post(
        "/api/projects/acme/repositories",
        {"name": "app", "url": forge.url("app"), "branches": ["main", "release/*"]},
        content_type="application/json",
    )
    return response.json()


def deliver(repo, body: bytes, headers: dict):
    return Client().post(
        f"/api/hooks/{repo['id']}", body, content_type="application/json", **headers
    )


@pytest.mark.parametrize("forge_name", ["github", "gitlab", "gitea"])
def test_a_signed_push_builds_the_pushed_commit(repo, forge, forge_name):
    pushed = forge.copy.commit({"hello.txt": "the pushed one\n"}, "pushed")
    forge.copy.push()
    later = forge.copy.commit({"hello.txt": "a later one\n"}, "later")
    forge.copy.push()  # the branch moved on before the webhook arrived
    body = payload(forge_name, after=pushed)
    response = deliver(repo, body, sign(forge_name, body, repo["webhook_secret"]))
    assert response.status_code == 202, response.content
    build = Build.objects.get(id=response.json()["build"])
    assert build.trigger == "push" and build.commit_ref == "main"
    assert build.commit_sha == pushed != later
    assert build.state == "succeeded", build.error
    assert build.tasks.get().outputs["seen"].splitlines() == ["the pushed one", pushed]


@pytest.mark.parametrize("forge_name", ["github", "gitlab", "gitea"])
def test_a_wrong_or_missing_signature_is_refused_and_creates_nothing(repo, forge_name):
    body = payload(forge_name, after="a" * 40)
    wrong = sign(forge_name, body, "not-the-secret")
    assert deliver(repo, body, wrong).status_code == 401
    unsigned = {
        k: v
        for k, v in sign(forge_name, body, repo["webhook_secret"]).items()
        if "SIGNATURE" not in k and "TOKEN" not in k
    }
    response = deliver(repo, body, unsigned)
    assert response.status_code == 401 and "missing" in response.json()["detail"]
    assert not Build.objects.exists() and not Delivery.objects.exists()


@pytest.mark.parametrize("forge_name", ["github", "gitea"])  # GitLab sends the secret itself
def test_tampering_with_a_signed_body_is_refused(repo, forge_name):
    body = payload(forge_name, after="a" * 40)
    headers = sign(forge_name, body, repo["webhook_secret"])
    assert deliver(repo, body + b" ", headers).status_code == 401
    assert not Build.objects.exists()


def test_other_branches_events_and_deleted_branches_build_nothing(repo, forge):
    secret = repo["webhook_secret"]
    sha = forge.copy.commit({"x": "1"})
    forge.copy.push("feature")
    cases = [
        (payload("github", after=sha, branch="feature"), "push", "does not match"),
        (payload("github", after="0" * 40), "push", "deleted"),
        (b'{"zen": "Keep it logically awesome.", "hook_id": 1}', "ping", "ping events"),
    ]
    for body, event, reason in cases:
        response = deliver(repo, body, sign("github", body, secret, event=event))
        assert response.status_code == 202
        assert response.json()["build"] is None and reason in response.json()["reason"]
    assert not Build.objects.exists()


def test_branch_patterns_select_what_builds(repo, forge):
    sha = forge.copy.commit({"x": "1"})
    forge.copy.push("release/2.0")
    body = payload("gitea", after=sha, branch="release/2.0")
    response = deliver(repo, body, sign("gitea", body, repo["webhook_secret"]))
    assert Build.objects.get(id=response.json()["build"]).commit_ref == "release/2.0"


def test_the_same_delivery_twice_is_the_first_build(repo, forge):
    sha = forge.copy.commit({"x": "1"})
    forge.copy.push()
    body = payload("github", after=sha)
    headers = sign("github", body, repo["webhook_secret"], delivery="d-1")
    first = deliver(repo, body, headers).json()["build"]
    again = deliver(repo, body, headers)
    assert again.status_code == 202 and again.json()["build"] == first
    assert Build.objects.count() == 1


def test_a_deleted_repository_hook_is_404(user, repo):
    api_client(user).delete(f"/api/projects/acme/repositories/{repo['id']}")
    body = payload("github", after="a" * 40)
    assert deliver(repo, body, sign("github", body, repo["webhook_secret"])).status_code == 404


def test_a_signed_body_that_is_not_a_push_is_a_400(repo):
    for body in (b"not json", b"[1, 2]", b'{"ref": "refs/heads/main", "after": "xyz"}'):
        response = deliver(repo, body, sign("gitlab", body, repo["webhook_secret"]))
        assert response.status_code == 400, body
    assert not Build.objects.exists()


def test_a_rotated_secret_replaces_the_old_one(user, repo, forge):
    rotated = (
        api_client(user)
        .post(f"/api/projects/acme/repositories/{repo['id']}/webhook-secret")
        .json()["webhook_secret"]
    )
    sha = forge.copy.commit({"x": "1"})
    forge.copy.push()
    body = payload("github", after=sha)
    assert deliver(repo, body, sign("github", body, repo["webhook_secret"])).status_code == 401
    assert deliver(repo, body, sign("github", body, rotated)).status_code == 202


def test_verify_needs_a_known_forge_header():
    with pytest.raises(BadSignature, match="not a GitHub"):
        verify({"Content-Type": "application/json"}, b"{}", "secret")
