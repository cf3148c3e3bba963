"""Seeding the demo project (`manage.py seed_demo`, run by `make run` on every start).

One transaction; safe to run again. Everything is first-run content, written only
when it is missing, so what a user changed, removed or added afterwards is left alone:
each pipeline (by name), the prompt (its two versions, `production` on #1, the dataset
and the gate come with it), the documents (when the project has none). Builds are started
only when there is nothing to show yet: a pipeline's first build, and one evaluation
of each version that has none on the dataset. They are dispatched when the
transaction commits, so the workers of `manage.py up` run them.

Everything is written as the admin user, through each app's services: the document
step of the release build writes as the build's author, so its builds need one.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import transaction

from builds.models import Build, Pipeline, ResourcePool
from builds.services import save_pipeline, trigger_build
from buildsite.models import Membership, Project
from buildsite.roles import Role
from buildsite.services import create_project
from evals import services as evals_services
from evals.models import Dataset, Evaluation
from prompts import services as prompt_services

from . import content

CPU_CAPACITY = 2


@dataclass
class Seeded:
    """What one run wrote, for the command's report."""

    project: Project
    created_project: bool
    pipelines: dict[str, int] = field(default_factory=dict)  # name -> version number
    created: list[str] = field(default_factory=list)  # "prompt release-notes", ...
    builds: list[Build] = field(default_factory=list)  # started by this run
    evaluations: list[Evaluation] = field(default_factory=list)  # started by this run


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def seed_demo(*, admin: Any) -> Seeded:
    """Create or complete the demo project as `admin` (a superuser)."""
    project = Project.objects.filter(slug=content.PROJECT_SLUG).first()
    created_project = project is None
    if project is None:
        project = create_project(
            creator=admin, slug=content.PROJECT_SLUG, name=content.PROJECT_NAME
        )
    else:
        Membership.objects.get_or_create(
            project=project, user=admin, defaults={"role": Role.MAINTAINER}
        )
    seeded = Seeded(project=project, created_project=created_project)
    # get_or_create, not set_pool: a capacity the team changed stays as it is.
    ResourcePool.objects.get_or_create(
        project=project, name="cpu", defaults={"capacity": CPU_CAPACITY}
    )
    for name, text in content.PIPELINES.items():
        # Only a missing pipeline is written: saving the seed's text again would turn a
        # team's edit into an older version on the next `make run`.
        if not Pipeline.objects.filter(project=project, name=name).exists():
            version = save_pipeline(user=admin, project=project, name=name, definition=text)
            seeded.pipelines[name] = version.number
    _seed_prompt(admin, project, seeded)
    _seed_documents(admin, project, seeded)
    _start_first_builds(admin, project, seeded)
    return seeded


def _seed_prompt(admin: Any, project: Project, seeded: Seeded) -> None:
    prompt_model = apps.get_model("prompts", "PromptTemplate")
    new_prompt = not prompt_model.objects.filter(project=project, name=content.PROMPT).exists()
    if new_prompt:
        prompt_services.create_prompt(
            user=admin,
            project=project,
            name=content.PROMPT,
            body=content.PROMPT_V1,
            description=content.PROMPT_DESCRIPTION,
        )
        prompt_services.add_version(
            user=admin,
            project=project,
            name=content.PROMPT,
            body=content.PROMPT_V2,
            note=content.PROMPT_V2_NOTE,
        )
        # Pointed before the gate exists, as a team adopting gates would have it: the
        # label predates the rule. The evaluations started below show #1 meets it.
        prompt_services.set_label(
            user=admin, project=project, name=content.PROMPT, label=content.GATED_LABEL, number=1
        )
        seeded.created.append(f"prompt {content.PROMPT} (#1, #2; {content.GATED_LABEL} → #1)")
    # With the prompt only: a dataset the team deleted stays deleted.
    if new_prompt and not Dataset.objects.filter(project=project, name=content.DATASET).exists():
        evals_services.create_dataset(
            user=admin,
            project=project,
            name=content.DATASET,
            description=content.DATASET_DESCRIPTION,
        )
        lines = "".join(json.dumps(item) + "\n" for item in content.DATASET_ITEMS)
        evals_services.upload_items_jsonl(
            user=admin, project=project, name=content.DATASET, data=lines.encode()
        )
        seeded.created.append(f"dataset {content.DATASET} ({len(content.DATASET_ITEMS)} items)")
    if new_prompt:
        evals_services.set_gate(
            user=admin,
            project=project,
            prompt_name=content.PROMPT,
            label=content.GATED_LABEL,
            dataset_name=content.DATASET,
            min_pass_rate=content.MIN_PASS_RATE,
        )
        seeded.created.append(
            f"gate on {content.GATED_LABEL}: pass rate ≥ {content.MIN_PASS_RATE:g}"
        )


def _seed_documents(admin: Any, project: Project, seeded: Seeded) -> None:
    """The documents, when the project has none (deleted ones count: a team that
    removed them does not get them back on the next start)."""
    # By name: docs_engine is outside mypy's strict set, and importing it would pull it in.
    document_model = apps.get_model("docs_engine", "Document")
    if document_model.objects.filter(project=project).exists():
        return
    docs = importlib.import_module("docs_engine.services")
    for path, title, body in content.DOCUMENTS:
        docs.save_document(
            user=admin,
            project=project,
            path=path,
            title=title,
            body=body,
            message="Written by the demo seed",
            publish=True,
        )
        seeded.created.append(f"document {path}")


def _start_first_builds(admin: Any, project: Project, seeded: Seeded) -> None:
    # The release first: its notes are what a newcomer looks for, and the workers take
    # the oldest ready tasks first.
    for name in ("release", "demo"):
        if not Build.objects.filter(project=project, pipeline__name=name).exists():
            seeded.builds.append(
                trigger_build(user=admin, project=project, pipeline=name, via="demo seed")
            )
    dataset = Dataset.objects.filter(project=project, name=content.DATASET).first()
    prompt_model = apps.get_model("prompts", "PromptTemplate")
    prompt = prompt_model.objects.filter(project=project, name=content.PROMPT).first()
    if dataset is None or prompt is None:
        return
    for number in (1, 2):
        done = Evaluation.objects.filter(
            prompt=prompt, dataset=dataset, version__number=number
        ).exists()
        if not done and prompt.versions.filter(number=number).exists():
            evaluation = evals_services.start_evaluation(
                user=admin,
                project=project,
                prompt_name=content.PROMPT,
                dataset_name=content.DATASET,
                version=number,
            )
            seeded.evaluations.append(evaluation)
            seeded.builds.append(evaluation.build)
