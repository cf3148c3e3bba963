"""Repositories under attack: hostile URLs, refs, webhook requests and git servers."""

import hashlib
import hmac
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
from django.test import Client

from buildsite.errors import InvalidInput
from repositories import git
from repositories.models import Delivery, Repository
from repositories.services import create_repository, trigger_repository_build
from repositories.status import default_api
from tests.factories import api_client
from tests.gitserver import git as run_git


@pytest.fixture
def repo(user, project, repo_settings):
    response = api_client(user).post(
        "/api/projects/acme/repositories",
        {"name": "app", "url": "https://127.0.0.1:9/acme/app.git", "branches": ["*"]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def hook(repo, body: bytes, **headers):
    return Client(raise_request_exception=False).post(
        f"/api/hooks/{repo['id']}", body, content_type="application/json", **headers
    )


def github_headers(secret: str, body: bytes, delivery: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "HTTP_X_GITHUB_EVENT": "push",
        "HTTP_X_GITHUB_DELIVERY": delivery,
        "HTTP_X_HUB_SIGNATURE_256": f"sha256={digest}",
    }


# --- webhooks ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_GITHUB_EVENT": "push", "HTTP_X_HUB_SIGNATURE_256": "sha256=\u00e9\u00e9"},
        {"HTTP_X_GITEA_EVENT": "push", "HTTP_X_GITEA_SIGNATURE": "\u00e9\u00e9"},
        {"HTTP_X_GITLAB_EVENT": "Push Hook", "HTTP_X_GITLAB_TOKEN": "\u00e9\u00e9"},
    ],
)
def test_a_signature_that_is_not_ascii_is_a_401_not_a_500(repo, headers):
    body = b'{"ref": "refs/heads/main", "after": "' + b"a" * 40 + b'"}'
    response = hook(repo, body, **headers)
    assert response.status_code == 401, response.content
    assert "does not match" in response.json()["detail"]


def test_a_push_to_a_branch_refs_cannot_name_is_answered_and_recorded(repo):
    """Git allows `fix#12`; builds do not take such a ref. The forge gets a 202 saying
    why (not a 422 it would retry and show as a failed delivery)."""
    body = b'{"ref": "refs/heads/fix#12", "after": "' + b"a" * 40 + b'"}'
    headers = github_headers(repo["webhook_secret"], body, "d-1")
    response = hook(repo, body, **headers)
    assert response.status_code == 202, response.content
    assert response.json()["build"] is None
    assert "fix#12" in response.json()["reason"]
    assert Delivery.objects.filter(delivery_id="d-1", build=None).exists()


# --- what a repository may be -----------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "git@169.254.169.254:acme/app.git",  # cloud metadata, always refused
        "ssh://git@10.0.0.7/acme/app.git",
        "ssh://git@127.0.0.1:6379/acme/app.git",  # ssh to any port of the server itself
        "git@192.168.1.1:acme/app.git",
        "ssh://git@[::1]:22/acme/app.git",
        # Python's URL parser sees a.example; git and ssh connect to 127.0.0.1.
        "ssh://a.example#@127.0.0.1/acme/app.git",
        "ssh://-oProxyCommand=touch${IFS}pwned/x",
        "ssh://git:hunter22@a.example/acme/app.git",  # a password in the URL
    ],
)
def test_ssh_urls_get_the_same_address_checks_as_https(user, project, repo_settings, url):
    repo_settings["ALLOW_PRIVATE_URLS"] = False
    response = api_client(user).post(
        "/api/projects/acme/repositories",
        {"name": "app", "url": url},
        content_type="application/json",
    )
    assert response.status_code == 422, response.content
    assert not Repository.objects.exists()


