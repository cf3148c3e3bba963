"""One delivery attempt (the django-q2 job `notifications.jobs.deliver`): send, record
the answer, and schedule the next attempt with exponential backoff on 5xx and timeouts."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from buildsite import crypto
from prompts.services import private_urls_allowed

from . import payloads, selectors, sending
from .models import Delivery
from .services import (
    Kind,
    State,
    backoff_seconds,
    max_attempts,
    timeout_seconds,
)

log = logging.getLogger(__name__)


def deliver(*, delivery_id: int) -> str:
    """Try a delivery once; returns its state afterwards (or "skipped")."""
    now = timezone.now()
    claimed = (
        Delivery.objects.filter(id=delivery_id, state=State.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(
            state=State.DELIVERING,
            attempts=F("attempts") + 1,
            last_attempt_at=now,
            next_attempt_at=None,
        )
    )
    if not claimed:
        return "skipped"  # a duplicate job, or a retry that is not due yet
    delivery = Delivery.objects.select_related("target__project").get(id=delivery_id)
    try:
        attempt = _attempt(delivery)
    except Exception as exc:  # a bug or an unreadable secret must not leave it DELIVERING
        log.warning("delivery %s failed: %s", delivery.uid, type(exc).__name__, exc_info=True)
        attempt = sending.Attempt(ok=False, retry=False, error=f"cannot send: {exc}"[:500])
    return _record(delivery, attempt)


def _attempt(delivery: Delivery) -> sending.Attempt:
    target = delivery.target
    if not target.enabled and delivery.event_name != "test":
        # Disabling a target stops what is still queued or retrying for it, too.
        return sending.Attempt(ok=False, retry=False, error="the target is disabled")
    sent_at = timezone.now().isoformat()
    if target.kind == Kind.EMAIL:
        subject, text, html = email_message(delivery.payload)
        return sending.send_email(
            to=list(target.emails), subject=subject, text=text, html=html, timeout=timeout_seconds()
        )
    if target.kind == Kind.SLACK:
        body = payloads.json_bytes(payloads.slack_message(delivery.payload))
        headers: dict[str, str] = {}
    else:
        body = payloads.body_of(delivery.payload, sent_at=sent_at, delivery=delivery.uid)
        headers = {
            payloads.EVENT_HEADER: delivery.event_name,
            payloads.DELIVERY_HEADER: delivery.uid,
        }
        if target.secret_encrypted:
            headers[payloads.SIGNATURE_HEADER] = payloads.signature(
                crypto.decrypt(target.secret_encrypted), body
            )
    return sending.post(
        target.url,
        body,
        headers,
        timeout=timeout_seconds(),
        allow_private=private_urls_allowed(),
    )


def _record(delivery: Delivery, attempt: sending.Attempt) -> str:
    now = timezone.now()
    fields: dict[str, Any] = {
        "response_code": attempt.code,
        "response_excerpt": attempt.excerpt[: sending.EXCERPT_CHARS],
        "error": attempt.error[:500],
    }
    if attempt.ok:
        fields.update(state=State.SUCCEEDED, delivered_at=now)
    elif attempt.retry and delivery.attempts < max_attempts():
        fields.update(
            state=State.PENDING,
            next_attempt_at=now + timedelta(seconds=backoff_seconds(delivery.attempts)),
        )
    else:
        fields.update(state=State.FAILED)
    Delivery.objects.filter(id=delivery.id, state=State.DELIVERING).update(**fields)
    return str(fields["state"])


def email_message(payload: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of an email, from Django templates. The failed tasks'
    last log lines are read now (they are not part of the webhook payload)."""
    line, url = payloads.summary(payload)
    build = payload.get("build") or {}
    logs = selectors.failed_task_logs(int(build["id"])) if build.get("failed_tasks") else []
    context = {"summary": line, "url": url, "payload": payload, "build": build, "logs": logs}
    text = render_to_string("notifications/email.txt", context)
    html = render_to_string("notifications/email.html", context)
    return line, text, html
