"""What this app indexes. Each table holds the text the full-text index covers, as a
`title` and a `body`: on SQLite an FTS5 table mirrors it through triggers, on
PostgreSQL a generated, GIN-indexed tsvector column is added to it (migration 0002),
so writing these rows is all it takes to keep search in step."""

from __future__ import annotations

from django.db import models


class IndexPosition(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """The id of the last outbox Event the log indexer examined (one row per reader)."""

    name = models.CharField(max_length=50, primary_key=True)
    last_event_id = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: after event #{self.last_event_id}"


class LogChunk(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A run of consecutive `log` events of one attempt of one task (about CHUNK_CHARS
    of text), as the upkeep indexer read them; masked already, as the events are."""

    project = models.ForeignKey("buildsite.Project", on_delete=models.CASCADE, related_name="+")
    build = models.ForeignKey(
        "builds.Build", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    task_name = models.CharField(max_length=100)
    attempt = models.PositiveIntegerField(default=1)
    title = models.CharField(max_length=300)
    body = models.TextField()
    last_event_id = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # the chunk an indexing round tops up, and the sweep of a purged build
            models.Index(fields=["build", "task_name", "attempt", "id"], name="logchunk_task"),
        ]

    def __str__(self) -> str:
        return f"log of {self.build_id}/{self.task_name} #{self.attempt} ({self.id})"


class PromptEntry(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A prompt template as search sees it: its description and its newest version."""

    prompt = models.OneToOneField(
        "prompts.PromptTemplate", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    project = models.ForeignKey("buildsite.Project", on_delete=models.CASCADE, related_name="+")
    version_number = models.PositiveIntegerField()
    title = models.CharField(max_length=300)
    body = models.TextField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"index of prompt {self.prompt_id}"


class RunEntry(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A prompt run as search sees it: the messages sent, the answer, the error."""

    run = models.OneToOneField(
        "prompts.PromptRun", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    project = models.ForeignKey("buildsite.Project", on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=300)
    body = models.TextField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"index of run {self.run_id}"