def test_an_ssh_url_to_a_private_host_is_fine_when_the_operator_allows_them(
    user, project, repo_settings
):
    response = api_client(user).post(
        "/api/projects/acme/repositories",
        {"name": "app", "url": "ssh://git@127.0.0.1:2222/acme/app.git"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "fields",
    [
        {"branch": "main\n"},
        {"credentials_secret": "DEPLOY_KEY\n"},
        {"status_token_secret": "TOKEN\n"},
        {"name": "app\n"},
    ],
)
def test_a_trailing_newline_or_a_control_character_is_refused(user, project, repo_settings, fields):
    response = api_client(user).post(
        "/api/projects/acme/repositories",
        {"name": "app", "url": "https://127.0.0.1:9/acme/app.git", **fields},
        content_type="application/json",
    )
    assert response.status_code == 422, response.content


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "https://127.0.0.1:9/acme/\x00app.git"},
        {"url": "https://127.0.0.1:9/acme/\x1b[2Japp.git"},
        {"branches": ["main", "rel\x00ease/*"]},
        {"pipeline_path": ".buildsite\x00.yml"},  # also: git's argv cannot hold a NUL
        {"status_forge": "gitea", "status_api_url": "https://127.0.0.1:9/\n"},
    ],
)
def test_control_characters_are_refused(project, repo_settings, fields):
    """PostgreSQL refuses NUL in text (a 500 there); escapes have no place in either."""
    with pytest.raises(InvalidInput):
        create_repository(
            user=None,
            project=project,
            **{"name": "app", "url": "https://127.0.0.1:9/acme/app.git", **fields},
        )
    assert not Repository.objects.exists()


def test_a_ref_with_a_trailing_newline_is_refused(user, repo):
    response = api_client(user).post(
        "/api/projects/acme/builds",
        {"repository": "app", "ref": "main\n"},
        content_type="application/json",
    )
    assert response.status_code == 422, response.content


def test_a_commit_id_must_be_one(project, repo_settings):
    repository, _ = create_repository(
        user=None, project=project, name="app", url="https://127.0.0.1:9/acme/app.git"
    )
    with pytest.raises(InvalidInput):
        trigger_repository_build(user=None, repository=repository, sha="--output=/tmp/x")
    with pytest.raises(InvalidInput):
        trigger_repository_build(user=None, repository=repository, sha="a" * 40 + "\n")


@pytest.mark.parametrize("action", ["build", "rotate", "delete"])
@pytest.mark.parametrize("given", ["\u00b2", "\u2460", "9" * 40])
def test_an_odd_repository_id_is_a_404_not_a_500(user, client, repo, action, given):
    client.raise_request_exception = False
    client.force_login(user)
    response = client.post("/p/acme/repositories/", {"action": action, "id": given})
    assert response.status_code == 404
    response = api_client(user).post(
        "/api/projects/acme/builds", {"repository": given}, content_type="application/json"
    )
    assert response.status_code == 404


