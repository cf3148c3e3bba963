"""Datasets of a project: items (variables and what the answer must satisfy), versioned
with their dataset so that an evaluation can pin `(dataset, version)` and read exactly
the items of that version later."""

from django.conf import settings
from django.db import models


class Dataset(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True, max_length=2000)
    # 0 while empty; every user action that changes items raises it by one.
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="dataset_name_per_project")
        ]
        ordering = ["project", "name"]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name} (v{self.version})"


class DatasetItem(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """One row per state of an item: a change closes the row (`removed_in`) and adds a
    new one with the same `number`, so no version's items are ever rewritten. Version v
    holds the rows with added_in <= v and (removed_in is null or removed_in > v)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    number = models.PositiveIntegerField()  # "item": stable within the dataset, never reused
    variables = models.JSONField(default=dict)
    expect = models.JSONField(default=list)
    added_in = models.PositiveIntegerField()
    removed_in = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "number", "added_in"], name="dataset_item_state"
            )
        ]
        indexes = [models.Index(fields=["dataset", "added_in"], name="dataset_item_added")]
        ordering = ["dataset", "number", "added_in"]

    def __str__(self) -> str:
        return f"item {self.number} (v{self.added_in}–{self.removed_in or ''})"


class Evaluation(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A prompt version run over the items of one dataset version, in one of two ways:

    - started from the API or a page: an ordinary build of its own (one task per item).
      Its results are not stored here: they are read from the build's tasks
      (evals.selectors.evaluation_results), so they are always what the build did.
    - by an `evaluate` step (evals.inline): inside one task of a pipeline's build, which
      `task` names. That task runs every item itself, so its results are stored here
      (`item_results`) as the step writes them, and `state` is the evaluation's own.
    """

    # The state of an inline evaluation (an evaluation build's is its build's).
    class State(models.TextChoices):  # type: ignore[misc]  # Django is untyped (Any base)
        RUNNING = "running"
        SUCCEEDED = "succeeded"  # every item ran and was judged
        FAILED = "failed"  # an item could not run, or the step stopped on an error
        CANCELLED = "cancelled"

    project = models.ForeignKey(
        "buildsite.Project", on_delete=models.CASCADE, related_name="evaluations"
    )
    prompt = models.ForeignKey(
        "prompts.PromptTemplate", on_delete=models.CASCADE, related_name="evaluations"
    )
    version = models.ForeignKey(
        "prompts.PromptVersion", on_delete=models.CASCADE, related_name="evaluations"
    )
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="evaluations")
    dataset_version = models.PositiveIntegerField()
    # Its own build, or (inline) the build of the task that ran it: a build may hold
    # several evaluate steps.
    build = models.ForeignKey("builds.Build", on_delete=models.CASCADE, related_name="evaluations")
    task = models.ForeignKey(
        "tasks.Task", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    state = models.CharField(max_length=20, choices=State.choices, blank=True)
    # Inline only: one object per item, by item number (evals.inline.item_result).
    item_results = models.JSONField(null=True, blank=True)
    # Overrides of the version's provider / model; blank: the version's own.
    provider = models.CharField(max_length=80, blank=True)
    model = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["prompt", "-created_at"], name="evaluation_recent"),
            models.Index(fields=["version", "dataset"], name="evaluation_gate"),
        ]

    def __str__(self) -> str:
        return f"evaluation {self.id}: {self.prompt_id}#{self.version_id} on {self.dataset_id}"


class LabelGate(models.Model):  # type: ignore[misc]  # Django is untyped (Any base)
    """A label that moves only to a version with a finished evaluation on `dataset` (at
    its current version) whose pass rate is at least `min_pass_rate`."""

    prompt = models.ForeignKey(
        "prompts.PromptTemplate", on_delete=models.CASCADE, related_name="label_gates"
    )
    label = models.CharField(max_length=50)
    # PROTECT: deleting the dataset would silently lift the gate; the service refuses
    # it with a message naming the gated labels instead.
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="gates")
    min_pass_rate = models.FloatField()
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "label"], name="label_gate_per_label")
        ]
        ordering = ["prompt", "label"]

    def __str__(self) -> str:
        return f"gate {self.label} (≥ {self.min_pass_rate:g} on {self.dataset_id})"
