"""Writes of notifications: targets (maintainers only), test messages, redeliveries, the
upkeep that turns outbox events into deliveries, and one delivery attempt (a job).

Nothing here runs in a build's transaction: the engine writes its `Event` rows as it
always does, and upkeep (`process_outbox`, once a second in the cluster holding the
upkeep lease) reads them after a stored position. Each delivery is a django-q2 job, so
a slow or dead receiver holds one worker slot for at most NOTIFY_TIMEOUT_SECONDS and
never a build. Retries are not slept through: the attempt records `next_attempt_at`
and upkeep queues the job again once it is due.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from audit.services import record_action
from builds.services import NAME_RE as PIPELINE_NAME_RE
from buildsite import crypto
from buildsite.errors import Conflict, InvalidInput, Problem
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from prompts.services import private_urls_allowed

from . import sending
from .models import EVENTS, Delivery, NotificationTarget

log = logging.getLogger(__name__)
Kind = NotificationTarget.Kind
State = Delivery.State
DELIVER_JOB = "notifications.jobs.deliver"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
MAX_EMAILS = 20
MAX_FILTERS = 50
MAX_SECRET = 200
MAX_URL = 2000


def notify_setting(name: str) -> float:
    """A number from settings.BUILDSITE (defaults and environment: buildsite/settings.py)."""
    value: float = float(settings.BUILDSITE[name])
    return value


def timeout_seconds() -> float:
    return notify_setting("NOTIFY_TIMEOUT_SECONDS")


def max_attempts() -> int:
    return int(notify_setting("NOTIFY_MAX_ATTEMPTS"))


def backoff_seconds(attempts: int) -> float:
    """Wait after the `attempts`-th failed attempt: base x 2^(attempts-1)."""
    base = notify_setting("NOTIFY_BACKOFF_SECONDS")
    return base * float(2 ** max(0, attempts - 1))


# --- targets -----------------------------------------------------------------------------
def _require_maintainer(user: Any, project: Project) -> None:
    """user=None is the server itself (admin, management commands): no role to check."""
    if user is not None:
        require_role(user=user, project=project, role=Role.MAINTAINER)


def display_url(kind: str, url: str) -> str:
    """What pages, API answers and the audit log show of a URL: a Slack/Mattermost URL's
    path is its credential, and a query string may hold a token."""
    if not url:
        return ""
    parts = urlsplit(url)
    if kind == Kind.SLACK:
        return f"{parts.scheme}://{parts.netloc}/…"
    return sending.safe_url(url) + ("?…" if parts.query else "")


def _check_list(
    value: Any, where: str, problems: list[Problem], *, limit: int, item_max: int = 255
) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem("must be a list of strings", where=where))
        return []
    if len(value) > limit:
        problems.append(Problem(f"at most {limit} entries", where=where))
    cleaned = [v.strip() for v in value]
    if any(not v or len(v) > item_max for v in cleaned):
        problems.append(Problem(f"entries must be 1 to {item_max} characters", where=where))
    return list(dict.fromkeys(cleaned))


def check_target(
    *,
    project: Project,
    name: str,
    kind: str,
    url: str,
    emails: Any,
    secret: str | None,
    events: Any,
    pipelines: Any,
    branches: Any,
    exclude_id: int | None = None,
) -> dict[str, Any]:
    """A target's fields cleaned, or InvalidInput naming every field that is wrong."""
    problems: list[Problem] = []
    name = (name or "").strip()
    if not NAME_RE.match(name):
        problems.append(
            Problem(
                "1-100 letters, digits, spaces, '.', '_' and '-', starting with a letter or digit",
                where="name",
            )
        )
    elif (
        NotificationTarget.objects.filter(project=project, name=name)
        .exclude(id=exclude_id)
        .exists()
    ):
        problems.append(Problem(f"'{name}' is taken in this project", where="name"))
    if kind not in Kind.values:
        problems.append(Problem(f"kind must be one of {', '.join(Kind.values)}", where="kind"))
    url = (url or "").strip()
    cleaned_emails = _check_list(emails, "emails", problems, limit=MAX_EMAILS)
    if kind in (Kind.WEBHOOK, Kind.SLACK):
        if not url:
            problems.append(Problem(f"a {kind} target needs a url", where="url"))
        elif len(url) > MAX_URL:
            problems.append(Problem(f"at most {MAX_URL} characters", where="url"))
        else:
            try:
                sending.check_url(url, allow_private=private_urls_allowed())
            except InvalidInput as exc:
                problems.extend(exc.problems)
        if cleaned_emails:
            problems.append(Problem(f"a {kind} target has no emails", where="emails"))
    elif kind == Kind.EMAIL:
        if url:
            problems.append(Problem("an email target has no url", where="url"))
        if not cleaned_emails:
            problems.append(Problem("an email target needs at least one address", where="emails"))
        for address in cleaned_emails:
            try:
                validate_email(address)
            except ValidationError:
                bad = f"'{address[:100]}' is not an email address"
                problems.append(Problem(bad, where="emails"))
                break
    if secret:
        if kind != Kind.WEBHOOK:
            problems.append(Problem("only webhook targets sign their messages", where="secret"))
        elif len(secret) > MAX_SECRET:
            problems.append(Problem(f"at most {MAX_SECRET} characters", where="secret"))
    cleaned_events = _check_list(events, "events", problems, limit=len(EVENTS), item_max=30)
    if isinstance(events, list) and not events:
        problems.append(Problem("choose at least one event", where="events"))
    unknown = [e for e in cleaned_events if e not in EVENTS]
    if unknown:
        problems.append(
            Problem(
                f"unknown event '{unknown[0][:30]}'; events are {', '.join(EVENTS)}", where="events"
            )
        )
    cleaned_pipelines = _check_list(pipelines, "pipelines", problems, limit=MAX_FILTERS)
    if any(not re.match(PIPELINE_NAME_RE, p) for p in cleaned_pipelines):
        problems.append(
            Problem("pipeline names are lower-case letters, digits, '_' and '-'", where="pipelines")
        )
    cleaned_branches = _check_list(branches, "branches", problems, limit=MAX_FILTERS)
    if problems:
        raise InvalidInput(problems)
    return {
        "name": name,
        "kind": kind,
        "url": url if kind != Kind.EMAIL else "",
        "emails": cleaned_emails if kind == Kind.EMAIL else [],
        "events": cleaned_events,
        "pipelines": cleaned_pipelines,
        "branches": cleaned_branches,
    }