# --- hostile git servers ----------------------------------------------------------------
def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def silent_server():
    """Accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_stalled_server_leaves_no_git_process_behind(repo_settings, silent_server):
    """The fetch ends at the timeout, and so does everything it started: git's
    children (git-remote-http here, ssh for ssh URLs) would otherwise stay connected,
    one more for every build of the repository."""
    repo_settings["GIT_TIMEOUT_SECONDS"] = 1
    url = f"http://127.0.0.1:{silent_server}/stalled/app.git"
    with pytest.raises(git.GitError, match="took over 1s"):
        git.fetch(901, git.Remote(url=url))
    deadline = time.monotonic() + 3
    while _processes_mentioning(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(url) == []


@pytest.fixture
def ssh_config_seen(tmp_path, monkeypatch):
    """An `ssh` first on PATH that writes the configuration the real one would use
    for the connection (ssh -G) and connects nowhere."""
    out = tmp_path / "ssh-config.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -G "$@" > {out} 2>&1\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return out


def test_ssh_without_a_key_uses_none_of_the_servers_own(repo_settings, ssh_config_seen):
    """ssh reads ~/.ssh of the account it runs as (not $HOME): without this, a
    repository anyone registers without a credential is fetched with the server's own
    keys, and ssh may wait for an answer to a prompt."""
    with pytest.raises(git.GitError):
        git.fetch(902, git.Remote(url="git@127.0.0.1:acme/app.git"))
    seen = ssh_config_seen.read_text().splitlines()
    assert "batchmode yes" in seen
    assert [line for line in seen if line.startswith("identityfile")] == ["identityfile none"]


def test_ssh_with_a_key_uses_that_key_even_from_a_path_with_spaces(
    repo_settings, tmp_path, ssh_config_seen
):
    repo_settings["MIRROR_DIR"] = tmp_path / "mirror dir"
    remote = git.Remote(url="git@127.0.0.1:acme/app.git", credential="-----KEY-----\nabc\n")
    with pytest.raises(git.GitError):
        git.fetch(903, remote)
    seen = ssh_config_seen.read_text().splitlines()
    assert f"userknownhostsfile {tmp_path / 'mirror dir' / 'known_hosts'}" in seen
    keys = [line for line in seen if line.startswith("identityfile")]
    assert len(keys) == 1 and keys[0].endswith("/key"), keys


@pytest.fixture
def hostile_mirror(tmp_path):
    """A bare repository with what a hostile server can put in a commit."""
    work = tmp_path / "hostile"
    run_git("init", "--quiet", "-b", "main", str(work))
    (work / "big.yml").write_text("x" * (git.MAX_PIPELINE_BYTES + 1))
    (work / "link.yml").symlink_to("/etc/passwd")
    (work / "message.txt").write_text("m" * (2 * 1024 * 1024))
    run_git("add", "-A", cwd=work)
    # A submodule entry (a commit of another repository, which is not here).
    run_git("update-index", "--add", "--cacheinfo", f"160000,{'d' * 40},sub.yml", cwd=work)
    run_git("commit", "--quiet", "-F", "message.txt", cwd=work)
    return work / ".git", run_git("rev-parse", "HEAD", cwd=work)


def test_a_hostile_commit_reads_bounded_and_never_outside_the_repository(
    repo_settings, hostile_mirror
):
    mirror, sha = hostile_mirror
    with pytest.raises(git.GitError, match="larger than"):
        git.read_file(mirror, sha, "big.yml")
    # A symlink is a blob holding its target's name: never the file it points at.
    assert git.read_file(mirror, sha, "link.yml") == "/etc/passwd"
    with pytest.raises(git.GitError, match="there is no sub.yml"):
        git.read_file(mirror, sha, "sub.yml")
    # A commit of megabytes is not read whole to show its message.
    shown = git.commit(mirror, sha)
    assert shown.message == "(commit too large to show)" and shown.sha == sha


# --- commit statuses --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "api"),
    [
        ("ssh://git@gitlab.example.com:2222/group/app.git", "https://gitlab.example.com"),
        ("ssh://git@[2001:db8::1]/group/app.git", "https://[2001:db8::1]"),
        ("https://[2001:db8::1]:8443/group/app.git", "https://[2001:db8::1]:8443"),
        ("http://gitea.lan:3000/group/app.git", "http://gitea.lan:3000"),
    ],
)
def test_the_default_status_api_is_on_the_forges_web_address(url, api):
    """Not on its ssh port, and an IPv6 address stays in brackets."""
    assert default_api("gitea", url) == api


# --- the same delivery, at the same moment ----------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_delivery_replayed_concurrently_starts_one_build(user, project, repo_settings):
    from django.db import connection

    from builds.models import Build
    from repositories.services import receive_webhook

    repository, secret = create_repository(
        user=None,
        project=project,
        name="app",
        url="https://127.0.0.1:9/acme/app.git",
        branches=["*"],
    )
    body = b'{"ref": "refs/heads/main", "after": "' + b"c" * 40 + b'"}'
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "same-delivery",
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    barrier = threading.Barrier(6)
    results, errors = [], []

    def deliver() -> None:
        try:
            barrier.wait()
            build, _ = receive_webhook(repository_id=repository.id, headers=headers, body=body)
            results.append(build.id if build else None)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert Build.objects.count() == 1
    assert set(results) == {Build.objects.get().id}
    assert Delivery.objects.count() == 1
