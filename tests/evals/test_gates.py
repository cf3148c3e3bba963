"""Gated labels: a label moves only to a version with a finished evaluation on the
gate's dataset (its current version) at or above the threshold; maintainers may force
a move with a reason; the history says which evaluation or reason allowed each move."""

import pytest

from audit.models import AuditEntry
from buildsite.roles import Role
from evals import services
from evals.models import LabelGate
from prompts.models import LabelMove
from tests.factories import add_member, api_client, make_user

from .conftest import send, wait_for

PROMPT = "/api/projects/acme/prompts/capital"
GATE = f"{PROMPT}/labels/production/gate"
LABEL = f"{PROMPT}/labels/production"


def evaluate(client, **body):
    r = send(client, "post", f"{PROMPT}/evaluations", {"dataset": "capitals", **body})
    assert r.status_code == 201, r.json()
    build = wait_for(r.json()["build"])
    assert build.state == "succeeded"
    return r.json()["id"]


@pytest.fixture
def alice(capital, user):
    client = api_client(user)
    r = send(client, "put", GATE, {"dataset": "capitals", "min_pass_rate": 0.6})
    assert r.status_code == 200, r.json()
    assert r.json()["min_pass_rate"] == 0.6 and r.json()["dataset"] == "capitals"
    return client


def test_a_gated_label_refuses_a_version_without_an_evaluation(alice):
    r = send(alice, "put", LABEL, {"version": 1})
    assert r.status_code == 409
    message = r.json()["detail"]
    assert "Label 'production' is gated" in message and "'capitals' v3" in message
    assert "0.6" in message and "No finished evaluation of v1" in message
    assert not LabelMove.objects.exists()


def test_a_passing_evaluation_allows_the_move_and_is_recorded(alice, inline_workers, fast_engine):
    evaluation = evaluate(alice, version=1)  # pass rate 2/3 >= 0.6
    r = send(alice, "put", LABEL, {"version": 1})
    assert r.status_code == 200, r.json()
    history = alice.get(PROMPT).json()["label_history"]
    assert history[0]["evaluation"] == evaluation
    assert (history[0]["forced"], history[0]["reason"]) == (False, "")
    entry = AuditEntry.objects.filter(action="label.move").latest("id")
    assert f"evaluation {evaluation}" in entry.detail


def test_an_evaluation_below_the_threshold_is_named(alice, inline_workers, fast_engine):
    send(alice, "put", GATE, {"dataset": "capitals", "min_pass_rate": 0.9})
    evaluation = evaluate(alice, version=1)
    r = send(alice, "put", LABEL, {"version": 1})
    assert r.status_code == 409
    assert f"best evaluation of v1 is {evaluation}, with 0.666667" in r.json()["detail"]


def test_an_evaluation_on_an_old_dataset_version_does_not_count(
    alice, capital, user, inline_workers, fast_engine
):
    evaluation = evaluate(alice, version=1)
    services.delete_item(user=user, project=capital, name="capitals", number=2)  # now v4
    r = send(alice, "put", LABEL, {"version": 1})
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert f"is {evaluation} (0.666667), on dataset v3, not the current v4" in detail


def test_an_evaluation_of_another_version_does_not_count(
    alice, capital, user, inline_workers, fast_engine
):
    from prompts import services as prompt_services

    evaluate(alice, version=1)
    prompt_services.add_version(
        user=user,
        project=capital,
        name="capital",
        body={"template": "Capital of {{ country }}?", "variables": ["country"]},
    )
    assert send(alice, "put", LABEL, {"version": 2}).status_code == 409


def test_maintainers_force_with_a_reason_editors_cannot(alice, capital):
    editor = make_user("eddie")
    add_member(capital, editor, Role.EDITOR)
    eddie = api_client(editor)
    r = send(eddie, "put", LABEL, {"version": 1, "force": True, "reason": "hotfix"})
    assert r.status_code == 403
    assert send(eddie, "put", LABEL, {"version": 1}).status_code == 409
    r = send(alice, "put", LABEL, {"version": 1, "force": True, "reason": "  "})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "reason"
    r = send(alice, "put", LABEL, {"version": 1, "force": True, "reason": "incident 42"})
    assert r.status_code == 200, r.json()
    move = alice.get(PROMPT).json()["label_history"][0]
    assert (move["evaluation"], move["forced"], move["reason"]) == (None, True, "incident 42")
    entry = AuditEntry.objects.filter(action="label.move").latest("id")
    assert "forced: incident 42" in entry.detail


