"""The step-result cache in the database: lookup, store, purge, TTL and LRU eviction."""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Sum
from django.utils import timezone

from .models import CacheEntry

CHUNK = 2000


def _ttl_cutoff():
    return timezone.now() - timedelta(seconds=settings.BUILDSITE["CACHE_TTL_SECONDS"])


def lookup_many(*, project_id: int, keys: list[str]) -> dict[str, dict]:
    """Outputs per key for the keys that hit; hits are counted and touched for LRU."""
    keys = list(dict.fromkeys(keys))
    found: dict[str, dict] = {}
    ids: list[int] = []
    cutoff = _ttl_cutoff()
    for i in range(0, len(keys), CHUNK):
        rows = CacheEntry.objects.filter(
            project_id=project_id, key__in=keys[i : i + CHUNK], created_at__gte=cutoff
        ).values_list("id", "key", "outputs")
        for entry_id, key, outputs in rows:
            ids.append(entry_id)
            found[key] = outputs
    now = timezone.now()
    for i in range(0, len(ids), CHUNK):
        CacheEntry.objects.filter(id__in=ids[i : i + CHUNK]).update(
            hits=F("hits") + 1, last_used_at=now
        )
    return found


def store(*, project_id: int, key: str, task_name: str, outputs: dict) -> None:
    now = timezone.now()
    CacheEntry.objects.update_or_create(
        project_id=project_id,
        key=key,
        defaults={
            "task_name": task_name,
            "outputs": outputs,
            "size_bytes": len(json.dumps(outputs, default=str)),
            "created_at": now,
            "last_used_at": now,
        },
    )


def purge(*, project_id: int, task_name: str | None = None, key: str | None = None) -> int:
    qs = CacheEntry.objects.filter(project_id=project_id)
    if task_name:
        qs = qs.filter(task_name=task_name)
    if key:
        qs = qs.filter(key=key)
    deleted, _ = qs.delete()
    return deleted


def evict() -> int:
    """Drop expired entries, then least-recently-used ones while over the size limit."""
    removed, _ = CacheEntry.objects.filter(created_at__lt=_ttl_cutoff()).delete()
    limit = settings.BUILDSITE["CACHE_MAX_BYTES"]
    total = CacheEntry.objects.aggregate(total=Sum("size_bytes"))["total"] or 0
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
