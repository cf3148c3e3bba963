"""SQLite FTS5 search (docs_engine_fts, an external-content table over SearchEntry).

Ranking (bm25, title weighted over tags over body) costs about a microsecond per matching
document, while counting the matches is nearly free. So:

- up to FULL_RANK_LIMIT matches, every match is ranked: exact;
- above it (a word found in most documents), the RANKED_CANDIDATES newest matches
  (highest rowid = document id, FTS5 walks its doclists in that order and stops) are
  ranked instead - unless the filters leave fewer than a page of them, in which case
  everything is ranked after all. A query that broad has no meaningful "best" document
  anyway; this keeps it as fast as a selective one.

Snippets are built in a second query for the page only, because FTS5 would otherwise
build one for every match before sorting.
"""

from __future__ import annotations

import json
from datetime import UTC

from django.db import connection
from django.utils.dateparse import parse_datetime

from . import MAX_OFFSET, Filters, Hit, filter_sql
from .query import MARK_END, MARK_START, Term, marked_to_html, to_fts5

TAG_SQL = "EXISTS (SELECT 1 FROM json_each(d.tags) WHERE json_each.value = %s)"
RANK = "bm25(docs_engine_fts, 10.0, 1.0, 5.0)"
FULL_RANK_LIMIT = 10_000
RANKED_CANDIDATES = 4_000
FULL_SQL = """
    SELECT d.id, d.path, d.title, d.tags, d.updated_at, {rank} AS score
    FROM docs_engine_fts JOIN docs_engine_document d ON d.id = docs_engine_fts.rowid
    WHERE docs_engine_fts MATCH %s AND d.project_id = %s AND d.deleted_at IS NULL{where}
    ORDER BY score, d.path LIMIT %s OFFSET %s"""
CANDIDATES_SQL = (
    """
    SELECT d.id, d.path, d.title, d.tags, d.updated_at, c.score
    FROM (SELECT rowid AS id, {rank} AS score FROM docs_engine_fts
          WHERE docs_engine_fts MATCH %s ORDER BY rowid DESC LIMIT """
    + str(RANKED_CANDIDATES)
    + """) AS c
    JOIN docs_engine_document d ON d.id = c.id
    WHERE d.project_id = %s AND d.deleted_at IS NULL{where}
    ORDER BY c.score, d.path LIMIT %s OFFSET %s"""
)


def search(
    *, project_id: int, terms: list[Term], filters: Filters, limit: int, offset: int
) -> list[Hit]:
    offset = min(offset, MAX_OFFSET)
    expression = to_fts5(terms)
    if expression is None:
        return []
    where, params = filter_sql(filters, tag_sql=TAG_SQL)
    filtered = [expression, project_id, *params, limit, offset]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM docs_engine_fts WHERE docs_engine_fts MATCH %s", [expression]
        )
        matches = cursor.fetchone()[0]
        rows = []
        if matches > FULL_RANK_LIMIT:
            cursor.execute(CANDIDATES_SQL.format(rank=RANK, where=where), filtered)
            rows = cursor.fetchall()
        if len(rows) < limit:  # selective enough (or the candidates were filtered away)
            cursor.execute(FULL_SQL.format(rank=RANK, where=where), filtered)
            rows = cursor.fetchall()
        if not rows:
            return []
        ids = [row[0] for row in rows]
        marks = ", ".join("%s" for _ in ids)
        cursor.execute(
            f"""SELECT rowid,
                    highlight(docs_engine_fts, 0, %s, %s),
                    snippet(docs_engine_fts, 1, %s, %s, '…', 24)
                FROM docs_engine_fts WHERE docs_engine_fts MATCH %s AND rowid IN ({marks})""",
            [MARK_START, MARK_END, MARK_START, MARK_END, expression, *ids],
        )
        snippets = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
    hits = []
    for doc_id, path, title, tags, updated_at, score in rows:
        title_marked, snippet = snippets.get(doc_id, (title, ""))
        hits.append(
            Hit(
                document_id=doc_id,
                path=path,
                title=title,
                title_html=marked_to_html(title_marked),
                snippet=marked_to_html(snippet),
                rank=-float(score),
                updated_at=_as_datetime(updated_at),
                tags=json.loads(tags) if isinstance(tags, str) else list(tags or []),
            )
        )
    return hits


def _as_datetime(value):
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
