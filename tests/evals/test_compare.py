"""Comparing two evaluations: the pure comparison (evals.compare), the API
(GET …/evaluations/compare) and the pages (the prompt page's evaluations section and
start form, an evaluation's page, the compare page)."""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import Client

from buildsite.roles import Role
from evals import compare
from evals import services as eval_services
from evals.models import Evaluation
from prompts import services as prompt_services
from tests.factories import add_member, api_client, make_user

from .conftest import send, wait_for

URL = "/api/projects/acme/prompts/capital/evaluations"
PAGE = "/p/acme/prompts/capital/"


@dataclass(frozen=True)
class R:
    item: int
    passed: bool | None
    output: str | None


# --- pure -------------------------------------------------------------------------------
def test_changes_are_matched_by_item_and_regressions_come_first():
    a = [R(1, True, "x"), R(2, False, "y"), R(3, True, "z"), R(4, True, "w"), R(5, True, "v")]
    b = [R(5, None, None), R(4, True, "w"), R(3, False, "z2"), R(2, True, "y"), R(6, True, "n")]
    changes = compare.compare_items(a, b, a_name="A", b_name="B")
    assert [(c.item, c.change) for c in changes] == [
        (3, "regressed"),
        (5, "regressed"),  # not judged in b counts as not passed, as in the pass rate
        (2, "improved"),
        (6, "added"),
        (1, "removed"),
        (4, "same"),
    ]
    by_item = {c.item: c for c in changes}
    assert by_item[6].a is None and by_item[6].b == compare.Side(True, "n")
    assert by_item[1].b is None and by_item[1].a == compare.Side(True, "x")
    assert by_item[4].diff == "" and by_item[2].diff == ""  # same output, no diff
    assert by_item[3].diff.splitlines() == [
        "--- A item 3",
        "+++ B item 3",
        "@@ -1 +1 @@",
        "-z",
        "+z2",
    ]


def test_on_the_same_items_pass_rates_differ_by_improved_minus_regressed():
    a = [R(i, i % 2 == 0, "") for i in range(1, 11)]
    b = [R(i, i % 3 == 0 if i < 9 else None, "") for i in range(1, 11)]
    changes = compare.compare_items(a, b)
    count = {k: sum(1 for c in changes if c.change == k) for k in ("regressed", "improved")}
    rate_a = sum(1 for r in a if r.passed) / 10
    rate_b = sum(1 for r in b if r.passed) / 10
    assert rate_b - rate_a == pytest.approx((count["improved"] - count["regressed"]) / 10)


def test_the_diff_is_bounded():
    same_start = "s" * compare.MAX_OUTPUT_CHARS
    # Outputs are compared on their first 2,000 characters only.
    assert compare.output_diff(same_start + "a", same_start + "b") == ""
    a = "\n".join(f"line a {i}" for i in range(1000))
    b = "\n".join(f"line b {i}" for i in range(1000))
    diff = compare.output_diff(a, b)
    assert len(diff) <= compare.MAX_DIFF_CHARS
    assert diff.endswith(compare.CUT.format(limit=compare.MAX_DIFF_CHARS))
    assert "line a 0" in diff and "line a 999" not in diff  # a is cut to 2,000 first
    long_a, long_b = "a" * 5000, "b" * 5000
    diff = compare.output_diff(long_a, long_b)
    assert len(diff) <= compare.MAX_DIFF_CHARS and "a" * 2000 in diff and "a" * 2001 not in diff
    short = compare.output_diff("one\ntwo", "one\nthree")
    assert compare.CUT.format(limit=compare.MAX_DIFF_CHARS) not in short


def test_diff_lines_are_classified_and_deltas_need_both_sides():
    diff = compare.output_diff("keep\n-- old", "keep\n+++ new", a_name="A", b_name="B")
    assert compare.diff_lines(diff) == [
        ("file", "--- A"),
        ("file", "+++ B"),
        ("hunk", "@@ -1,2 +1,2 @@"),
        ("", " keep"),
        ("del", "--- old"),  # a removed line that looks like a header is still removed
        ("add", "++++ new"),
    ]
    assert compare.delta(0.5, 0.75) == 0.25
    assert compare.delta(None, 1.0) is None and compare.delta(1.0, None) is None


