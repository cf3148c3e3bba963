"""Reading the audit log: one project's entries, newest first, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from buildsite.errors import InvalidInput, Problem
from buildsite.models import Project

from .models import AuditEntry

MAX_LIMIT = 500
MAX_OFFSET = 2**31


def parse_since(since: str | datetime | None) -> datetime | None:
    """An ISO 8601 date and time (`2026-11-30T12:00:00Z`, or a bare date for its
    midnight); a time without a zone is read in the server's zone (UTC by default)."""
    if since is None or isinstance(since, datetime):
        moment = since
    else:
        text = since.strip()
        if not text:
            return None
        try:
            moment = parse_datetime(text if "T" in text or " " in text else f"{text}T00:00:00")
        except ValueError:
            moment = None
        if moment is None:
            raise InvalidInput(
                [Problem("an ISO 8601 date and time, such as 2026-11-30T12:00:00Z", where="since")]
            )
    try:
        if moment is not None and timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        if moment is not None:
            moment.astimezone(UTC)  # what the database is given: years 1 to 9999 in UTC
    except OverflowError:
        raise InvalidInput(
            [Problem("a date and time between the years 1 and 9999 in UTC", where="since")]
        ) from None
    return moment


def _page_problems(limit: Any, offset: Any) -> list[Problem]:
    problems = []
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        problems.append(Problem(f"between 1 and {MAX_LIMIT}", where="limit"))
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        problems.append(Problem(f"between 0 and {MAX_OFFSET}", where="offset"))
    return problems


def _action_filter(action: str) -> Q:
    """`build.cancel` is that action exactly; `build.` and `build.*` are every action
    whose name starts with `build.` (the dot keeps `builds.x` out of `build.`)."""
    if action.endswith("*"):
        action = action[:-1]
        if not action.endswith("."):
            action += "."
    if action.endswith("."):
        return Q(action__startswith=action)
    return Q(action=action)


def audit_entries(
    *,
    project: Project,
    actor: str | None = None,
    action: str | None = None,
    since: str | datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """(entries, how many match) of `project`, newest first. The caller has checked the
    role (maintainers: `get_project(role=Role.MAINTAINER)`).

    `actor` is an entry's name exactly (`alice (token bst_abcd…)`, `(server)`) or the
    account's username, so `alice` finds her entries made in a browser and with tokens."""
    problems = _page_problems(limit, offset)
    for where, text in (("actor", actor), ("action", action), ("since", since)):
        # PostgreSQL refuses NUL in a query parameter (a 500); no entry holds one anyway.
        if isinstance(text, str) and "\x00" in text:
            problems.append(Problem("a NUL character (\\u0000) is not allowed", where=where))
    moment = None
    if not any(p.where == "since" for p in problems):
        try:
            moment = parse_since(since)
        except InvalidInput as exc:
            problems += exc.problems
    if problems:
        raise InvalidInput(problems)
    rows: QuerySet[AuditEntry] = AuditEntry.objects.filter(project=project)
    if actor := (actor or "").strip():
        rows = rows.filter(Q(actor_name=actor) | Q(actor__username=actor))
    if action := (action or "").strip():
        rows = rows.filter(_action_filter(action))
    if moment is not None:
        rows = rows.filter(time__gte=moment)
    count = rows.count()
    page = list(rows.order_by("-id")[offset : offset + limit])
    return page, count
