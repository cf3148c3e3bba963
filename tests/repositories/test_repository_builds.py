"""Builds of a repository: registered through the API, fetched from a real git server
over smart HTTP, pinned to one commit and to the pipeline text at that commit."""

import pytest

from builds.models import Build, PipelineVersion
from builds.selectors import task_log
from buildsite.roles import Role
from repositories.models import Repository
from tests.factories import add_member, api_client, make_user
from tests.repositories.conftest import PIPELINE

pytestmark = pytest.mark.usefixtures("inline_workers")


def register(client, forge, **extra):
    body = {"name": "app", "url": forge.url("app"), **extra}
    response = client.post("/api/projects/acme/repositories", body, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def build_of(client, **body):
    response = client.post(
        "/api/projects/acme/builds", {"repository": "app", **body}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return Build.objects.get(id=response.json()["id"])


def test_registering_shows_the_webhook_secret_once(user, project, forge):
    client = api_client(user)
    created = register(client, forge)
    assert set(created) >= {"id", "name", "url", "branch", "webhook_url", "webhook_secret"}
    assert created["branch"] == "main" and created["pipeline_path"] == ".buildsite.yml"
    assert created["webhook_url"].endswith(f"/api/hooks/{created['id']}")
    assert len(created["webhook_secret"]) >= 32
    listed = client.get("/api/projects/acme/repositories").json()
    assert [r["name"] for r in listed] == ["app"]
    assert "webhook_secret" not in listed[0]
    stored = Repository.objects.get()
    assert created["webhook_secret"] not in stored.webhook_secret_encrypted
    rotated = client.post(f"/api/projects/acme/repositories/{created['id']}/webhook-secret")
    assert rotated.status_code == 200
    assert rotated.json()["webhook_secret"] != created["webhook_secret"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc", "BUILDSITE_ALLOW_LOCAL_REPOS"),
        ("ext::sh -c id", "https://"),
        ("https://user:token@example.com/app.git", "secret"),
        ("--upload-pack=id", "clone URL"),
        ("http://169.254.169.254/app.git", "url"),
    ],
)
def test_urls_the_server_must_not_fetch_are_refused(user, project, repo_settings, url, says):
    response = api_client(user).post(
        "/api/projects/acme/repositories",
        {"name": "app", "url": url},
        content_type="application/json",
    )
    assert response.status_code == 422
    assert says in response.content.decode()
    assert not Repository.objects.exists()


def test_only_maintainers_manage_repositories(user, project, forge):
    created = register(api_client(user), forge)
    for role, may_list in ((Role.VIEWER, True), (Role.EDITOR, True)):
        member = make_user(f"m-{role}")
        add_member(project, member, role)
        client = api_client(member)
        assert (client.get("/api/projects/acme/repositories").status_code == 200) is may_list
        body = {"name": "other", "url": forge.url("app")}
        assert (
            client.post(
                "/api/projects/acme/repositories", body, content_type="application/json"
            ).status_code
            == 403
        )
        assert client.delete(f"/api/projects/acme/repositories/{created['id']}").status_code == 403
        rotate = client.post(f"/api/projects/acme/repositories/{created['id']}/webhook-secret")
        assert rotate.status_code == 403
    outsider = api_client(make_user("outsider"))
    assert outsider.get("/api/projects/acme/repositories").status_code == 404
    from django.test import Client

    assert Client().get("/api/projects/acme/repositories").status_code == 401


def test_a_build_runs_the_exact_commit_with_its_pipeline(user, project, forge):
    first = forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "one\n"}, "first")
    forge.copy.push()
    client = api_client(user)
    register(client, forge)
    second = forge.copy.commit({"hello.txt": "two\n"}, "second: say two")
    forge.copy.push()

    build = build_of(client, ref=first)
    assert build.state == "succeeded", build.error
    assert (build.commit_sha, build.commit_ref) == (first, first)
    assert build.commit_author == "Ada Lovelace <ada@example.com>"
    assert build.commit_message == "first"
    seen = build.tasks.get(name="test").outputs["seen"]
    assert seen.splitlines() == ["one", first]

    on_branch = build_of(client)  # the repository's branch, as it is now
    assert on_branch.commit_sha == second and on_branch.commit_ref == "main"
    data = client.get(f"/api/builds/{on_branch.id}").json()
    assert data["commit"] == {
        "sha": second,
        "ref": "main",
        "author": "Ada Lovelace <ada@example.com>",
        "message": "second: say two",
    }
    assert data["repository"] == "app" and data["pipeline"] == "app"
    # The same pipeline text at both commits: one version.
    assert build.pipeline_version_id == on_branch.pipeline_version_id
    assert "checkout: " in task_log(build=on_branch, name="test")


def test_a_changed_pipeline_file_is_a_new_version_and_an_old_commit_keeps_its_own(
    user, project, forge
):
    first = forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "x\n"})
    forge.copy.push()
    client = api_client(user)
    register(client, forge)
    changed = PIPELINE.replace("cat hello.txt", "echo changed; cat hello.txt")
    forge.copy.commit({".buildsite.yml": changed})
    forge.copy.push()
    new = build_of(client)
    old = build_of(client, ref=first)
    assert new.pipeline_version.definition == changed
    assert old.pipeline_version.definition == PIPELINE
    assert PipelineVersion.objects.filter(pipeline__name="app").count() == 2
    again = build_of(client)
    assert again.pipeline_version_id == new.pipeline_version_id