def test_prompts_does_not_import_evals():
    root = Path(__file__).resolve().parents[2] / "prompts"
    offenders = [
        str(p)
        for p in root.rglob("*.py")
        if re.search(r"^\s*(from|import) evals\b", p.read_text(), re.MULTILINE)
    ]
    assert offenders == []


# --- API and pages with two finished evaluations ----------------------------------------
@pytest.fixture
def two_runs(capital, user, inline_workers, fast_engine):
    """Evaluation a of version 1 and b of version 2 ("London? {{ country }}") on the
    capitals (plus item 4 with markup in its answer): item 1 the same (passes), 2
    improved (b names London), 3 and 4 regressed (b lacks "capital of")."""
    eval_services.add_item(
        user=user,
        project=capital,
        name="capitals",
        variables={"country": "<i>Oz</i>"},
        expect=[{"type": "contains", "value": "capital of"}],
    )
    prompt_services.add_version(
        user=user,
        project=capital,
        name="capital",
        body={"template": "London? {{ country }}", "variables": ["country"]},
    )
    alice = api_client(user)
    ids = []
    for version in (1, 2):
        r = send(alice, "post", URL, {"dataset": "capitals", "version": version})
        assert r.status_code == 201, r.json()
        assert wait_for(r.json()["build"]).state == "succeeded"
        ids.append(r.json()["id"])
    return ids


def test_compare_api_shape_and_order(two_runs, user):
    a, b = two_runs
    r = api_client(user).get(f"{URL}/compare?a={a}&b={b}")
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {"a", "b", "items"}
    detail = api_client(user).get(f"{URL}/{a}").json()
    del detail["items"]
    assert body["a"] == {**detail, "latency_ms": body["a"]["latency_ms"]}
    assert isinstance(body["a"]["latency_ms"], float) and body["a"]["latency_ms"] >= 0
    assert (body["a"]["version"], body["b"]["version"]) == (1, 2)
    assert (body["a"]["passed"], body["b"]["passed"]) == (3, 2)
    assert [(i["item"], i["change"]) for i in body["items"]] == [
        (3, "regressed"),
        (4, "regressed"),
        (2, "improved"),
        (1, "same"),
    ]
    first = body["items"][0]
    assert set(first) == {"item", "change", "a", "b", "diff"}
    assert first["a"]["passed"] is True and first["b"]["passed"] is False
    assert "capital of {{ params.x }}" in first["a"]["output"]
    assert first["diff"].startswith(f"--- evaluation {a} item 3\n+++ evaluation {b} item 3\n")
    assert "\n+" in first["diff"] and "London?" in first["diff"]
    same = body["items"][3]
    assert same["a"]["output"] != same["b"]["output"] and same["diff"]  # answers differ


