"""The pure parts: event choice, filters, the signed body, the Slack message."""

from __future__ import annotations

import hashlib
import hmac
import json

from notifications import payloads

BUILD = {
    "id": 7,
    "pipeline": "main",
    "state": "failed",
    "url": "http://localhost:8000/builds/7/",
    "commit": {"sha": "abc", "ref": "main"},
    "started_at": None,
    "finished_at": None,
    "failed_tasks": [{"name": "test", "error": "exit code 1"}],
}


def test_fixed_replaces_succeeded_only_for_targets_that_want_it():
    both = ["build.succeeded", "build.fixed"]
    assert payloads.event_for(both, "build.succeeded", fixed=True) == "build.fixed"
    assert payloads.event_for(both, "build.succeeded", fixed=False) == "build.succeeded"
    assert payloads.event_for(["build.succeeded"], "build.succeeded", fixed=True) == (
        "build.succeeded"
    )
    assert payloads.event_for(["build.fixed"], "build.succeeded", fixed=True) == "build.fixed"
    assert payloads.event_for(["build.fixed"], "build.succeeded", fixed=False) is None
    assert payloads.event_for(["build.failed"], "build.cancelled") is None


def test_pipeline_and_branch_filters():
    def wanted(pipelines, branches, *, event="build.failed", pipeline="main", branch="main"):
        return payloads.wanted(
            pipelines=pipelines, branches=branches, event=event, pipeline=pipeline, branch=branch
        )

    assert wanted([], [])
    assert wanted(["main"], ["main", "release/*"])
    assert not wanted(["other"], [])
    assert wanted([], ["release/*"], branch="release/1.2")
    assert not wanted([], ["release/*"], branch="feature/x")
    assert not wanted([], ["release/*"], branch="")  # a build without a repository
    assert wanted([], ["*"], branch="")
    # prompts and documents have no pipeline or branch: the filters do not apply
    assert wanted(["other"], ["release/*"], event="document.published", pipeline=None)


def test_body_and_signature_match_what_a_receiver_computes():
    body = payloads.body_of({"event": "build.failed", "build": BUILD}, sent_at="t", delivery="d")
    assert json.loads(body) == {
        "event": "build.failed",
        "build": BUILD,
        "sent_at": "t",
        "delivery": "d",
    }
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert payloads.signature("s3cret", body) == expected
    assert payloads.verify("s3cret", body, expected)
    assert not payloads.verify("other", body, expected)
    assert not payloads.verify("s3cret", body + b" ", expected)


def test_slack_message_has_text_and_link_and_escapes_names():
    message = payloads.slack_message({"event": "build.failed", "project": "acme", "build": BUILD})
    assert set(message) == {"text"}
    text = message["text"]
    assert text.startswith("[acme] main build #7 on main failed")
    assert "<http://localhost:8000/builds/7/|open>" in text
    assert "Failed tasks: test" in text
    evil = {**BUILD, "pipeline": "<!channel>", "failed_tasks": [{"name": "<http://x|y>"}]}
    text = payloads.slack_message({"event": "build.failed", "project": "a", "build": evil})["text"]
    assert "<!channel>" not in text and "<http://x|y>" not in text
    assert "&lt;!channel&gt;" in text


def test_summaries_of_prompt_and_document_events():
    line, url = payloads.summary(
        {"event": "label.moved", "project": "acme",
         "prompt": {"name": "notes", "label": "production", "version": 3, "url": "u"}}
    )  # fmt: skip
    assert line == "[acme] prompt notes: label production moved to version 3" and url == "u"
    line, _ = payloads.summary(
        {"event": "document.published", "project": "acme",
         "document": {"path": "a/b", "revision": 2, "url": "u"}}
    )  # fmt: skip
    assert line == "[acme] document a/b published (revision 2)"
