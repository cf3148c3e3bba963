"""Full-text search: one API, a backend per database (FTS5 on SQLite, tsvector on
PostgreSQL). Both read the same SearchEntry rows the services write."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Q

# Past any real number of documents. The databases take OFFSET as a signed 64-bit
# integer (beyond it SQLite's driver raises OverflowError: a 500), so a larger `offset`
# is clamped to this and simply finds nothing.
MAX_OFFSET = 2**31 - 1


@dataclass(frozen=True)
class Filters:
    tag: str | None = None
    path_prefix: str | None = None
    author_id: int | None = None
    since: datetime | None = None


def within(prefix: str) -> tuple[str, str]:
    """The path-prefix rule: a document is within `prefix` when its path is the prefix
    or starts with the prefix and a slash. Returns the exact path and the LIKE pattern
    (escaped with backslash) that select it."""
    exact = prefix.strip("/")
    escaped = exact.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return exact, escaped + "/%"


def within_q(prefix: str) -> Q:
    """`within` for the ORM (pages and the no-words listing)."""
    exact, _ = within(prefix)
    return Q(path=exact) | Q(path__startswith=exact + "/")


@dataclass
class Hit:
    document_id: int
    path: str
    title: str
    title_html: str
    snippet: str
    rank: float
    updated_at: datetime | None = None
    tags: list[str] = field(default_factory=list)


def backend():
    if connection.vendor == "postgresql":
        from . import postgres

        return postgres
    from . import sqlite

    return sqlite


def filter_sql(filters: Filters, *, tag_sql: str) -> tuple[str, list]:
    """WHERE fragments over `d` (docs_engine_document) shared by both backends."""
    clauses: list[str] = []
    params: list = []
    if filters.tag:
        clauses.append(tag_sql)
        params.append(filters.tag)
    if filters.path_prefix:
        clauses.append("(d.path = %s OR d.path LIKE %s ESCAPE '\\')")
        params.extend(within(filters.path_prefix))
    if filters.author_id is not None:
        clauses.append("d.updated_by_id = %s")
        params.append(filters.author_id)
    if filters.since is not None:
        clauses.append("d.updated_at >= %s")
        params.append(filters.since)
    return "".join(f" AND {c}" for c in clauses), params
