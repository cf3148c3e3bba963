"""Prompt library: templates with immutable versions and movable labels, provider
configurations, and the record of every run."""

from django.conf import settings
from django.db import models

USER = settings.AUTH_USER_MODEL


class ProviderConfig(models.Model):
    """A model endpoint of a project. The API key is a project secret (by name), a
    server environment variable (by name), or stored encrypted (buildsite.crypto); it is
    never shown back."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible Chat Completions"
        OFFLINE = "offline", "Offline (deterministic, no network)"

    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="prompt_providers"
    )
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.CharField(max_length=500, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="default model")
    api_key_env = models.CharField(max_length=100, blank=True)
    # A project secret (vault) holding the key: maintainers manage it with the other
    # secrets, and build logs mask it like any of them.
    api_key_secret = models.CharField(max_length=100, blank=True)
    api_key_encrypted = models.TextField(blank=True, editable=False)
    price_in_per_mtok = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    price_out_per_mtok = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    timeout_seconds = models.FloatField(default=60.0)
    max_retries = models.PositiveSmallIntegerField(default=3)
    updated_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="provider_name_per_project")
        ]
        ordering = ["project", "name"]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name} ({self.kind})"

    @property
    def has_stored_key(self) -> bool:
        return bool(self.api_key_encrypted)


class PromptTemplate(models.Model):
    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="prompts"
    )
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="prompt_name_per_project")
        ]
        ordering = ["project", "name"]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name}"


class PromptVersion(models.Model):
    """Immutable: every change is a new numbered version; labels point at versions."""

    class Format(models.TextChoices):
        TEXT = "text", "Text"
        JSON = "json", "JSON"

    prompt = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    template = models.TextField(blank=True, help_text="a text template (one user message)")
    messages = models.JSONField(
        default=list, blank=True, help_text="chat messages [{role, content}]"
    )
    variables = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=80, default="offline")
    model = models.CharField(max_length=200, blank=True)
    temperature = models.FloatField(default=0.0)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    response_format = models.CharField(max_length=10, choices=Format.choices, default=Format.TEXT)
    response_schema = models.JSONField(null=True, blank=True)
    max_repairs = models.PositiveSmallIntegerField(default=2)
    note = models.CharField(max_length=500, blank=True, help_text="what changed")
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "number"], name="prompt_version_number")
        ]
        ordering = ["prompt", "-number"]

    def __str__(self) -> str:
        return f"{self.prompt.name}#{self.number}"

    def as_spec(self) -> dict:
        """The version's content as prompts.spec describes it (for rendering and diffs)."""
        return {
            "template": self.template,
            "messages": self.messages,
            "variables": self.variables,
            "provider": self.provider,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": self.response_format,
            "response_schema": self.response_schema,
            "max_repairs": self.max_repairs,
        }


class PromptLabel(models.Model):
    """A movable name for a version (`production`, `staging`, ...). `latest` is not
    stored: it always means the highest version number."""

    prompt = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=50)
    version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, related_name="labels")
    updated_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prompt", "name"], name="prompt_label_name")]
        ordering = ["prompt", "name"]

    def __str__(self) -> str:
        return f"{self.prompt.name}@{self.name} -> #{self.version.number}"


class LabelMove(models.Model):
    """History of label changes: who pointed which label at which version, when."""

    prompt = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="label_moves")
    label = models.CharField(max_length=50)
    from_number = models.PositiveIntegerField(null=True, blank=True)
    to_number = models.PositiveIntegerField(null=True, blank=True)  # null: label removed
    moved_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    moved_at = models.DateTimeField(auto_now_add=True)
    # A gated label's move names the evaluation that allowed it (an id of the evals app,
    # which the prompt library does not import); a forced move says why instead.
    evaluation_id = models.PositiveIntegerField(null=True, blank=True)
    forced = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-moved_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prompt.name}@{self.label}: {self.from_number} -> {self.to_number}"


class PromptRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="prompt_runs"
    )
    version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, related_name="runs")
    ref = models.CharField(max_length=140, help_text="how the caller named the prompt")
    provider = models.CharField(max_length=80)
    provider_kind = models.CharField(max_length=20)
    model = models.CharField(max_length=200, blank=True)
    variables = models.JSONField(default=dict)
    rendered = models.JSONField(default=list, help_text="the messages sent")
    raw_response = models.TextField(blank=True)
    output = models.TextField(blank=True)
    parsed = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    attempts = models.JSONField(default=list, help_text="every call: response, error, tokens")
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cached = models.BooleanField(default=False)
    cache_key = models.CharField(max_length=64, blank=True)
    task = models.ForeignKey(
        "tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="prompt_runs"
    )
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="prompt_run_recent")]

    def __str__(self) -> str:
        return f"run {self.id} of {self.version} ({self.status})"
