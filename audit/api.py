"""The audit log API, GET /api/projects/{slug}/audit: maintainers only, read-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema

from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors

PREFIX = "/projects"
router = Router(tags=["audit"])


class AuditFilters(Schema):
    actor: str | None = None
    action: str | None = None
    since: str | None = None
    limit: int = 50
    offset: int = 0


class AuditEntryOut(Schema):
    id: int
    time: datetime
    actor: str
    action: str
    target: str
    detail: str


class AuditPage(Schema):
    items: list[AuditEntryOut]
    count: int


@router.get("/{slug}/audit", response=AuditPage)
def audit_log(request: HttpRequest, slug: str, filters: Query[AuditFilters]) -> dict[str, Any]:
    """Who changed what in the project, newest first. `actor`: an entry's actor exactly
    or a username; `action`: exact (`build.cancel`) or a prefix ending in `.` or `*`
    (`build.*`); `since`: ISO 8601; `limit` 1-500, `offset` from 0; `count` is the number
    of entries matching the filters."""
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    rows, count = selectors.audit_entries(
        project=project,
        actor=filters.actor,
        action=filters.action,
        since=filters.since,
        limit=filters.limit,
        offset=filters.offset,
    )
    items = [
        {
            "id": e.id,
            "time": e.time,
            "actor": e.actor_name,
            "action": e.action,
            "target": e.target,
            "detail": e.detail,
        }
        for e in rows
    ]
    return {"items": items, "count": count}
