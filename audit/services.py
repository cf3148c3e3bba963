"""Writing the audit log: `record_action` is the only writer."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from .models import AuditEntry

DETAIL_MAX = 500
TARGET_MAX = 300


def actor_name_of(actor: Any) -> str:
    """How an entry names its actor: the username, plus the token's prefix when the
    request came with an API token; `(server)` for the server's own actions."""
    if actor is None or not getattr(actor, "is_authenticated", False):
        return "(server)"
    name = str(actor.get_username())
    prefix = getattr(actor, "token_prefix", None)
    return f"{name} (token {prefix}…)" if prefix else name


def record_action(
    *, actor: Any, project: Any, action: str, target: str = "", detail: str = ""
) -> AuditEntry:
    """Records one change. Call it inside the transaction that makes the change, so the
    entry exists exactly when the change does. `action` is a dotted name such as
    `build.cancel`; `detail` must never hold a secret value."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_action must run inside the transaction of the change")
    user = actor if getattr(actor, "is_authenticated", False) else None
    entry: AuditEntry = AuditEntry.objects.create(
        project=project,
        actor=user,
        actor_name=actor_name_of(actor)[:200],
        time=timezone.now(),
        action=action,
        target=target[:TARGET_MAX],
        detail=detail[:DETAIL_MAX],
    )
    return entry
