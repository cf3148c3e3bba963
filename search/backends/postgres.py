"""PostgreSQL full text: the generated, GIN-indexed `vector` column of each table,
ts_rank_cd for ranking, ts_headline for the page's titles and snippets only (the inner
query ranks and cuts to the page), as docs_engine/search/postgres.py does."""

from __future__ import annotations

from django.db import connection

from docs_engine.search import MAX_OFFSET
from docs_engine.search.postgres import HEADLINE_OPTIONS, TITLE_OPTIONS
from docs_engine.search.query import Term, marked_to_html, to_tsquery

from . import Match, Source


def search(
    *, source: Source, project_id: int, terms: list[Term], limit: int, offset: int
) -> list[Match]:
    expression = to_tsquery(terms)
    if expression is None:
        return []
    inner = "".join(f", c.{f}" for f in source.fields)
    outer = "".join(f", {f}" for f in source.fields)
    sql = f"""
        WITH q AS (SELECT to_tsquery('english', %s) AS query),
        page AS (
            SELECT c.{source.key} AS key, c.title, c.body, q.query AS query,
                   ts_rank_cd(c.vector, q.query) AS score{inner}
            FROM {source.table} c {source.join}, q
            WHERE c.vector @@ q.query AND c.project_id = %s{source.where}
            ORDER BY score DESC, c.{source.key} DESC LIMIT %s OFFSET %s
        )
        SELECT key, title, score, ts_headline('english', title, query, %s),
               ts_headline('english', body, query, %s){outer}
        FROM page ORDER BY score DESC, key DESC"""
    params = [expression, project_id, limit, min(offset, MAX_OFFSET)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, TITLE_OPTIONS, HEADLINE_OPTIONS])
        rows = cursor.fetchall()
    return [
        Match(
            key=key,
            title=title,
            title_html=marked_to_html(title_marked),
            snippet=marked_to_html(snippet),
            rank=float(score),
            fields=tuple(fields),
        )
        for key, title, score, title_marked, snippet, *fields in rows
    ]
