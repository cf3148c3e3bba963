"""Datasets of a project: items (variables and what the answer must satisfy), versioned
with their dataset so that an evaluation can pin `(dataset, version)` and read exactly
the items of that version later."""

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
