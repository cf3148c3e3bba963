"""Documents and their immutable revisions, snapshots, redirects and link reports.

A Document row is the current state of one path (denormalised from its latest revision
so that listing, search filters and link validation never re-parse Markdown); a Revision
row is never changed after it is written, apart from its rendered-HTML cache.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from buildsite.models import Project

DEFAULT_MAX_BODY_BYTES = 512 * 1024


class DocSettings(models.Model):
    """Per-project validation and publishing rules (maintainers change them)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="doc_settings")
    require_approval = models.BooleanField(
        default=False, help_text="Publishing needs a second person's approval."
    )
    front_matter_schema = models.JSONField(
        null=True, blank=True, help_text="JSON schema the YAML front-matter must match."
    )
    max_body_bytes = models.PositiveIntegerField(default=DEFAULT_MAX_BODY_BYTES)

    class Meta:
        verbose_name = "validation settings"
        verbose_name_plural = "validation settings"

    def __str__(self) -> str:
        return f"doc settings of {self.project}"


class Document(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="documents")
    path = models.CharField(max_length=255)
    title = models.CharField(max_length=200)
    tags = models.JSONField(default=list, blank=True)
    # Heading anchors of the current revision: links to `path#anchor` are checked against it.
    anchors = models.JSONField(default=list, blank=True)
    current_revision = models.ForeignKey(
        "Revision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_revision = models.ForeignKey(
        "Revision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(db_index=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Deleted documents keep their revisions (snapshots may point at them).
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "path"],
                condition=Q(deleted_at__isnull=True),
                name="one_live_document_per_path",
            )
        ]
        indexes = [models.Index(fields=["project", "path"])]

    def __str__(self) -> str:
        return f"{self.project}:{self.path}"


class Revision(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    front_matter = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    warnings = models.JSONField(default=list, blank=True)
    # Rendered-HTML cache; re-rendered when the renderer's version changes.
    html = models.TextField(blank=True, editable=False)
    html_version = models.PositiveIntegerField(default=0, editable=False)
    # Provenance of a revision a build's `document` step wrote (all empty for people's
    # saves). The task's name is kept as text too: deleting old builds sets the links to
    # NULL but the revision still says it was written by a build (steps.py: which runs).
    build = models.ForeignKey(
        "builds.Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    task = models.ForeignKey(
        "tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    task_name = models.CharField(max_length=100, blank=True)
    prompt_runs = models.ManyToManyField(
        "prompts.PromptRun", blank=True, related_name="document_revisions"
    )

    class Meta:
        ordering = ["document", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["document", "number"], name="one_revision_number")
        ]

    def __str__(self) -> str:
        return f"{self.document.path}@{self.number}"

    @property
    def written_by_build(self) -> bool:
        return bool(self.task_name)

    def used_runs(self):
        """The prompt runs this revision's text came from, with their prompt and version
        (templates call this; it reads only through the relation, importing no app)."""
        return self.prompt_runs.select_related("version__prompt").order_by("id")


class PublishRequest(models.Model):
    """A request to publish a revision in a project that asks for a second approval."""

    class State(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        SUPERSEDED = "superseded"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+")
    revision = models.ForeignKey(Revision, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"publish {self.revision} ({self.state})"


class Redirect(models.Model):
    """Left behind by a move: the old path keeps resolving to the document."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    old_path = models.CharField(max_length=255)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="redirects")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "old_path"], name="one_redirect_per_path")
        ]

    def __str__(self) -> str:
        return f"{self.old_path} → {self.document.path}"


class Snapshot(models.Model):
    """A named, read-only set of revisions (for example `v1.2`)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="one_snapshot_name")
        ]

    def __str__(self) -> str:
        return f"{self.project}:{self.name}"


class SnapshotEntry(models.Model):
    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="entries")
    # The path the document had when the snapshot was taken (it may move later).
    path = models.CharField(max_length=255)
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["path"]
        verbose_name_plural = "snapshot entries"
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "path"], name="one_entry_per_path")
        ]

    def __str__(self) -> str:
        return f"{self.path}@{self.revision.number}"


class LinkReport(models.Model):
    """The result of one link-checker run over a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    broken = models.JSONField(default=list)  # every broken link found
    newly_broken = models.JSONField(default=list)  # broken now, not in the previous report

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.project}: {self.reason} ({len(self.newly_broken)} newly broken)"


class SearchEntry(models.Model):
    """The text the search index covers. On SQLite an FTS5 table mirrors it through
    triggers; on PostgreSQL a generated, GIN-indexed tsvector column is added to it
    (both in migration 0002), so writing this row in the save transaction is what keeps
    search in step."""

    document = models.OneToOneField(
        Document, on_delete=models.CASCADE, primary_key=True, related_name="search_entry"
    )
    title = models.TextField()
    body = models.TextField()
    tags = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"index of {self.document_id}"
