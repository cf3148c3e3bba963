"""Search through the API; the same tests run on SQLite (FTS5) and PostgreSQL."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from buildsite.roles import Role
from docs_engine import services
from tests.factories import add_member, api_client, make_project, make_user

pytestmark = pytest.mark.django_db
BASE = "/api/projects/acme"


def save(user, project, path, title, body, tags=None, base=None):
    return services.save_document(
        user=user, project=project, path=path, title=title, body=body, tags=tags,
        base_revision=base,
    )  # fmt: skip


def search(client, **params):
    r = client.get(f"{BASE}/search", params)
    assert r.status_code == 200, r.content
    return r.json()["results"]


@pytest.fixture
def corpus(user, project):
    save(user, project, "guides/install", "Installing Buildsite",
         "# Installing\n\nRun the installer, then start the server.\n", tags=["ops"])  # fmt: skip
    save(user, project, "guides/quick-start", "Quick start",
         "Start a quick build after you install the tools.\n")  # fmt: skip
    save(user, project, "ref/config", "Configuration",
         "Environment variables configure the server. Installation needs none.\n",
         tags=["ref", "ops"])  # fmt: skip
    save(user, project, "misc/windows", "Windows notes", "Install on windows with WSL.\n")
    return api_client(user)


def paths(results):
    return [r["path"] for r in results]


def test_ranked_with_title_matches_first_and_highlighted_snippets(corpus):
    results = search(corpus, q="installing")
    assert paths(results)[0] == "guides/install"  # title match outranks body matches
    assert set(paths(results)) == {
        "guides/install",
        "guides/quick-start",
        "ref/config",
        "misc/windows",
    }  # fmt: skip  (stemming: install*)
    assert "<mark>" in results[0]["snippet"]
    assert "<mark>" in results[0]["title_html"]


def test_phrase_prefix_and_exclusion(corpus):
    assert paths(search(corpus, q='"quick build"')) == ["guides/quick-start"]
    assert paths(search(corpus, q='"build quick"')) == []
    assert "ref/config" in paths(search(corpus, q="config*"))
    assert "misc/windows" not in paths(search(corpus, q="install -windows"))


def test_filters_tag_prefix_author_since(corpus, project):
    assert paths(search(corpus, q="install*", tag="ops")) == [
        "guides/install",
        "ref/config",
    ] or set(paths(search(corpus, q="install*", tag="ops"))) == {"guides/install", "ref/config"}
    assert set(paths(search(corpus, q="install*", prefix="guides"))) == {
        "guides/install", "guides/quick-start"}  # fmt: skip
    bob = make_user("bob")
    add_member(project, bob, Role.EDITOR)
    save(bob, project, "misc/windows", "Windows notes", "Install on windows, by bob.\n", base=1)
    assert paths(search(corpus, q="install", author="bob")) == ["misc/windows"]
    assert paths(search(corpus, q="install", author="nobody")) == []
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert search(corpus, q="install", since=future) == []


@pytest.mark.parametrize(
    "query",
    ['"unclosed', "AND", "OR OR", "(", ")", "NEAR(", "*", "-", '""', "a:b", "^x", "x'y",
     "\\", "%", "_", "\x00", "ü*", "💥", "a" * 500, "-windows", "title:x", "{a b}", "!"],
)  # fmt: skip
def test_malformed_queries_never_crash(corpus, query):
    search(corpus, q=query)


def test_index_follows_save_restore_move_and_delete(corpus, user, project):
    assert paths(search(corpus, q="zebra")) == []
    save(user, project, "ref/config", "Configuration", "Now about zebra.\n", tags=["ref"], base=1)
    assert paths(search(corpus, q="zebra")) == ["ref/config"]
    services.restore_revision(user=user, project=project, path="ref/config", revision=1)
    assert paths(search(corpus, q="zebra")) == []
    services.move_document(user=user, project=project, path="ref/config", new_path="ref/settings")
    assert paths(search(corpus, q="environment")) == ["ref/settings"]
    services.delete_document(user=user, project=project, path="ref/settings")
    assert paths(search(corpus, q="environment")) == []


def test_search_is_scoped_to_the_project_and_its_members(corpus):
    other_owner = make_user("olga")
    other = make_project(owner=other_owner, slug="other")
    save(other_owner, other, "secret", "Secret install", "install secrets")
    assert "secret" not in paths(search(corpus, q="install"))
    outsider = api_client(make_user("mallory"))
    assert outsider.get(f"{BASE}/search", {"q": "install"}).status_code == 404


def test_snippets_escape_document_html(corpus, user, project):
    save(user, project, "x", "X", "`<img src=x onerror=alert(1)>` findme\n")
    snippet = search(corpus, q="findme")[0]["snippet"]
    assert "<mark>findme</mark>" in snippet and "&gt;" in snippet
    assert "<" not in snippet.replace("<mark>", "").replace("</mark>", "")


def test_no_words_lists_by_filters_newest_first(corpus):
    results = search(corpus, tag="ops")
    assert set(paths(results)) == {"guides/install", "ref/config"}


def test_runs_on_the_expected_backend():
    from docs_engine.search import backend

    assert backend().__name__.endswith(
        "postgres" if connection.vendor == "postgresql" else "sqlite"
    )


def test_broad_queries_rank_the_newest_candidates_with_the_same_results(corpus, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("the candidate cut is specific to the FTS5 backend")
    from docs_engine.search import sqlite

    exact = search(corpus, q="install*")
    monkeypatch.setattr(sqlite, "FULL_RANK_LIMIT", 0)  # every query counts as broad
    assert search(corpus, q="install*") == exact
    assert paths(search(corpus, q="install*", prefix="misc")) == ["misc/windows"]
