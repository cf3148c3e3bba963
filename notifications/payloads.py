"""Pure parts of notifications: which event a target gets, the bytes a webhook sends and
their signature, and the Slack/Mattermost message. No database, no network."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

SIGNATURE_HEADER = "X-Buildsite-Signature-256"
EVENT_HEADER = "X-Buildsite-Event"
DELIVERY_HEADER = "X-Buildsite-Delivery"
BUILD_EVENTS = frozenset(
    {"build.failed", "build.succeeded", "build.fixed", "build.cancelled", "task.failed"}
    | {"deadline.missed"}
)


def event_for(subscribed: Sequence[str], name: str, *, fixed: bool = False) -> str | None:
    """The event a target subscribed to `subscribed` is sent for outbox event `name`, or
    None. A success that fixes a failure is `build.fixed` for targets that want it, else
    `build.succeeded` for those that want that: one message per build, never both."""
    if name == "build.succeeded" and fixed and "build.fixed" in subscribed:
        return "build.fixed"
    return name if name in subscribed else None


def wanted(
    *,
    pipelines: Sequence[str],
    branches: Sequence[str],
    event: str,
    pipeline: str | None,
    branch: str | None,
) -> bool:
    """Whether a target's pipeline and branch filters let a build event through; empty
    filters let everything through. Events about prompts and documents have no
    pipeline or branch, so the filters do not apply to them."""
    if event not in BUILD_EVENTS:
        return True
    if pipelines and pipeline not in pipelines:
        return False
    return not branches or any(fnmatch.fnmatchcase(branch or "", p) for p in branches)


def json_bytes(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def body_of(payload: dict[str, Any], *, sent_at: str, delivery: str) -> bytes:
    """The exact bytes sent (and signed): the stored payload plus when and which delivery."""
    return json_bytes({**payload, "sent_at": sent_at, "delivery": delivery})


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the raw body>`, as GitHub signs its webhooks."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (docs/notifications.md): constant-time comparison."""
    return hmac.compare_digest(signature(secret, body), header or "")


def summary(payload: dict[str, Any]) -> tuple[str, str]:
    """(one line saying what happened, the link to it)."""
    event = payload.get("event", "")
    project = payload.get("project", "")
    if build := payload.get("build"):
        what = f"[{project}] {build.get('pipeline', '')} build #{build.get('id')}"
        ref = (build.get("commit") or {}).get("ref")
        if ref:
            what += f" on {ref}"
        task = payload.get("task") or {}
        verb = {
            "build.failed": "failed",
            "build.succeeded": "succeeded",
            "build.fixed": "is fixed: it succeeded after a failure",
            "build.cancelled": "was cancelled",
            "task.failed": f"failed in task {task.get('name', '')}",
            "deadline.missed": f"missed the deadline of task {task.get('name', '')}",
        }.get(event, event)
        return f"{what} {verb}", str(build.get("url", ""))
    if prompt := payload.get("prompt"):
        text = (
            f"[{project}] prompt {prompt.get('name')}: label {prompt.get('label')} "
            f"moved to version {prompt.get('version')}"
        )
        return text, str(prompt.get("url", ""))
    if document := payload.get("document"):
        text = (
            f"[{project}] document {document.get('path')} published "
            f"(revision {document.get('revision')})"
        )
        return text, str(document.get("url", ""))
    if message := payload.get("message"):  # a test message
        return f"[{project}] {message}", ""
    return f"[{project}] {event}", ""


def _slack_escape(text: str) -> str:
    # Slack's and Mattermost's incoming webhooks read <...> as links and mentions:
    # names chosen by users must not turn into @channel or a link elsewhere.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """The incoming-webhook body of Slack and Mattermost (which reads Slack's format):
    a text with the link to the build, prompt or document, and the failed tasks."""
    line, url = summary(payload)
    text = _slack_escape(line)
    if url:
        text += f" <{url}|open>"
    failed = [t.get("name", "") for t in (payload.get("build") or {}).get("failed_tasks", [])]
    if failed:
        text += "\nFailed tasks: " + ", ".join(_slack_escape(str(n)) for n in failed[:20])
    return {"text": text}