def test_compare_pages_escape_and_order(two_runs, user):
    a, b = two_runs
    browser = Client()
    browser.force_login(user)
    page = browser.get(f"{PAGE}evaluations/compare/?a={a}&b={b}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<i>Oz" not in html and "&lt;i&gt;Oz&lt;/i&gt;" in html
    assert html.index('class="change-regressed"') < html.index('class="change-improved"')
    assert html.index('class="change-improved"') < html.index('class="change-same"')
    assert '<span class="add">' in html and '<span class="del">' in html
    assert "-25.0 points" in html  # 3/4 → 2/4
    assert "2 regressed · 1 improved · 1 the same" in html
    detail = browser.get(f"{PAGE}evaluations/{a}/").content.decode()
    assert f'href="/builds/{Evaluation.objects.get(id=a).build_id}/"' in detail
    assert "Compare with" in detail and f'<option value="{b}">' in detail
    assert "expect.0 (contains)" in browser.get(f"{PAGE}evaluations/{b}/").content.decode()
    section = browser.get(PAGE).content.decode()
    assert section.index(f"evaluations/{b}/") < section.index(f"evaluations/{a}/")  # newest first
    assert "75.0 %" in section and "capitals@4" in section


# --- refusals and access (evaluations need not run) -------------------------------------
@pytest.fixture
def queued(capital, user):
    """Two evaluations of `capital` and one of another prompt, none run."""
    prompt_services.create_prompt(
        user=user,
        project=capital,
        name="other",
        body={"template": "{{ country }}", "variables": ["country"]},
    )
    start = eval_services.start_evaluation
    mine = [
        start(user=user, project=capital, prompt_name="capital", dataset_name="capitals").id
        for _ in range(2)
    ]
    other = start(user=user, project=capital, prompt_name="other", dataset_name="capitals").id
    return mine, other


@pytest.mark.django_db
def test_compare_api_refusals_and_access(queued, user, project):
    (a, b), other = queued
    alice = api_client(user)
    assert alice.get(f"{URL}/compare?a={a}&b={b}").status_code == 200
    r = alice.get(f"{URL}/compare?a={a}&b={other}")
    assert r.status_code == 404 and f"no evaluation {other}" in r.json()["detail"]
    assert alice.get(f"{URL}/compare?a=999999&b={b}").status_code == 404
    r = alice.get(f"{URL}/compare")
    assert r.status_code == 422
    assert {d["loc"] for d in r.json()["detail"]} == {"query.a", "query.b"}
    r = alice.get(f"{URL}/compare?a={a}&b=x")
    assert r.status_code == 422 and [d["loc"] for d in r.json()["detail"]] == ["query.b"]
    viewer, outsider = make_user("vic"), make_user("olga")
    add_member(project, viewer, Role.VIEWER)
    assert api_client(viewer).get(f"{URL}/compare?a={a}&b={b}").status_code == 200
    assert api_client(outsider).get(f"{URL}/compare?a={a}&b={b}").status_code == 404
    assert Client().get(f"{URL}/compare?a={a}&b={b}").status_code == 401


@pytest.mark.django_db
def test_pages_for_viewers_editors_and_outsiders(queued, user, project):
    (a, b), other = queued
    viewer, editor, outsider = make_user("vic"), make_user("eddie"), make_user("olga")
    add_member(project, viewer, Role.VIEWER)
    add_member(project, editor, Role.EDITOR)
    browse = {}
    for who in (viewer, editor, outsider):
        browse[who.username] = Client()
        browse[who.username].force_login(who)
    v, e, o = browse["vic"], browse["eddie"], browse["olga"]
    html = v.get(PAGE).content.decode()
    assert "Evaluations" in html and "Start an evaluation" not in html
    assert f"evaluations/{a}/" in html and f"evaluations/{other}/" not in html
    assert v.get(f"{PAGE}evaluations/{a}/").status_code == 200
    assert v.get(f"{PAGE}evaluations/compare/?a={a}&b={b}").status_code == 200
    assert v.get(f"{PAGE}evaluations/{other}/").status_code == 404  # another prompt's
    assert v.get(f"{PAGE}evaluations/compare/?a={a}&b={other}").status_code == 404
    r = v.get(f"{PAGE}evaluations/compare/?b=x")
    assert r.status_code == 422
    assert "a: choose an evaluation" in r.content.decode()
    assert "b: choose an evaluation" in r.content.decode()
    r = v.post(f"{PAGE}evaluations/", {"dataset": "capitals", "ref": "latest"})
    assert r.status_code == 403 and Evaluation.objects.count() == 3
    for path in (PAGE, f"{PAGE}evaluations/{a}/", f"{PAGE}evaluations/compare/?a={a}&b={b}"):
        assert o.get(path).status_code == 404
    assert "Start an evaluation" in e.get(PAGE).content.decode()
    r = e.post(f"{PAGE}evaluations/", {"dataset": "capitals", "ref": "#1", "provider": ""})
    created = Evaluation.objects.order_by("-id").first()
    assert r.status_code == 302 and r["Location"] == f"{PAGE}evaluations/{created.id}/"
    assert created.version.number == 1 and created.created_by == editor
    assert (created.provider, created.model) == ("", "")
    r = e.post(
        f"{PAGE}evaluations/",
        {"dataset": "capitals", "ref": "latest", "provider": "offline", "model": "m2"},
    )
    assert r.status_code == 302
    assert Evaluation.objects.order_by("-id").values_list("provider", "model")[0] == (
        "offline",
        "m2",
    )
    for form, field in (
        ({"dataset": "capitals", "ref": "#x"}, "version"),
        ({"dataset": "nope", "ref": "latest"}, "nope"),
        ({"dataset": "capitals", "ref": "latest", "provider": "ghost"}, "provider"),
    ):
        before = Evaluation.objects.count()
        r = e.post(f"{PAGE}evaluations/", form, follow=True)
        assert r.status_code == 200 and Evaluation.objects.count() == before
        assert "Evaluation not started" in r.content.decode() and field in r.content.decode()
    assert e.get(f"{PAGE}evaluations/").status_code == 405
