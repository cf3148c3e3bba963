"""Full-text search: one API, a backend per database (FTS5 on SQLite, tsvector on
PostgreSQL). Both read the same SearchEntry rows the services write."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection


@dataclass(frozen=True)
class Filters:
    tag: str | None = None
    path_prefix: str | None = None
    author_id: int | None = None
    since: datetime | None = None


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
        prefix = filters.path_prefix.strip("/")
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("(d.path = %s OR d.path LIKE %s ESCAPE '\\')")
        params.extend([prefix, escaped + "/%"])
    if filters.author_id is not None:
        clauses.append("d.updated_by_id = %s")
        params.append(filters.author_id)
    if filters.since is not None:
        clauses.append("d.updated_at >= %s")
        params.append(filters.since)
    return "".join(f" AND {c}" for c in clauses), params