def test_a_bad_pipeline_file_fails_the_build_at_once_with_its_line(user, project, forge):
    bad = "name: app\ntasks:\n  test:\n    needs: [nowhere]\n    steps:\n      - run: echo hi\n"
    forge.copy.commit({".buildsite.yml": bad})
    forge.copy.push()
    client = api_client(user)
    register(client, forge)
    build = build_of(client)
    assert build.state == "failed"
    assert not build.tasks.exists() and build.pipeline_version is None
    assert ".buildsite.yml at" in build.error and "line 3" in build.error
    assert "nowhere" in build.error
    data = client.get(f"/api/builds/{build.id}").json()
    assert data["state"] == "failed" and data["error"] == build.error
    assert data["commit"]["sha"] == build.commit_sha != ""


def test_missing_pipeline_file_and_unknown_ref_fail_the_build_saying_why(user, project, forge):
    forge.copy.commit({"README": "no pipeline here\n"})
    forge.copy.push()
    client = api_client(user)
    register(client, forge)
    assert "there is no .buildsite.yml" in build_of(client).error
    assert "no branch, tag or commit named 'nope'" in build_of(client, ref="nope").error


def test_tags_and_other_pipeline_paths(user, project, forge):
    forge.copy.commit({"ci/pipeline.yml": PIPELINE, "hello.txt": "tagged\n"})
    forge.copy.tag("v1.0")
    forge.copy.push()
    client = api_client(user)
    register(client, forge, pipeline_path="ci/pipeline.yml")
    build = build_of(client, ref="v1.0")
    assert build.state == "succeeded", build.error
    assert build.tasks.get().outputs["seen"].startswith("tagged")


def test_a_task_may_opt_out_of_the_checkout(user, project, forge):
    pipeline = """\
tasks:
  bare:
    checkout: false
    steps:
      - run: ls -A
        output: files
"""
    forge.copy.commit({".buildsite.yml": pipeline, "hello.txt": "x\n"})
    forge.copy.push()
    client = api_client(user)
    register(client, forge)
    build = build_of(client)
    assert build.state == "succeeded", build.error
    assert build.tasks.get().outputs["files"] == ""


def test_a_cached_task_runs_again_for_another_commit(user, project, forge):
    pipeline = PIPELINE.replace("  test:\n", "  test:\n    cache: true\n")
    forge.copy.commit({".buildsite.yml": pipeline, "hello.txt": "one\n"})
    forge.copy.push()
    client = api_client(user)
    register(client, forge)
    first = build_of(client)
    assert first.tasks.get().state == "succeeded"
    assert build_of(client).tasks.get().state == "cached"  # same commit: a hit
    forge.copy.commit({"hello.txt": "two\n"})
    forge.copy.push()
    third = build_of(client)
    task = third.tasks.get()
    assert task.state == "succeeded" and task.outputs["seen"].startswith("two")


def test_credentials_come_from_a_project_secret_and_never_show(user, project, tmp_path, forge):
    from vault.services import set_secret

    token = "tok-very-secret-123"
    forge.token = token
    forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "private\n"})
    forge.copy.push()
    client = api_client(user)
    register(client, forge, credentials_secret="GIT_TOKEN")
    unset = build_of(client)
    assert unset.state == "failed" and "GIT_TOKEN is not set" in unset.error
    set_secret(user=None, project=project, name="GIT_TOKEN", value="wrong-token-456")
    refused = build_of(client)
    assert refused.state == "failed" and "wrong-token-456" not in refused.error
    set_secret(user=None, project=project, name="GIT_TOKEN", value=token)
    build = build_of(client)
    assert build.state == "succeeded", build.error
    assert build.tasks.get().outputs["seen"].startswith("private")
    everything = client.get(f"/api/builds/{build.id}").content.decode() + task_log(
        build=build, name="test"
    )
    assert token not in everything
    mirror_config = (tmp_path / "mirrors" / f"{build.repository_id}.git" / "config").read_text()
    assert token not in mirror_config


def test_deleting_a_repository_keeps_its_builds(user, project, forge):
    forge.copy.commit({".buildsite.yml": PIPELINE, "hello.txt": "x\n"})
    forge.copy.push()
    client = api_client(user)
    created = register(client, forge)
    build = build_of(client)
    assert client.delete(f"/api/projects/acme/repositories/{created['id']}").status_code == 204
    build.refresh_from_db()
    assert build.repository_id is None and build.commit_sha
    assert client.get(f"/api/builds/{build.id}").json()["commit"]["sha"] == build.commit_sha


def test_a_refused_pipeline_file_leaves_nothing_behind_for_the_next_version(user, project, forge):
    """The refused version's savepoint is rolled back, and SQLite gives its id to the next
    version: what the process remembered of the refused one must not be used for it."""
    from builds.models import ResourcePool

    ResourcePool.objects.create(project=project, name="cpu", capacity=1)
    greedy = PIPELINE.replace("  test:\n", "  test:\n    resources: {cpu: 2}\n")
    forge.copy.commit({".buildsite.yml": greedy, "hello.txt": "x\n"})
    forge.copy.push()
    client = api_client(user)
    register(client, forge)
    refused = build_of(client)
    assert refused.state == "failed" and "capacity 1" in refused.error
    fine = PIPELINE.replace("  test:\n", "  checked:\n")
    forge.copy.commit({".buildsite.yml": fine})
    forge.copy.push()
    build = build_of(client)
    assert build.state == "succeeded", build.error
    assert list(build.tasks.values_list("name", flat=True)) == ["checked"]
