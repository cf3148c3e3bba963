from django.conf import settings
from django.db import models


class AuditEntry(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """One change made by a person or a token, written in the transaction of the change.

    `actor_name` keeps who it was after the account is gone; `detail` is a short,
    human-readable line and never holds a secret value."""

    project = models.ForeignKey(
        "buildsite.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = models.CharField(max_length=200)
    time = models.DateTimeField()
    action = models.CharField(max_length=50)
    target = models.CharField(max_length=300, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["project", "-id"], name="audit_project_newest"),
            models.Index(fields=["project", "action", "-id"], name="audit_project_action"),
        ]
        ordering = ["-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"
