"""The step-result cache in the database: lookup, store, purge, TTL and LRU eviction."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from tasks import rawsql

from .models import CacheEntry

CHUNK = 2000


def _ttl_cutoff() -> datetime:
    ttl: int = settings.BUILDSITE["CACHE_TTL_SECONDS"]
    now: datetime = timezone.now()
    return now - timedelta(seconds=ttl)


Hit = tuple[int, dict[str, Any], list[dict[str, Any]]]  # entry id, outputs, artifacts


def lookup_many(*, project_id: int, keys: list[str]) -> dict[str, Hit]:
    """(entry id, outputs, artifacts) per key for the keys that hit. Plain SQL: a cached
    build of thousands of tasks asks once per wave of its DAG. The caller `touch`es the
    entries it used, once for the whole walk."""
    keys = list(dict.fromkeys(keys))
    found: dict[str, Hit] = {}
    table, key_col = rawsql.table(CacheEntry), rawsql.col(CacheEntry, "key")
    cutoff = rawsql.to_db(CacheEntry, "created_at", _ttl_cutoff())
    for i in range(0, len(keys), CHUNK):
        among, chunk = rawsql.one_of(key_col, keys[i : i + CHUNK])
        rows = rawsql.fetch(
            f"SELECT id, {key_col}, outputs, artifacts FROM {table} WHERE project_id = %s "
            f"AND created_at >= %s AND {among}",
            [project_id, cutoff, *chunk],
        )
        columns = ("id", "key", "outputs", "artifacts")
        for entry_id, key, outputs, artifacts in rawsql.from_db(CacheEntry, columns, rows):
            found[key] = (entry_id, outputs, artifacts)
    return found


def lookup(*, project_id: int, key: str) -> dict[str, Any] | None:
    """The outputs stored under one key (touched as used), or None."""
    hit = lookup_many(project_id=project_id, keys=[key]).get(key)
    if hit is None:
        return None
    touch([hit[0]])
    return hit[1]


def touch(entry_ids: list[int]) -> None:
    """Count a hit on each entry and mark it used now (for LRU eviction)."""
    now = rawsql.to_db(CacheEntry, "last_used_at", timezone.now())
    table = rawsql.table(CacheEntry)
    for i in range(0, len(entry_ids), CHUNK):
        among, chunk = rawsql.one_of("id", entry_ids[i : i + CHUNK])
        rawsql.execute(
            f"UPDATE {table} SET hits = hits + 1, last_used_at = %s WHERE {among}",
            [now, *chunk],
        )


def store(
    *,
    project_id: int,
    key: str,
    task_name: str,
    outputs: dict[str, Any],
    artifacts: list[dict[str, Any]] | None = None,
) -> None:
    """Insert or replace the entry for `key` (one upsert: this runs as each cacheable
    task finishes, inside its finish transaction). Its size counts its artifacts'
    bytes, so eviction weighs what a hit would restore."""
    artifacts = artifacts or []
    size = len(json.dumps(outputs, default=str)) + sum(a["size"] for a in artifacts)
    now = rawsql.to_db(CacheEntry, "created_at", timezone.now())
    key_col = rawsql.col(CacheEntry, "key")
    rawsql.execute(
        f"INSERT INTO {rawsql.table(CacheEntry)} "
        f"(project_id, {key_col}, task_name, outputs, artifacts, size_bytes, hits, created_at, "
        "last_used_at) VALUES (%s, %s, %s, %s, %s, %s, 0, %s, %s) "
        f"ON CONFLICT (project_id, {key_col}) DO UPDATE SET task_name = excluded.task_name, "
        "outputs = excluded.outputs, artifacts = excluded.artifacts, "
        "size_bytes = excluded.size_bytes, "
        "created_at = excluded.created_at, last_used_at = excluded.last_used_at",
        [
            project_id,
            key,
            task_name,
            rawsql.to_db(CacheEntry, "outputs", outputs),
            rawsql.to_db(CacheEntry, "artifacts", artifacts),
            size,
            now,
            now,
        ],
    )


def purge(*, project_id: int, task_name: str | None = None, key: str | None = None) -> int:
    qs = CacheEntry.objects.filter(project_id=project_id)
    if task_name:
        qs = qs.filter(task_name=task_name)
    if key:
        qs = qs.filter(key=key)
    deleted: int = qs.delete()[0]
    return deleted


def evict() -> int:
    """Drop expired entries, then least-recently-used ones while over the size limit."""
    removed: int = CacheEntry.objects.filter(created_at__lt=_ttl_cutoff()).delete()[0]
    limit: int = settings.BUILDSITE["CACHE_MAX_BYTES"]
    total: int = CacheEntry.objects.aggregate(total=Sum("size_bytes"))["total"] or 0
    if total <= limit:
        return removed
    doomed: list[int] = []
    for entry_id, size in CacheEntry.objects.order_by("last_used_at", "id").values_list(
        "id", "size_bytes"
    ):
        if total <= limit:
            break
        doomed.append(entry_id)
        total -= size
    for i in range(0, len(doomed), 500):
        CacheEntry.objects.filter(id__in=doomed[i : i + 500]).delete()
    return removed + len(doomed)
