"""PostgreSQL full-text search: the generated `vector` column of docs_engine_searchentry
(GIN-indexed), ts_rank_cd for ranking and ts_headline for snippets.

The inner query ranks and cuts to the page; ts_headline runs in the outer query, so only
the rows shown pay for it.
"""

from __future__ import annotations

from django.db import connection

from . import MAX_OFFSET, Filters, Hit, filter_sql
from .query import MARK_END, MARK_START, Term, marked_to_html, to_tsquery

TAG_SQL = "d.tags @> jsonb_build_array(%s::text)"
HEADLINE_OPTIONS = (
    f'StartSel="{MARK_START}", StopSel="{MARK_END}", MaxWords=30, MinWords=12, '
    'MaxFragments=2, FragmentDelimiter=" … "'
)
TITLE_OPTIONS = f'StartSel="{MARK_START}", StopSel="{MARK_END}", HighlightAll=true'


def search(
    *, project_id: int, terms: list[Term], filters: Filters, limit: int, offset: int
) -> list[Hit]:
    offset = min(offset, MAX_OFFSET)
    expression = to_tsquery(terms)
    if expression is None:
        return []
    where, params = filter_sql(filters, tag_sql=TAG_SQL)
    sql = f"""
        WITH q AS (SELECT to_tsquery('english', %s) AS query),
        page AS (
            SELECT d.id, d.path, d.title, d.tags, d.updated_at,
                   ts_rank_cd(s.vector, q.query) AS score, s.body AS body, q.query AS query
            FROM docs_engine_searchentry s
            JOIN docs_engine_document d ON d.id = s.document_id, q
            WHERE s.vector @@ q.query AND d.project_id = %s AND d.deleted_at IS NULL{where}
            ORDER BY score DESC, d.path LIMIT %s OFFSET %s
        )
        SELECT id, path, title, tags, updated_at, score,
               ts_headline('english', title, query, %s),
               ts_headline('english', body, query, %s)
        FROM page ORDER BY score DESC, path"""
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [expression, project_id, *params, limit, offset, TITLE_OPTIONS, HEADLINE_OPTIONS],
        )
        rows = cursor.fetchall()
    return [
        Hit(
            document_id=doc_id,
            path=path,
            title=title,
            title_html=marked_to_html(title_marked),
            snippet=marked_to_html(snippet),
            rank=float(score),
            updated_at=updated_at,
            tags=tags if isinstance(tags, list) else [],
        )
        for doc_id, path, title, tags, updated_at, score, title_marked, snippet in rows
    ]
