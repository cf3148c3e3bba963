"""The search page: `in` checkboxes, results grouped by kind, the project's roles."""

import pytest
from django.test import Client

from buildsite.roles import Role
from docs_engine import services as docs
from prompts import services as prompts
from tests.factories import add_member, make_user

pytestmark = pytest.mark.django_db
URL = "/p/acme/docs/-/search/"


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def corpus(user, project):
    docs.save_document(user=user, project=project, path="a/b", title="Quasar", body="quasar")
    prompts.create_prompt(
        user=user, project=project, name="notes", body={"template": "About the quasar."}
    )


def test_results_are_grouped_by_the_kinds_asked_for(corpus, user):
    page = logged_in(user).get(URL, {"q": "quasar", "in": ["docs", "prompts"]})
    assert page.status_code == 200
    text = page.content.decode()
    assert text.index('id="h-docs"') < text.index('id="h-prompts"')
    assert 'id="h-logs"' not in text
    assert 'href="/p/acme/docs/a/b"' in text and 'href="/p/acme/prompts/notes/"' in text
    assert '<input type="checkbox" name="in" value="prompts" checked>' in text


def test_documents_alone_by_default(corpus, user):
    text = logged_in(user).get(URL, {"q": "quasar"}).content.decode()
    assert 'id="h-docs"' in text and 'id="h-prompts"' not in text


def test_viewers_may_search_outsiders_may_not(corpus, project):
    viewer = make_user("victor")
    add_member(project, viewer, Role.VIEWER)
    assert logged_in(viewer).get(URL, {"q": "quasar", "in": "prompts"}).status_code == 200
    assert logged_in(make_user("mallory")).get(URL, {"q": "quasar"}).status_code == 404


def test_an_unknown_kind_is_named_on_the_page(corpus, user):
    page = logged_in(user).get(URL, {"q": "quasar", "in": "gossip"})
    assert page.status_code == 422
    assert "unknown kind &#x27;gossip&#x27;" in page.content.decode()
