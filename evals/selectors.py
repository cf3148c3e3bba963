"""Reads of datasets: a project's datasets with their current item counts, one dataset,
and the items of any version."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from buildsite.errors import NotFound
from buildsite.models import Project

from .models import Dataset, DatasetItem

CURRENT = Q(items__removed_in__isnull=True)


def datasets_of(*, project: Project) -> QuerySet[Dataset]:
    """Each with `item_count`: the items of its current version."""
    return Dataset.objects.filter(project=project).annotate(
        item_count=Count("items", filter=CURRENT)
    )


def get_dataset(*, project: Project, name: str, lock: bool = False) -> Dataset:
    query = Dataset.objects.select_for_update() if lock else datasets_of(project=project)
    dataset: Dataset | None = query.filter(project=project, name=name).first()
    if dataset is None:
        raise NotFound(f"No dataset '{name}' in '{project.slug}'.")
    return dataset


def check_version(dataset: Dataset, version: int | None) -> int:
    """The version asked for (default: the current one); NotFound for one not made yet."""
    if version is None:
        return int(dataset.version)
    if not 0 <= version <= dataset.version:
        raise NotFound(
            f"Dataset '{dataset.name}' has versions 0 to {dataset.version}, not {version}."
        )
    return version


def items_at(dataset: Dataset, version: int) -> QuerySet[DatasetItem]:
    """The items of `version`, by item number: the same rows whatever changed since."""
    return DatasetItem.objects.filter(
        Q(removed_in__isnull=True) | Q(removed_in__gt=version),
        dataset=dataset,
        added_in__lte=version,
    ).order_by("number")


def current_item(dataset: Dataset, number: int) -> DatasetItem:
    # A number beyond what a column holds is absent too (SQLite would raise on it).
    item: DatasetItem | None = None
    if 0 < number < 2**31:
        item = DatasetItem.objects.filter(
            dataset=dataset, number=number, removed_in__isnull=True
        ).first()
    if item is None:
        raise NotFound(f"Dataset '{dataset.name}' has no item {number}.")
    return item
