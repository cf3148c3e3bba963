"""Notification targets of a project, the deliveries made to them, and how far the
outbox (tasks.models.Event) has been read for them."""

from django.conf import settings
from django.db import models

EVENTS = (
    "build.failed",
    "build.succeeded",
    "build.fixed",
    "build.cancelled",
    "task.failed",
    "deadline.missed",
    "label.moved",
    "document.published",
)


class NotificationTarget(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """Where a project's events go: a webhook, a Slack/Mattermost incoming webhook, or
    email addresses; which events, and (for build events) which pipelines and branches."""

    class Kind(models.TextChoices):  # type: ignore[misc]  # Django is untyped (Any base)
        WEBHOOK = "webhook"
        SLACK = "slack"
        EMAIL = "email"

    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="notification_targets"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.CharField(max_length=2000, blank=True)
    emails = models.JSONField(default=list, blank=True)
    # HMAC key of webhook signatures, encrypted like vault secrets; never shown back.
    secret_encrypted = models.TextField(blank=True, editable=False)
    events = models.JSONField(default=list)
    pipelines = models.JSONField(default=list, blank=True)  # names; empty: every pipeline
    branches = models.JSONField(default=list, blank=True)  # fnmatch patterns; empty: all
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="notification_name_per_project"
            )
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.name} ({self.kind})"


class Delivery(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """One message to one target. `payload` is the body without `sent_at` and
    `delivery`, which are added at each attempt; retries keep `uid` (receivers dedupe
    on X-Buildsite-Delivery), a redelivery is a new row with a new uid."""

    class State(models.TextChoices):  # type: ignore[misc]  # Django is untyped (Any base)
        PENDING = "pending"  # a job is queued, or a retry waits for next_attempt_at
        DELIVERING = "delivering"  # a worker is sending it now
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    target = models.ForeignKey(
        NotificationTarget, on_delete=models.CASCADE, related_name="deliveries"
    )
    # No database constraint and DO_NOTHING: deleting events (retention, a deleted
    # build) must stay a fast DELETE without visiting this table. The payload is a
    # copy, so a delivery whose event is gone still reads and redelivers. Null for
    # test messages and redeliveries.
    event = models.ForeignKey(
        "tasks.Event",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=False,
    )
    uid = models.CharField(max_length=36, unique=True)
    event_name = models.CharField(max_length=30)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    redelivery_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One message per target and event, however often the outbox is re-read.
            models.UniqueConstraint(fields=["event", "target"], name="delivery_once_per_event")
        ]
        indexes = [
            models.Index(fields=["target", "-id"], name="delivery_target_newest"),
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due"),
        ]
        ordering = ["-id"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event_name} to {self.target_id} [{self.state}]"


class OutboxPosition(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """The id of the last outbox Event the notifier examined (one row)."""

    name = models.CharField(max_length=50, primary_key=True)
    last_event_id = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: after event #{self.last_event_id}"
