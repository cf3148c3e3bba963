from django.conf import settings
from django.db import models
from django.db.models import Q


class Schedule(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A build started by the clock: a saved pipeline, or a repository's pipeline at a
    ref, whenever `cron` is due in `timezone`.

    `next_run` is stored, not derived, so upkeep finds due schedules with one indexed
    query and claims one due time with a conditional update of this column
    (`services.fire_due_schedules`). It is null while the schedule is paused.
    """

    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="schedules"
    )
    # Exactly one of the two (constraint below).
    pipeline = models.ForeignKey(
        "builds.Pipeline", null=True, blank=True, on_delete=models.CASCADE, related_name="schedules"
    )
    repository = models.ForeignKey(
        "repositories.Repository",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="schedules",
    )
    cron = models.CharField(max_length=100)
    timezone = models.CharField(max_length=64, default="UTC")
    params = models.JSONField(default=dict, blank=True)
    ref = models.CharField(max_length=255, blank=True)  # repository schedules only
    paused = models.BooleanField(default=False)
    next_run = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run = models.DateTimeField(null=True, blank=True)
    last_build = models.ForeignKey(
        "builds.Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Why the last due time made no build (empty when it did).
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(pipeline__isnull=False, repository__isnull=True)
                | Q(pipeline__isnull=True, repository__isnull=False),
                name="schedule_builds_pipeline_or_repository",
            )
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.target} at '{self.cron}' ({self.timezone})"

    @property
    def target(self) -> str:
        """What it builds, for people: `pipeline x` or `repository y @ ref`."""
        if self.pipeline_id is not None:
            return f"pipeline {self.pipeline.name}"
        return f"repository {self.repository.name} @ {self.ref}"
