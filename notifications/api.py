"""Notifications API: targets and their delivery log, maintainers only (a target decides
where the server sends project data; receivers' answers may be sensitive)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status

from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors, services
from .models import Delivery, NotificationTarget

PREFIX = "/projects"
router = Router(tags=["notifications"])


class TargetIn(Schema):
    name: str
    kind: str
    url: str = ""
    emails: list[str] = []
    secret: str | None = None
    events: list[str]
    pipelines: list[str] = []
    branches: list[str] = []
    enabled: bool = True


class TargetPatch(Schema):
    name: str | None = None
    kind: str | None = None
    url: str | None = None
    emails: list[str] | None = None
    secret: str | None = None  # "" removes it
    events: list[str] | None = None
    pipelines: list[str] | None = None
    branches: list[str] | None = None
    enabled: bool | None = None


class TargetOut(Schema):
    id: int
    name: str
    kind: str
    url: str  # without a query string; a Slack URL shows its host only
    emails: list[str]
    has_secret: bool
    events: list[str]
    pipelines: list[str]
    branches: list[str]
    enabled: bool
    created_at: datetime


class DeliveryOut(Schema):
    id: int
    delivery: str
    event: str
    state: str
    attempts: int
    response_code: int | None
    response_excerpt: str
    error: str
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    redelivery_of: int | None


def target_out(target: NotificationTarget) -> dict[str, Any]:
    return {
        "id": target.id,
        "name": target.name,
        "kind": target.kind,
        "url": services.display_url(target.kind, target.url),
        "emails": target.emails,
        "has_secret": bool(target.secret_encrypted),
        "events": target.events,
        "pipelines": target.pipelines,
        "branches": target.branches,
        "enabled": target.enabled,
        "created_at": target.created_at,
    }


def delivery_out(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "delivery": delivery.uid,
        "event": delivery.event_name,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "response_code": delivery.response_code,
        "response_excerpt": delivery.response_excerpt,
        "error": delivery.error,
        "created_at": delivery.created_at,
        "last_attempt_at": delivery.last_attempt_at,
        "next_attempt_at": delivery.next_attempt_at,
        "delivered_at": delivery.delivered_at,
        "redelivery_of": delivery.redelivery_of_id,
    }


def _target(request: HttpRequest, slug: str, target_id: int) -> NotificationTarget:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    return selectors.get_target(project=project, target_id=target_id)


@router.post("/{slug}/notifications", response={201: TargetOut})
def create_target(request: HttpRequest, slug: str, body: TargetIn) -> Status[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    target = services.create_target(user=request.user, project=project, **body.dict())
    return Status(201, target_out(target))


@router.get("/{slug}/notifications", response=list[TargetOut])
def list_targets(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    return [target_out(t) for t in selectors.targets_of(project=project)]


@router.get("/{slug}/notifications/{int:target_id}", response=TargetOut)
def get_target(request: HttpRequest, slug: str, target_id: int) -> dict[str, Any]:
    return target_out(_target(request, slug, target_id))


@router.patch("/{slug}/notifications/{int:target_id}", response=TargetOut)
def update_target(
    request: HttpRequest, slug: str, target_id: int, body: TargetPatch
) -> dict[str, Any]:
    target = _target(request, slug, target_id)
    changes = body.dict(exclude_unset=True)
    return target_out(services.update_target(user=request.user, target=target, **changes))


@router.delete("/{slug}/notifications/{int:target_id}", response={204: None})
def delete_target(request: HttpRequest, slug: str, target_id: int) -> Status[None]:
    services.delete_target(user=request.user, target=_target(request, slug, target_id))
    return Status(204, None)


@router.post("/{slug}/notifications/{int:target_id}/test", response={202: DeliveryOut})
def send_test(request: HttpRequest, slug: str, target_id: int) -> Status[dict[str, Any]]:
    target = _target(request, slug, target_id)
    delivery = services.send_test(user=request.user, target=target)
    delivery.refresh_from_db()  # inline workers may have sent it already
    return Status(202, delivery_out(delivery))


@router.get("/{slug}/notifications/{int:target_id}/deliveries", response=list[DeliveryOut])
def list_deliveries(request: HttpRequest, slug: str, target_id: int) -> list[dict[str, Any]]:
    target = _target(request, slug, target_id)
    return [delivery_out(d) for d in selectors.deliveries_of(target=target)]


@router.post(
    "/{slug}/notifications/{int:target_id}/deliveries/{int:delivery_id}/redeliver",
    response={202: DeliveryOut},
)
def redeliver(
    request: HttpRequest, slug: str, target_id: int, delivery_id: int
) -> Status[dict[str, Any]]:
    target = _target(request, slug, target_id)
    delivery = selectors.get_delivery(target=target, delivery_id=delivery_id)
    copy = services.redeliver(user=request.user, delivery=delivery)
    copy.refresh_from_db()
    return Status(202, delivery_out(copy))
