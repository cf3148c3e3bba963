from django.conf import settings
from django.db import models

from tasks.states import BuildState


class Pipeline(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="pipelines"
    )
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="pipeline_name_per_project")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name}"


class PipelineVersion(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """Immutable: every save of a definition is a new version; builds pin one."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.TextField()
    spec = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline", "number"], name="version_number_per_pipeline"
            )
        ]
        ordering = ["pipeline", "-number"]

    def __str__(self) -> str:
        return f"{self.pipeline} v{self.number}"


class Build(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="builds"
    )
    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="builds")
    # None while a repository build is being prepared: its pipeline is read from the
    # repository at the build's commit (`repositories/preparation.py`).
    pipeline_version = models.ForeignKey(
        PipelineVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="builds"
    )
    state = models.CharField(
        max_length=20, choices=[(s.value, s.value) for s in BuildState], default=BuildState.QUEUED
    )
    params = models.JSONField(default=dict, blank=True)
    # What started it: manual (browser, API, CLI), push, schedule or rerun.
    trigger = models.CharField(max_length=20, default="manual")
    repository = models.ForeignKey(
        "repositories.Repository",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="builds",
    )
    commit_sha = models.CharField(max_length=64, blank=True)
    commit_ref = models.CharField(max_length=255, blank=True)
    commit_author = models.CharField(max_length=300, blank=True)
    commit_message = models.TextField(blank=True)
    # Why the build failed before any task ran (its pipeline could not be read).
    error = models.TextField(blank=True)
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    files_purged = models.BooleanField(default=False)
    # Bytes of artifacts its tasks stored (restored ones not counted): the per-build limit.
    artifact_bytes = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="build_project_recent")]

    def __str__(self) -> str:
        return f"build #{self.id} ({self.state})"


class ResourcePool(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    project = models.ForeignKey("buildsite.Project", on_delete=models.CASCADE, related_name="pools")
    name = models.CharField(max_length=50)
    capacity = models.PositiveIntegerField()
    busy_seconds = models.FloatField(default=0.0, help_text="claim x seconds used by finished runs")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="pool_name_per_project")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.capacity})"


class CacheEntry(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="cache_entries"
    )
    key = models.CharField(max_length=64)
    task_name = models.CharField(max_length=100, blank=True)
    outputs = models.JSONField(default=dict)
    artifacts = models.JSONField(default=list)  # as Task.artifacts: a hit restores them
    size_bytes = models.BigIntegerField(default=0)  # artifacts included: may pass 2 GiB
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    # No index: it changes on every hit (10,000 times in a cached 10,000-task build),
    # and the once-a-minute LRU eviction can afford to sort.
    last_used_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="cache_key_per_project")
        ]
        verbose_name_plural = "cache entries"

    def __str__(self) -> str:
        return f"{self.task_name} {self.key[:12]}"


class Blob(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A file's content in the artifact store, stored once however many artifacts and
    cache entries name it. `last_used_at` is touched whenever a task stores or reuses
    it, so retention never deletes a blob a running task is about to name."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.size} bytes)"


class CacheHitBatch(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """Hits on cache entries not yet counted on them. A build's walk records the
    entries it used as one row instead of updating each entry (a cached 10,000-task
    rebuild updated 10,000 rows, a fifth of its time on PostgreSQL); upkeep folds the
    rows into the entries' `hits` and `last_used_at` every tick and before evicting
    (`cache.fold_hits`)."""

    entry_ids = models.JSONField()
    used_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{len(self.entry_ids)} cache hits at {self.used_at:%H:%M:%S}"


class UpkeepLease(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """Who does the cluster-wide upkeep now (`builds/upkeep.py`): every worker cluster
    tries to hold this row; the holder renews it, and when it stops renewing, another
    cluster takes it over once it has expired."""

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=200)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.holder} until {self.expires_at:%H:%M:%S}"
