"""Browser pages and admin: library, editor with preview, playground, runs, providers."""

import pytest
from django.test import Client

from buildsite.roles import Role
from prompts import services
from prompts.models import LabelMove, PromptRun, PromptVersion, ProviderConfig
from tests.factories import add_member, make_user

VERSION = {
    "mode": "template",
    "template": "Summarise {{ topic }} in {{ n }} points.",
    "variables": '{"topic": {"type": "string"}, "n": {"type": "integer", "default": 3}}',
    "response_format": "text",
    "provider": "offline",
    "temperature": "0",
    "max_repairs": "2",
}


@pytest.fixture
def browser(user, project):
    client = Client()
    client.force_login(user)
    return client


def test_library_creates_a_prompt_and_reports_errors_with_lines(browser):
    assert browser.get("/p/acme/prompts/").status_code == 200
    r = browser.post("/p/acme/prompts/", {**VERSION, "name": "summary"})
    assert r.status_code == 302 and r["Location"] == "/p/acme/prompts/summary/"
    r = browser.post("/p/acme/prompts/", {**VERSION, "name": "broken", "template": "a\n{{ x"})
    assert r.status_code == 422
    assert "line 2" in r.content.decode()


def test_editor_previews_without_saving_and_saves_a_version(browser):
    browser.post("/p/acme/prompts/", {**VERSION, "name": "summary"})
    r = browser.post(
        "/p/acme/prompts/summary/",
        {
            **VERSION,
            "action": "preview",
            "template": "Hi {{ topic }}!",
            "sample": '{"topic": "cats"}',
        },
    )
    assert r.status_code == 200 and "Hi cats!" in r.content.decode()
    assert PromptVersion.objects.count() == 1
    r = browser.post("/p/acme/prompts/summary/", {**VERSION, "action": "save", "note": "v2"})
    assert r.status_code == 302 and PromptVersion.objects.count() == 2
    r = browser.post("/p/acme/prompts/summary/labels/", {"label": "production", "version": "1"})
    assert LabelMove.objects.get().to_number == 1
    page = browser.get("/p/acme/prompts/summary/").content.decode()
    assert "production → #1" in page
    diff = browser.get("/p/acme/prompts/summary/diff/?from=1&to=2")
    assert diff.status_code == 200


def test_playground_renders_and_runs_then_history_shows_tokens_and_cost(browser):
    browser.post("/p/acme/prompts/", {**VERSION, "name": "summary"})
    r = browser.post(
        "/p/acme/prompts/summary/playground/",
        {"ref": "latest", "action": "render", "var:topic": "logs"},
    )
    assert "Summarise logs in 3 points." in r.content.decode()
    r = browser.post("/p/acme/prompts/summary/playground/", {"ref": "#1", "action": "render"})
    assert r.status_code == 422 and "missing variable &#x27;topic&#x27;" in r.content.decode()
    r = browser.post(
        "/p/acme/prompts/summary/playground/",
        {"ref": "latest", "action": "run", "var:topic": "logs", "cache": "off"},
    )
    run = PromptRun.objects.get()
    assert (
        run.status == "succeeded"
        and f'Run <a href="/p/acme/prompts/_runs/{run.id}/">#{run.id}</a>' in r.content.decode()
    )
    history = browser.get("/p/acme/prompts/_runs/").content.decode()
    assert f"{run.tokens_in} / {run.tokens_out}" in history and "$0" in history
    assert browser.get(f"/p/acme/prompts/_runs/{run.id}/").status_code == 200


def test_viewers_read_but_cannot_change_and_outsiders_get_404(project, user):
    services.create_prompt(user=user, project=project, name="p", body={"template": "x"})
    viewer = make_user("vic")
    add_member(project, viewer, Role.VIEWER)
    client = Client()
    client.force_login(viewer)
    assert client.get("/p/acme/prompts/p/").status_code == 200
    assert client.post("/p/acme/prompts/p/", {**VERSION, "action": "save"}).status_code == 403
    assert (
        client.post("/p/acme/prompts/_providers/", {"name": "x", "kind": "offline"}).status_code
        == 403
    )
    outsider = Client()
    outsider.force_login(make_user("out"))
    assert outsider.get("/p/acme/prompts/").status_code == 404


def test_providers_page_stores_keys_write_only(browser):
    r = browser.post(
        "/p/acme/prompts/_providers/",
        {
            "name": "local",
            "kind": "openai",
            "base_url": "http://127.0.0.1:8080/v1",
            "api_key": "sk-page-secret",
        },
    )
    assert r.status_code == 302
    assert ProviderConfig.objects.get().has_stored_key
    page = browser.get("/p/acme/prompts/_providers/").content.decode()
    assert "sk-page-secret" not in page and "stored (encrypted)" in page
    r = browser.post(
        "/p/acme/prompts/_providers/",
        {"name": "m", "kind": "openai", "base_url": "http://metadata.google.internal/"},
    )
    assert r.status_code == 422


def test_admin_adds_versions_through_the_services_and_previews(project, user):
    admin_user = make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    services.create_prompt(
        user=user,
        project=project,
        name="p",
        body={"template": "Hi {{ who }}", "variables": {"who": "string"}},
    )
    prompt = project.prompts.get()
    url = f"/admin/prompts/prompttemplate/{prompt.id}/change/"
    assert client.get(url).status_code == 200
    r = client.post(
        "/admin/prompts/prompttemplate/",
        {"action": "render_preview", "_selected_action": [prompt.id]},
    )
    assert r.status_code == 200 and "Hi &lt;who&gt;" in r.content.decode()
    assert client.get("/admin/prompts/promptrun/").status_code == 200
    assert client.get("/admin/prompts/providerconfig/add/").status_code == 200