def _audit_detail(target: NotificationTarget) -> str:
    where = display_url(target.kind, target.url) or f"{len(target.emails)} address(es)"
    return (
        f"kind={target.kind} to={where} events={','.join(target.events)} "
        f"enabled={target.enabled} signed={bool(target.secret_encrypted)}"
    )


def create_target(
    *,
    user: Any,
    project: Project,
    name: str,
    kind: str,
    url: str = "",
    emails: Any = None,
    secret: str | None = None,
    events: Any = None,
    pipelines: Any = None,
    branches: Any = None,
    enabled: bool = True,
) -> NotificationTarget:
    _require_maintainer(user, project)
    fields = check_target(
        project=project,
        name=name,
        kind=kind,
        url=url,
        emails=[] if emails is None else emails,
        secret=secret,
        events=[] if events is None else events,
        pipelines=[] if pipelines is None else pipelines,
        branches=[] if branches is None else branches,
    )
    with transaction.atomic():
        target: NotificationTarget = NotificationTarget.objects.create(
            project=project,
            secret_encrypted=crypto.encrypt(secret) if secret else "",
            enabled=enabled,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            **fields,
        )
        record_action(
            actor=user,
            project=project,
            action="notification.create",
            target=target.name,
            detail=_audit_detail(target),
        )
    return target


