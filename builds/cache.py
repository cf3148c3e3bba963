"""The step-result cache in the database: lookup, store, purge, TTL and LRU eviction."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from tasks import rawsql

from .models import CacheEntry, CacheHitBatch

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
    """Record a hit on each entry, counted on the entries by the next `fold_hits`: one
    row here, whatever the number of entries, instead of an UPDATE of each."""
    if entry_ids:
        CacheHitBatch.objects.create(entry_ids=entry_ids, used_at=timezone.now())


FOLD_BATCHES = 500


def fold_hits() -> int:
    """Count recorded hits on their entries (`hits`, and `last_used_at` for LRU
    eviction); returns how many hits were counted on entries that still exist. Each
    batch is deleted by the statement that reads it, so two upkeep runs overlapping
    while the lease changes hands never count a hit twice."""
    counted = 0
    # Most ticks find nothing: no write transaction then (on SQLite it takes the lock).
    while CacheHitBatch.objects.exists():
        with transaction.atomic():
            folded, batches = _fold_some()
        counted += folded
        if batches < FOLD_BATCHES:
            break
    return counted


def _fold_some() -> tuple[int, int]:
    table = rawsql.table(CacheHitBatch)
    rows = rawsql.fetch(
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT %s) "
        "RETURNING entry_ids, used_at",
        [FOLD_BATCHES],
    )
    hits: Counter[int] = Counter()
    last_use: dict[int, datetime] = {}
    for entry_ids, used_at in rawsql.from_db(CacheHitBatch, ("entry_ids", "used_at"), rows):
        hits.update(entry_ids)
        for entry_id in entry_ids:
            if entry_id not in last_use or last_use[entry_id] < used_at:
                last_use[entry_id] = used_at
    groups: dict[tuple[int, datetime], list[int]] = {}
    for entry_id, n in sorted(hits.items()):  # ids in order: rows locked in one order
        groups.setdefault((n, last_use[entry_id]), []).append(entry_id)
    entries, counted = rawsql.table(CacheEntry), 0
    for (n, used_at), ids in groups.items():
        when = rawsql.to_db(CacheEntry, "last_used_at", used_at)
        for i in range(0, len(ids), CHUNK):
            among, chunk = rawsql.one_of("id", ids[i : i + CHUNK])
            counted += n * rawsql.execute(
                f"UPDATE {entries} SET hits = hits + %s, last_used_at = CASE WHEN "
                f"last_used_at < %s THEN %s ELSE last_used_at END WHERE {among}",
                [n, when, when, *chunk],
            )
    return counted, len(rows)


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
    """Drop expired entries, then least-recently-used ones while over the size limit
    (after counting the hits recorded since the last fold, so recent use counts)."""
    fold_hits()
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
