import hashlib

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from .roles import Role

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,49}$", "Use 1-50 lower-case letters, digits or dashes."
)


class Project(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    settings = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        slug: str = self.slug
        return slug


class Membership(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.project}: {self.role}"


class ApiToken(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A bearer token; only its SHA-256 is stored, the clear text is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    # A token may be narrowed to one project; without one it acts with the user's roles.
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE)
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Empty: an API token (with the user's roles). Otherwise the token is good for
    # these scopes only (`SCOPES`), never for the API: a scrape token that leaks must
    # not read or change projects.
    scopes = models.JSONField(default=list, blank=True)

    SCOPES = ("metrics",)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def digest_of(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()


class ClusterHeartbeat(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A worker cluster (or `manage.py ticker`) saying it is alive, written by its
    upkeep thread (`builds/upkeep.py`, `buildsite/heartbeats.py`) and read by
    `/metrics`. A row in the shared database, because django-q2's own cluster stats
    live in Django's cache, which is per process unless a shared cache is configured.
    Rows stay when a cluster stops (it then counts as dead) and go after a day."""

    holder = models.CharField(max_length=200, primary_key=True)  # UpkeepThread.holder
    host = models.CharField(max_length=200)
    workers = models.PositiveIntegerField(default=0)  # 0: a ticker, which runs no jobs
    seen_at = models.DateTimeField()
    # When this process last ended an upkeep round while holding the upkeep lease.
    upkeep_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.holder}: {self.workers} workers, seen {self.seen_at:%H:%M:%S}"
