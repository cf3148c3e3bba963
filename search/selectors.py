"""One search over a project: documents, task logs, prompt templates, prompt runs.

Each kind is ranked by its own index; a search of several kinds merges their lists by
reciprocal rank (each result scores 1 / (RRF_K + its place in its own list)), because
scores of different indexes are not comparable while places are. The documents'
filters (tag, prefix, author, since) only narrow the documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from django.db import DatabaseError, transaction
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from buildsite.errors import InvalidInput, Problem
from buildsite.models import Project
from docs_engine.search.query import parse_query
from docs_engine.selectors import search_documents

from . import backends
from .backends import Match, Source

KINDS = ("docs", "logs", "prompts", "runs")  # what `in` names, in the order pages show
KIND_NAMES = {"docs": "doc", "logs": "log", "prompts": "prompt", "runs": "run"}
MAX_LIMIT = 100
# A merged search ranks `offset + limit` results of every kind: bounded.
MAX_MERGED_WINDOW = 1_000
RRF_K = 60


@dataclass
class Result:
    kind: str  # "doc", "log", "prompt" or "run"
    title: str
    title_html: str  # HTML-escaped, matches in <mark>
    snippet: str  # the same
    rank: float  # the kind's own score: higher is better
    url: str
    updated_at: datetime | None = None
    path: str | None = None  # doc
    tags: list[str] = field(default_factory=list)  # doc
    build: int | None = None  # log
    task: str | None = None  # log
    attempt: int | None = None  # log
    prompt: str | None = None  # prompt, run
    version: int | None = None  # prompt
    run: int | None = None  # run


def parse_kinds(value: str | None) -> tuple[str, ...]:
    """`in`: a comma-separated subset of KINDS (default: docs); order and repeats do
    not matter. Anything else is refused, naming the value."""
    names = [n.strip().lower() for n in (value or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:40] + "…"
        raise InvalidInput(
            [Problem(f"unknown kind '{shown}': use any of {', '.join(KINDS)}", where="in")]
        )
    return tuple(k for k in KINDS if k in names) or ("docs",)


def search(
    *,
    project: Project,
    q: str = "",
    kinds: tuple[str, ...] = ("docs",),
    tag: str | None = None,
    prefix: str | None = None,
    author: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[Result]:
    """Ranked, highlighted results of `kinds`. Documents alone behave exactly as the
    document search always did (no words: the documents the filters select)."""
    limit = max(1, min(limit, MAX_LIMIT))
    offset = max(0, offset)
    filters: dict[str, Any] = {"tag": tag, "prefix": prefix, "author": author, "since": since}
    if len(kinds) == 1:
        return _search_kind(project, kinds[0], q, filters, limit, offset)
    if offset + limit > MAX_MERGED_WINDOW:
        raise InvalidInput(
            [
                Problem(
                    f"offset + limit may be at most {MAX_MERGED_WINDOW} when searching"
                    " more than one kind",
                    where="offset",
                )
            ]
        )
    lists = [_search_kind(project, kind, q, filters, offset + limit, 0) for kind in kinds]
    scored = [
        (1.0 / (RRF_K + place), order, place, result)
        for order, results in enumerate(lists)
        for place, result in enumerate(results, start=1)
    ]
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    return [s[3] for s in scored[offset : offset + limit]]


def _search_kind(
    project: Project, kind: str, q: str, filters: dict[str, Any], limit: int, offset: int
) -> list[Result]:
    if kind == "docs":
        hits = search_documents(project=project, q=q, limit=limit, offset=offset, **filters)
        return [_doc(project, hit) for hit in hits]
    terms = parse_query(q)
    if not terms:
        return []  # no listing without words: there is no "newest log" to show
    source = {"logs": backends.LOGS, "prompts": backends.PROMPTS, "runs": backends.RUNS}[kind]
    matches = _matches(source, project, terms, limit, offset)
    shape = {"logs": _log, "prompts": _prompt, "runs": _run}[kind]
    return [shape(project, m) for m in matches]


def _matches(
    source: Source, project: Project, terms: list[Any], limit: int, offset: int
) -> list[Match]:
    try:
        # A savepoint: on PostgreSQL a failed statement must not poison the request.
        with transaction.atomic():
            found: list[Match] = backends.backend().search(
                source=source, project_id=project.id, terms=terms, limit=limit, offset=offset
            )
            return found
    except DatabaseError:
        # The query builder only emits well-formed expressions; this is the last guard
        # against an input the database still refuses (never a 500 for a search box).
        return []


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):  # SQLite hands raw SQL text back
        value = parse_datetime(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value if isinstance(value, datetime) else None


def _doc(project: Project, hit: Any) -> Result:
    return Result(
        kind="doc",
        title=hit.title,
        title_html=hit.title_html,
        snippet=hit.snippet,
        rank=hit.rank,
        url=reverse("docs-reader", kwargs={"slug": project.slug, "path": hit.path}),
        updated_at=hit.updated_at,
        path=hit.path,
        tags=list(hit.tags),
    )


def _log(project: Project, m: Match) -> Result:
    build_id, task_name, attempt, created_at = m.fields
    url = reverse("build", kwargs={"build_id": build_id}) + "?task=" + quote(task_name, safe="")
    return Result(
        kind="log", title=m.title, title_html=m.title_html, snippet=m.snippet, rank=m.rank,
        url=url, updated_at=_as_datetime(created_at), build=build_id, task=task_name,
        attempt=attempt,
    )  # fmt: skip


def _prompt(project: Project, m: Match) -> Result:
    version, updated_at = m.fields
    url = reverse("prompt-detail", kwargs={"slug": project.slug, "name": m.title})
    return Result(
        kind="prompt", title=m.title, title_html=m.title_html, snippet=m.snippet, rank=m.rank,
        url=url, updated_at=_as_datetime(updated_at), prompt=m.title, version=version,
    )  # fmt: skip


def _run(project: Project, m: Match) -> Result:
    (created_at,) = m.fields
    url = reverse("prompt-run", kwargs={"slug": project.slug, "run_id": m.key})
    return Result(
        kind="run", title=m.title, title_html=m.title_html, snippet=m.snippet, rank=m.rank,
        url=url, updated_at=_as_datetime(created_at), prompt=m.title.split(" · ")[0],
        run=m.key,
    )  # fmt: skip
