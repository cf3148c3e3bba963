"""Full-text search over this app's tables: one API, a backend per database (FTS5 on
SQLite, tsvector on PostgreSQL), like docs_engine/search. Every indexed table has a
`title` and a `body` and a `project_id`; a `Source` names the rest."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from django.db import connection


@dataclass(frozen=True)
class Source:
    table: str
    key: str  # the primary key: the FTS5 rowid
    fields: tuple[str, ...]  # more columns of `table` the caller wants back
    join: str = ""
    where: str = ""


LOGS = Source(
    "search_logchunk",
    "id",
    ("build_id", "task_name", "attempt", "created_at"),
    # Retention removes a build's logs at once; the sweep removes the chunks later.
    join="JOIN builds_build b ON b.id = c.build_id",
    where=" AND NOT b.files_purged",
)
PROMPTS = Source("search_promptentry", "prompt_id", ("version_number", "updated_at"))
RUNS = Source("search_runentry", "run_id", ("created_at",))


@dataclass
class Match:
    key: int
    title: str
    title_html: str
    snippet: str
    rank: float  # higher is better
    fields: tuple[Any, ...]


def backend() -> ModuleType:
    if connection.vendor == "postgresql":
        from . import postgres

        return postgres
    from . import sqlite

    return sqlite
