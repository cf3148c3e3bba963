from django.db import models

from .states import TaskState


class Task(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """One node of a build's DAG; its state changes only through tasks.services."""

    # Indexed by the (build, name) and (build, state) indexes below; a separate FK index
    # would only slow down inserting a 10,000-task build.
    build = models.ForeignKey(
        "builds.Build", on_delete=models.CASCADE, related_name="tasks", db_index=False
    )
    name = models.CharField(max_length=100)
    state = models.CharField(
        max_length=20, choices=[(s.value, s.value) for s in TaskState], default=TaskState.PENDING
    )
    needs = models.JSONField(default=list, blank=True)
    priority = models.IntegerField(default=0)
    claims = models.JSONField(default=dict, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    deadline_missed = models.BooleanField(default=False)
    max_retries = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    cache_key = models.CharField(max_length=64, blank=True)
    outputs = models.JSONField(default=dict, blank=True)
    # The files the task hands on (produced, or restored from the cache): a list of
    # {"path", "sha256", "size", "mode"}; the bytes are in the artifact store.
    artifacts = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    # A re-run reuses the result of this build's task of the same name (state CACHED).
    reused_from = models.ForeignKey(
        "builds.Build",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    ready_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["build", "name"], name="task_name_per_build")
        ]
        indexes = [
            models.Index(fields=["state", "build"], name="task_state_build"),
            models.Index(fields=["build", "state"], name="task_build_state"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.build_id}/{self.name} [{self.state}]"


class Event(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """The transactional outbox: written with each change, relayed to browsers after commit."""

    class Type(models.TextChoices):  # type: ignore[misc]  # Django is untyped (Any base)
        TASK_STATE = "task.state"
        BUILD_STATE = "build.state"
        LOG = "log"
        DEADLINE_MISSED = "deadline.missed"
        CACHE = "cache"
        # Written by prompts and docs_engine (no build): notifications read them.
        LABEL_MOVED = "label.moved"
        DOCUMENT_PUBLISHED = "document.published"

    # project and build are covered by the (project, id) and (build, id) indexes.
    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    build = models.ForeignKey(
        "builds.Build",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
    )
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    task_name = models.CharField(max_length=100, blank=True)
    type = models.CharField(max_length=30, choices=Type.choices)
    old_state = models.CharField(max_length=20, blank=True)
    new_state = models.CharField(max_length=20, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["build", "id"], name="event_build_id"),
            models.Index(fields=["project", "id"], name="event_project_id"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.id} {self.type} {self.old_state}->{self.new_state}"
