"""Project secrets: values that build steps declare and receive, stored encrypted
(buildsite.crypto) and never shown back."""

from django.conf import settings
from django.db import models


class Secret(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="secrets"
    )
    name = models.CharField(max_length=100)
    value_encrypted = models.TextField(editable=False)
    # Bumped on every set: cache keys of tasks that declare the secret include it, so a
    # new value re-runs them without the value itself ever being part of a key.
    version = models.PositiveIntegerField(default=1, editable=False)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="secret_name_per_project")
        ]
        ordering = ["project", "name"]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name} (v{self.version})"
