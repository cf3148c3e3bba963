from django.conf import settings
from django.db import models


class Repository(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A git repository a project builds: where to fetch it, which branch builds, where
    its pipeline lives, and the secret its forge signs push webhooks with."""

    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="repositories"
    )
    name = models.CharField(max_length=100)
    url = models.CharField(max_length=500)
    branch = models.CharField(max_length=255, default="main")
    pipeline_path = models.CharField(max_length=255, default=".buildsite.yml")
    # Branch patterns a push builds (fnmatch); empty: only `branch`.
    branches = models.JSONField(default=list, blank=True)
    # Name of the project secret holding an HTTPS token or an SSH deploy key.
    credentials_secret = models.CharField(max_length=100, blank=True)
    webhook_secret_encrypted = models.TextField()
    # Commit status reports back to the forge (off when `status_forge` is empty).
    status_forge = models.CharField(max_length=20, blank=True)
    status_api_url = models.CharField(max_length=500, blank=True)
    status_token_secret = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="repository_name_per_project")
        ]
        ordering = ["name"]
        verbose_name_plural = "repositories"

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name}"


class Delivery(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A webhook delivery id seen once: the forge's redelivery returns the first build."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=200)
    build = models.ForeignKey(
        "builds.Build", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "delivery_id"], name="delivery_once_per_repository"
            )
        ]

    def __str__(self) -> str:
        return f"{self.repository} {self.delivery_id}"