def test_setting_gates_needs_a_maintainer_and_valid_input(alice, capital):
    editor, viewer, outsider = make_user("eddie"), make_user("vic"), make_user("olga")
    add_member(capital, editor, Role.EDITOR)
    add_member(capital, viewer, Role.VIEWER)
    body = {"dataset": "capitals", "min_pass_rate": 0.5}
    assert send(api_client(editor), "put", GATE, body).status_code == 403
    assert send(api_client(outsider), "put", GATE, body).status_code == 404
    assert api_client(viewer).get(GATE).json()["min_pass_rate"] == 0.6
    for bad, loc in [
        ({"dataset": "capitals", "min_pass_rate": 1.5}, "min_pass_rate"),
        ({"dataset": "capitals", "min_pass_rate": "high"}, "min_pass_rate"),
        ({"dataset": "capitals"}, "min_pass_rate"),
        ({"dataset": "nope", "min_pass_rate": 0.5}, "dataset"),
    ]:
        r = send(alice, "put", GATE, bad)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, (bad, r.json())
    r = send(alice, "put", f"{PROMPT}/labels/latest/gate", body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "label"
    assert AuditEntry.objects.filter(action="gate.set").count() == 1
    # The dataset cannot go while it gates a label; removing the gate frees both.
    assert alice.delete("/api/projects/acme/datasets/capitals").status_code == 409
    assert api_client(editor).delete(GATE).status_code == 403
    assert alice.delete(GATE).status_code == 204
    assert not LabelGate.objects.exists()
    assert send(alice, "put", LABEL, {"version": 1}).status_code == 200  # no longer gated
    assert alice.get(GATE).status_code == 404


def test_the_gate_path_does_not_shadow_the_label_routes(alice):
    # PUT labels/{label} (prompts) and PUT labels/{label}/gate (evals) both resolve.
    assert send(alice, "put", f"{PROMPT}/labels/staging", {"version": 1}).status_code == 200
    assert alice.delete(f"{PROMPT}/labels/staging").status_code == 204
    assert alice.get(GATE).status_code == 200


# --- the label form of the prompt page --------------------------------------------------
PAGE = "/p/acme/prompts/capital/"


def browser_of(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_the_label_form_shows_a_refused_move_and_a_maintainer_forces_it(alice, user):
    browser = browser_of(user)
    page = browser.get(PAGE).content.decode()
    assert 'name="force"' in page and 'name="reason"' in page
    move = {"label": "production", "version": "1", "action": "set"}
    r = browser.post(f"{PAGE}labels/", move)
    assert r.status_code == 409
    page = r.content.decode()
    assert "Label not moved:" in page and "Label &#x27;production&#x27; is gated" in page
    assert 'value="production"' in page  # the form keeps what was typed
    r = browser.post(f"{PAGE}labels/", {**move, "force": "on", "reason": " "})
    assert r.status_code == 422 and "a forced move needs a reason" in r.content.decode()
    assert not LabelMove.objects.exists()
    r = browser.post(f"{PAGE}labels/", {**move, "force": "on", "reason": "incident 42"})
    assert r.status_code == 302
    move = LabelMove.objects.get()
    assert (move.forced, move.reason, move.to_number) == (True, "incident 42", 1)
    page = browser.get(PAGE).content.decode()
    assert "production → #1" in page and "<strong>forced</strong>: incident 42" in page


def test_editors_are_not_offered_force_and_cannot_post_it(alice, capital):
    editor = make_user("eddie")
    add_member(capital, editor, Role.EDITOR)
    browser = browser_of(editor)
    page = browser.get(PAGE).content.decode()
    assert 'name="label"' in page and 'name="force"' not in page
    move = {"label": "production", "version": "1", "force": "on", "reason": "x"}
    assert browser.post(f"{PAGE}labels/", move).status_code == 403
    assert not LabelMove.objects.exists()


def test_the_history_names_the_evaluation_that_allowed_a_move(
    alice, user, inline_workers, fast_engine
):
    evaluation = evaluate(alice, version=1)
    browser = browser_of(user)
    r = browser.post(f"{PAGE}labels/", {"label": "production", "version": "1"})
    assert r.status_code == 302
    assert f"allowed by evaluation {evaluation}" in browser.get(PAGE).content.decode()


def test_an_evaluation_on_another_model_does_not_open_the_gate(alice, inline_workers, fast_engine):
    """The label serves the version with its own provider and model: a comparison run
    on another model passes, but proves nothing about what the label would serve."""
    evaluation = evaluate(alice, version=1, model="other-model")  # 2/3 >= 0.6
    r = send(alice, "put", LABEL, {"version": 1})
    assert r.status_code == 409
    assert (
        f"is {evaluation}, with 0.666667. It ran with another provider or model"
        in (r.json()["detail"])
    )
    own = evaluate(alice, version=1)
    r = send(alice, "put", LABEL, {"version": 1})
    assert r.status_code == 200, r.json()
    assert alice.get(PROMPT).json()["label_history"][0]["evaluation"] == own
