"""Push webhooks of the three common forges, read the way each one sends them.

Pure: headers and the raw body in, a verdict out. The signature is checked over the
raw bytes before anything of the body is read, in constant time.

- GitHub: `X-GitHub-Event`, `X-GitHub-Delivery`, `X-Hub-Signature-256: sha256=<hex>`
- GitLab: `X-Gitlab-Event: Push Hook`, `X-Gitlab-Event-UUID`, `X-Gitlab-Token: <secret>`
- Gitea / Forgejo: `X-Gitea-Event` (or `X-Forgejo-Event`), `X-Gitea-Delivery`,
  `X-Gitea-Signature: <hex>` (or `X-Forgejo-Signature`)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 5 * 1024 * 1024
ZERO_SHA = "0" * 40


class BadSignature(Exception):
    """Missing, malformed or wrong: the request is refused and nothing is created."""


class BadPayload(Exception):
    """Signed, but not a push this server can read."""


@dataclass(frozen=True)
class Hook:
    forge: str
    event: str
    delivery: str


@dataclass(frozen=True)
class Push:
    """A push to a branch: build `after` (the pushed commit, not whatever the branch
    points to by the time the build starts)."""

    branch: str
    after: str
    author: str
    message: str


def _header(headers: Mapping[str, str], name: str) -> str:
    # Django's request.headers is case-insensitive; plain dicts in tests may not be.
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value)
    return ""


def _hex_hmac(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()


def _given(value: str) -> bytes:
    """A header's value as bytes: compare_digest refuses (TypeError) a str with
    anything but ASCII in it, which a forger may send."""
    return value.lower().encode("utf-8", "replace")


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> Hook:
    """Which forge sent it, which event, and its delivery id; BadSignature unless the
    forge's proof of the shared secret is there and right."""
    if event := _header(headers, "X-GitHub-Event"):
        given = _header(headers, "X-Hub-Signature-256")
        if not given.startswith("sha256="):
            raise BadSignature("X-Hub-Signature-256 is missing")
        if not hmac.compare_digest(_given(given[7:]), _hex_hmac(secret, body)):
            raise BadSignature("X-Hub-Signature-256 does not match the webhook secret")
        return Hook("github", event, _header(headers, "X-GitHub-Delivery"))
    if event := _header(headers, "X-Gitlab-Event"):
        token = _header(headers, "X-Gitlab-Token")
        if not token:
            raise BadSignature("X-Gitlab-Token is missing")
        if not hmac.compare_digest(token.encode("utf-8", "replace"), secret.encode()):
            raise BadSignature("X-Gitlab-Token does not match the webhook secret")
        delivery = _header(headers, "X-Gitlab-Event-UUID") or _header(
            headers, "X-Gitlab-Webhook-UUID"
        )
        return Hook("gitlab", event, delivery)
    if event := _header(headers, "X-Gitea-Event") or _header(headers, "X-Forgejo-Event"):
        given = _header(headers, "X-Gitea-Signature") or _header(headers, "X-Forgejo-Signature")
        if not given:
            raise BadSignature("X-Gitea-Signature is missing")
        if not hmac.compare_digest(_given(given), _hex_hmac(secret, body)):
            raise BadSignature("X-Gitea-Signature does not match the webhook secret")
        delivery = _header(headers, "X-Gitea-Delivery") or _header(headers, "X-Forgejo-Delivery")
        return Hook("gitea", event, delivery)
    raise BadSignature(
        "not a GitHub, GitLab or Gitea/Forgejo webhook (no X-GitHub-Event, X-Gitlab-Event "
        "or X-Gitea-Event header)"
    )


def is_push(hook: Hook) -> bool:
    return (hook.forge, hook.event) in {
        ("github", "push"),
        ("gitlab", "Push Hook"),
        ("gitea", "push"),
    }


def read_push(body: bytes) -> Push | str:
    """The push, or why it builds nothing (a tag, a deleted branch)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadPayload("the body is not a JSON object")
    ref, after = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str) or not isinstance(after, str):
        raise BadPayload("a push names `ref` and `after` (strings)")
    if ref.startswith("refs/tags/"):
        return f"{ref} is a tag; pushes to branches build"
    if not ref.startswith("refs/heads/"):
        return f"{ref} is not a branch"
    if after == ZERO_SHA or payload.get("deleted") is True:
        return f"branch {ref[11:]} was deleted"
    if not (len(after) in (40, 64) and all(c in "0123456789abcdef" for c in after)):
        raise BadPayload("`after` is not a commit id")
    author, message = _head_commit(payload, after)
    return Push(branch=ref[11:], after=after, author=author, message=message)


def _head_commit(payload: dict[str, Any], after: str) -> tuple[str, str]:
    """Author and message of the pushed commit, when the payload carries them (GitHub's
    `head_commit`; GitLab's and Gitea's `commits` list). The build reads them from the
    repository anyway; these are only shown until it has."""
    head = payload.get("head_commit")
    commits = payload.get("commits")
    if not isinstance(head, dict) and isinstance(commits, list):
        head = next((c for c in commits if isinstance(c, dict) and c.get("id") == after), None)
    if not isinstance(head, dict):
        return "", ""
    author = head.get("author")
    name = ""
    if isinstance(author, dict):
        name = f"{author.get('name', '')} <{author.get('email', '')}>".strip()
    message = head.get("message")
    return name[:300], (message if isinstance(message, str) else "")[:10_000]
