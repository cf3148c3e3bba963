"""Reads for the prompt library; callers have checked the role already."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Max, QuerySet

from builds.models import Build
from buildsite.errors import InvalidInput, NotFound, Problem
from buildsite.models import Project

from .models import LabelMove, PromptLabel, PromptRun, PromptTemplate, PromptVersion, ProviderConfig
from .providers.offline import LABEL as OFFLINE_LABEL
from .refs import LATEST, PromptRef

BUILTIN_OFFLINE = "offline"


def prompts_of(*, project: Project) -> QuerySet[PromptTemplate]:
    return (
        PromptTemplate.objects.filter(project=project)
        .annotate(latest_number=Max("versions__number"), run_count=Count("versions__runs"))
        .prefetch_related("labels__version")
        .order_by("name")
    )


def get_prompt(*, project: Project, name: str) -> PromptTemplate:
    prompt = PromptTemplate.objects.filter(project=project, name=name).first()
    if prompt is None:
        raise NotFound(f"No prompt '{name}' in '{project.slug}'.")
    return prompt


def versions_of(*, prompt: PromptTemplate) -> QuerySet[PromptVersion]:
    return prompt.versions.select_related("created_by").order_by("-number")


def get_version(*, prompt: PromptTemplate, number: int) -> PromptVersion:
    version = prompt.versions.filter(number=number).select_related("prompt").first()
    if version is None:
        raise NotFound(f"Prompt '{prompt.name}' has no version {number}.")
    return version


def latest_version(*, prompt: PromptTemplate) -> PromptVersion | None:
    return prompt.versions.order_by("-number").first()


def resolve_version(*, prompt: PromptTemplate, ref: PromptRef) -> PromptVersion:
    if ref.version is not None:
        return get_version(prompt=prompt, number=ref.version)
    if ref.label in (None, LATEST):
        version = latest_version(prompt=prompt)
        if version is None:
            raise NotFound(f"Prompt '{prompt.name}' has no versions.")
        return version
    label = prompt.labels.filter(name=ref.label).select_related("version").first()
    if label is None:
        raise NotFound(f"Prompt '{prompt.name}' has no label '{ref.label}'.")
    return label.version


def labels_of(*, prompt: PromptTemplate) -> dict[str, int]:
    """Label name -> version number, `latest` included."""
    labels = dict(PromptLabel.objects.filter(prompt=prompt).values_list("name", "version__number"))
    latest = latest_version(prompt=prompt)
    if latest is not None:
        labels[LATEST] = latest.number
    return labels


def label_history(*, prompt: PromptTemplate, limit: int = 50) -> QuerySet[LabelMove]:
    return prompt.label_moves.select_related("moved_by")[:limit]


def runs_of(
    *, project: Project, prompt: PromptTemplate | None = None, status: str | None = None
) -> QuerySet[PromptRun]:
    qs = PromptRun.objects.filter(project=project).select_related(
        "version__prompt", "created_by", "task__build"
    )
    if prompt is not None:
        qs = qs.filter(version__prompt=prompt)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def get_run(*, project: Project, run_id: int) -> PromptRun:
    run = runs_of(project=project).filter(id=run_id).first()
    if run is None:
        raise NotFound(f"No prompt run {run_id} in '{project.slug}'.")
    return run


def runs_of_build(*, build: Any) -> QuerySet[PromptRun]:
    """The runs a build's steps stored (every attempt's), oldest first: only the columns
    a listing shows (an evaluation build holds thousands of runs with long texts)."""
    return (
        PromptRun.objects.filter(task__build=build)
        .select_related("version__prompt", "task")
        .only(
            "id",
            "status",
            "cached",
            "created_at",
            "task",
            "task__name",
            "version",
            "version__number",
            "version__prompt",
            "version__prompt__name",
        )  # fmt: skip
        .order_by("created_at", "id")
    )


def revisions_from_run(*, run: PromptRun) -> QuerySet[Any]:
    """The document revisions whose text used this run's output. The relation is the
    documentation engine's (its Revision.prompt_runs); read through it, nothing of that
    app is imported."""
    return run.document_revisions.select_related("document").order_by("id")


@dataclass
class BuildUsage:
    build: Build
    tasks: list[str]  # the names of its tasks whose prompt steps ran the version


def version_usage(*, version: PromptVersion, limit: int, offset: int = 0) -> list[BuildUsage]:
    """The builds that ran `version` (from the runs their prompt steps stored), newest
    first. A task restored from the build cache ran nothing: its build is not counted;
    the build that made the cached result is."""
    builds = list(
        Build.objects.filter(tasks__prompt_runs__version=version)
        .select_related("pipeline")
        .distinct()
        .order_by("-created_at", "-id")[offset : offset + limit]
    )
    names: dict[int, set[str]] = {}
    for build_id, name in (
        PromptRun.objects.filter(version=version, task__build__in=[b.id for b in builds])
        .order_by()
        .values_list("task__build_id", "task__name")
        .distinct()
    ):
        names.setdefault(build_id, set()).add(name)
    return [BuildUsage(build=b, tasks=sorted(names.get(b.id, ()))) for b in builds]


def builtin_offline(project: Project) -> ProviderConfig:
    """The offline provider every project has without configuring it (not saved)."""
    return ProviderConfig(project=project, name=BUILTIN_OFFLINE, kind="offline", model="offline")


def providers_of(*, project: Project) -> list[ProviderConfig]:
    configured = list(ProviderConfig.objects.filter(project=project).order_by("name"))
    return [builtin_offline(project), *configured]


def provider_names(*, project: Project) -> set[str]:
    return {
        BUILTIN_OFFLINE,
        *ProviderConfig.objects.filter(project=project).values_list("name", flat=True),
    }


def provider_config(*, project: Project, name: str) -> ProviderConfig:
    if name == BUILTIN_OFFLINE:
        return builtin_offline(project)
    config = ProviderConfig.objects.filter(project=project, name=name).first()
    if config is None:
        raise InvalidInput(
            [Problem(f"provider '{name}' is not configured in '{project.slug}'", where="provider")]
        )
    return config


def provider_label(config: ProviderConfig) -> str:
    return OFFLINE_LABEL if config.kind == "offline" else f"{config.kind} {config.base_url}"
