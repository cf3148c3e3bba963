"""SQLite FTS5 (`<table>_fts`, external-content tables over this app's tables).

As docs_engine/search/sqlite.py explains: ranking costs about a microsecond per match
and counting is nearly free, so a word found in more than FULL_RANK_LIMIT rows ranks
only the RANKED_CANDIDATES newest (highest rowid: FTS5 walks its doclists in that order
and stops), unless the project filter leaves fewer than a page of them. Snippets are
made in a second query, for the page only."""

from __future__ import annotations

from typing import Any

from django.db import connection

from docs_engine.search import MAX_OFFSET
from docs_engine.search.query import MARK_END, MARK_START, Term, marked_to_html, to_fts5

from . import Match, Source

FULL_RANK_LIMIT = 10_000
RANKED_CANDIDATES = 4_000


def _sql(source: Source, candidates: bool) -> str:
    fts = f"{source.table}_fts"
    rank = f"bm25({fts}, 5.0, 1.0)"
    fields = "".join(f", c.{f}" for f in source.fields)
    newest = f" ORDER BY rowid DESC LIMIT {RANKED_CANDIDATES}" if candidates else ""
    found = f"(SELECT rowid AS id, {rank} AS score FROM {fts} WHERE {fts} MATCH %s{newest}) AS m"
    where = f"WHERE c.project_id = %s{source.where}"
    return (
        f"SELECT c.{source.key}, c.title, m.score{fields} FROM {found}"
        f" JOIN {source.table} c ON c.{source.key} = m.id {source.join} {where}"
        f" ORDER BY m.score, c.{source.key} DESC LIMIT %s OFFSET %s"
    )


def search(
    *, source: Source, project_id: int, terms: list[Term], limit: int, offset: int
) -> list[Match]:
    expression = to_fts5(terms)
    if expression is None:
        return []
    fts = f"{source.table}_fts"
    params = [expression, project_id, limit, min(offset, MAX_OFFSET)]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {fts} WHERE {fts} MATCH %s", [expression])
        rows: list[tuple[Any, ...]] = []
        if cursor.fetchone()[0] > FULL_RANK_LIMIT:
            cursor.execute(_sql(source, candidates=True), params)
            rows = cursor.fetchall()
        if len(rows) < limit:  # selective enough (or the candidates were filtered away)
            cursor.execute(_sql(source, candidates=False), params)
            rows = cursor.fetchall()
        if not rows:
            return []
        keys = [row[0] for row in rows]
        marks = ", ".join("%s" for _ in keys)
        cursor.execute(
            f"""SELECT rowid, highlight({fts}, 0, %s, %s), snippet({fts}, 1, %s, %s, '…', 24)
                FROM {fts} WHERE {fts} MATCH %s AND rowid IN ({marks})""",
            [MARK_START, MARK_END, MARK_START, MARK_END, expression, *keys],
        )
        snippets = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
    matches = []
    for key, title, score, *fields in rows:
        title_marked, snippet = snippets.get(key, (title, ""))
        matches.append(
            Match(
                key=key,
                title=title,
                title_html=marked_to_html(title_marked),
                snippet=marked_to_html(snippet),
                rank=-float(score),
                fields=tuple(fields),
            )
        )
    return matches
