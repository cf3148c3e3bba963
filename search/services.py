"""Writes to the search indexes: log chunks from `log` events (called by the upkeep
indexer), prompt templates and runs as they are saved (called by `receivers`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Max
from django.utils import timezone

from builds.models import Build
from builds.selectors import strip_ansi
from docs_engine.search.query import clean_indexed_text
from tasks.models import Event

from .models import LogChunk, PromptEntry, RunEntry

# A chunk is topped up with the next events of its attempt until it holds about this
# much text: large enough that a chatty task is a few results rather than one per
# flush, small enough that a snippet points somewhere near the match.
CHUNK_CHARS = 8_000
# The most text of one template or run that is indexed (a run's messages can carry a
# whole log as a variable).
MAX_BODY = 100_000


def _clean(text: str) -> str:
    return clean_indexed_text(strip_ansi(text))


def _head(text: str, room: int) -> int:
    """How much of `text` tops up a chunk with `room` left: all of it, else up to the
    last line end that fits (0 when none does)."""
    if len(text) <= room:
        return len(text)
    return text.rfind("\n", 0, room) + 1


def _split(text: str) -> list[str]:
    """`text` in pieces of at most CHUNK_CHARS, cut at line ends where there is one."""
    pieces: list[str] = []
    while len(text) > CHUNK_CHARS:
        cut = text.rfind("\n", 0, CHUNK_CHARS) + 1 or CHUNK_CHARS
        pieces.append(text[:cut])
        text = text[cut:]
    if text:
        pieces.append(text)
    return pieces


def log_title(pipeline: str, build_id: int, task_name: str, attempt: int) -> str:
    title = f"{pipeline} #{build_id} · {task_name}"
    return title + (f" (attempt {attempt})" if attempt > 1 else "")


def index_log_events(*, event_ids: list[int]) -> int:
    """Index the `log` events among `event_ids` (ascending); returns the chunks written.
    Events of a build whose logs retention removed are skipped."""
    rows = list(
        Event.objects.filter(id__in=event_ids, type=Event.Type.LOG, build_id__isnull=False)
        .order_by("id")
        .values_list("id", "project_id", "build_id", "task_name", "data", "created_at")
    )
    if not rows:
        return 0
    builds = {
        b_id: name
        for b_id, name in Build.objects.filter(
            id__in={r[2] for r in rows}, files_purged=False
        ).values_list("id", "pipeline__name")
    }
    grouped: dict[tuple[int, str, int], list[Any]] = {}
    for event_id, project_id, build_id, task_name, data, created_at in rows:
        text = _clean(str((data or {}).get("text", "")))
        if build_id not in builds or not text:
            continue
        key = (build_id, task_name, int((data or {}).get("attempt") or 1))
        entry = grouped.setdefault(key, [project_id, [], event_id, created_at])
        entry[1].append(text)
        entry[2], entry[3] = event_id, created_at
    last = _last_chunks(grouped.keys())
    written = 0
    new: list[LogChunk] = []
    for key, (project_id, texts, last_event_id, created_at) in grouped.items():
        build_id, task_name, attempt = key
        text = "".join(texts)
        chunk = last.get(key)
        head = _head(text, max(0, CHUNK_CHARS - len(chunk.body))) if chunk is not None else 0
        if chunk is not None and head:
            LogChunk.objects.filter(id=chunk.id).update(
                body=chunk.body + text[:head], last_event_id=last_event_id, created_at=created_at
            )
            written += 1
        pieces = _split(text[head:])
        title = log_title(builds[build_id], build_id, task_name, attempt)
        new.extend(
            LogChunk(
                project_id=project_id,
                build_id=build_id,
                task_name=task_name,
                attempt=attempt,
                title=title,
                body=piece,
                last_event_id=last_event_id,
                created_at=created_at,
            )  # fmt: skip
            for piece in pieces
        )
    LogChunk.objects.bulk_create(new, batch_size=200)
    return written + len(new)


def _last_chunks(keys: Iterable[tuple[int, str, int]]) -> dict[tuple[int, str, int], LogChunk]:
    """The newest chunk of each (build, task, attempt), to be topped up."""
    wanted = set(keys)
    if not wanted:
        return {}
    newest = (
        LogChunk.objects.filter(build_id__in={k[0] for k in wanted})
        .values("build_id", "task_name", "attempt")
        .annotate(last=Max("id"))
        .values_list("build_id", "task_name", "attempt", "last")
    )
    ids = [last for b, t, a, last in newest if (b, t, a) in wanted]
    return {(c.build_id, c.task_name, c.attempt): c for c in LogChunk.objects.filter(id__in=ids)}


def delete_purged_logs() -> int:
    """Chunks of builds whose logs retention removed (search already hides them)."""
    deleted, _ = LogChunk.objects.filter(build__files_purged=True).delete()
    return int(deleted)


def _message_texts(messages: Any) -> list[str]:
    texts: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content", "") if isinstance(message, dict) else message
        texts.append(content if isinstance(content, str) else str(content))
    return texts


def prompt_body(prompt: Any, version: Any) -> str:
    """What a template's entry covers: description, text, messages, variable names."""
    parts = [prompt.description, version.template, *_message_texts(version.messages)]
    parts.append(" ".join(str(name) for name in (version.variables or {})))
    return clean_indexed_text("\n".join(p for p in parts if p))[:MAX_BODY]


def run_body(run: Any) -> str:
    """What a run's entry covers: the messages sent, the answer, the error."""
    parts = [*_message_texts(run.rendered), run.output, run.error]
    return clean_indexed_text("\n".join(p for p in parts if p))[:MAX_BODY]


def run_title(run: Any) -> str:
    return f"{run.ref} · run #{run.id}"


def index_prompt(*, prompt: Any) -> None:
    """The template's entry: its description and newest version (gone without one)."""
    version = prompt.versions.order_by("-number").first()
    if version is None:
        PromptEntry.objects.filter(prompt_id=prompt.id).delete()
        return
    PromptEntry.objects.update_or_create(
        prompt_id=prompt.id,
        defaults={
            "project_id": prompt.project_id,
            "version_number": version.number,
            "title": prompt.name,
            "body": prompt_body(prompt, version),
            "updated_at": timezone.now(),
        },
    )


def index_run(*, run: Any) -> None:
    """The run's entry, written again at each save (started, finished, masked): it
    holds exactly what the run's page shows."""
    RunEntry.objects.update_or_create(
        run_id=run.id,
        defaults={
            "project_id": run.project_id,
            "title": run_title(run),
            "body": run_body(run),
            "created_at": run.created_at or timezone.now(),
        },
    )