def update_target(*, user: Any, target: NotificationTarget, **changes: Any) -> NotificationTarget:
    """Change the fields given (absent or None: kept). `secret=""` removes the secret."""
    _require_maintainer(user, target.project)
    current = {
        "name": target.name,
        "kind": target.kind,
        "url": target.url,
        "emails": target.emails,
        "events": target.events,
        "pipelines": target.pipelines,
        "branches": target.branches,
    }
    given = {k: v for k, v in changes.items() if v is not None}
    kind = given.get("kind", target.kind)
    if kind != target.kind:  # switching kinds starts from an empty address
        current["url"], current["emails"] = "", []
    secret = given.get("secret")
    fields = check_target(
        project=target.project,
        secret=secret,
        exclude_id=target.id,
        **{**current, **{k: v for k, v in given.items() if k in current}},
    )
    with transaction.atomic():
        for key, value in fields.items():
            setattr(target, key, value)
        if "enabled" in given:
            target.enabled = bool(given["enabled"])
        if secret is not None:
            target.secret_encrypted = crypto.encrypt(secret) if secret else ""
        if target.kind != Kind.WEBHOOK:
            target.secret_encrypted = ""
        target.save()
        record_action(
            actor=user,
            project=target.project,
            action="notification.update",
            target=target.name,
            detail=_audit_detail(target),
        )
    return target


def delete_target(*, user: Any, target: NotificationTarget) -> None:
    _require_maintainer(user, target.project)
    with transaction.atomic():
        record_action(
            actor=user,
            project=target.project,
            action="notification.delete",
            target=target.name,
            detail=_audit_detail(target),
        )
        target.delete()


def send_test(*, user: Any, target: NotificationTarget) -> Delivery:
    """A `test` message to the target now (queued as any delivery), enabled or not."""
    _require_maintainer(user, target.project)
    payload = {
        "event": "test",
        "project": target.project.slug,
        "message": f"Test message from Buildsite for notification target '{target.name}'.",
    }
    with transaction.atomic():
        delivery: Delivery = Delivery.objects.create(
            target=target, uid=str(uuid.uuid4()), event_name="test", payload=payload
        )
        record_action(
            actor=user,
            project=target.project,
            action="notification.test",
            target=target.name,
            detail=f"kind={target.kind} delivery={delivery.uid}",
        )
        enqueue_deliveries([delivery.id])
    return delivery


def redeliver(*, user: Any, delivery: Delivery) -> Delivery:
    """A new delivery (new id, attempts from zero) of the same payload: the log keeps
    what happened to the first one, and a receiver can tell the two apart."""
    target = delivery.target
    _require_maintainer(user, target.project)
    if delivery.state in (State.PENDING, State.DELIVERING):
        raise Conflict(
            f"delivery #{delivery.id} is still {delivery.state}: wait for it to end",
            state=delivery.state,
        )
    with transaction.atomic():
        copy: Delivery = Delivery.objects.create(
            target=target,
            uid=str(uuid.uuid4()),
            event_name=delivery.event_name,
            payload=delivery.payload,
            redelivery_of=delivery,
        )
        record_action(
            actor=user,
            project=target.project,
            action="notification.redeliver",
            target=target.name,
            detail=f"event={delivery.event_name} of={delivery.uid} new={copy.uid}",
        )
        enqueue_deliveries([copy.id])
    return copy


def enqueue_deliveries(delivery_ids: Sequence[int]) -> None:
    """One job per delivery: written in the caller's transaction where jobs are rows
    (so a job exists exactly when its delivery does), after commit where they run inline."""
    from django_q.tasks import async_task

    from builds.dispatch import jobs_are_transactional

    def send() -> None:
        for delivery_id in delivery_ids:
            async_task(DELIVER_JOB, delivery_id, task_name=f"notify-{delivery_id}", save=False)

    if not delivery_ids:
        return
    if jobs_are_transactional():
        send()
    else:
        transaction.on_commit(send)
