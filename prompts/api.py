"""Prompt library API under /api/projects/{slug}/: parse input, call a service or a
selector, shape the output. API keys are write-only: no response ever contains one."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ninja import Query, Router, Schema, Status
from pydantic import Field

from buildsite.errors import NotFound
from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors, services
from .refs import LATEST, selector_ref
from .spec import diff

router = Router(tags=["prompts"])


class VersionIn(Schema):
    template: str | None = None
    messages: list[dict[str, Any]] | None = None
    variables: dict[str, Any] | list[str] | None = None
    response_format: str | None = None
    response_schema: dict[str, Any] | None = None
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_repairs: int | None = None
    note: str = ""


class PromptIn(VersionIn):
    name: str
    description: str = ""


class CreatedOut(Schema):
    name: str
    version: int


class VersionCreatedOut(Schema):
    version: int


class VersionOut(Schema):
    version: int
    template: str
    messages: list[dict[str, Any]]
    variables: dict[str, Any]
    provider: str
    model: str
    temperature: float
    max_tokens: int | None
    response_format: str
    response_schema: dict[str, Any] | None
    max_repairs: int
    note: str
    labels: list[str]
    created_by: str | None
    created_at: datetime


class PromptSummary(Schema):
    name: str
    description: str
    latest: int | None
    labels: dict[str, int]


class LabelMoveOut(Schema):
    label: str
    from_version: int | None
    to_version: int | None
    moved_by: str | None
    moved_at: datetime
    evaluation: int | None  # the evaluation that allowed a gated label's move
    forced: bool
    reason: str


class PromptDetail(PromptSummary):
    created_by: str | None
    created_at: datetime
    versions: list[VersionOut]
    label_history: list[LabelMoveOut]


class LabelIn(Schema):
    version: int
    force: bool = False  # maintainers: move a gated label without a passing evaluation
    reason: str = ""  # required with force


class LabelOut(Schema):
    name: str
    label: str
    version: int


class RenderIn(Schema):
    variables: dict[str, Any] = {}
    label: str | None = None
    version: int | None = None


class MessageOut(Schema):
    role: str
    content: str


class RenderOut(Schema):
    version: int
    messages: list[MessageOut]


class RunIn(RenderIn):
    cache: bool | None = None


class RunOut(Schema):
    id: int
    status: str
    output: str
    parsed: Any = None
    error: str
    tokens_in: int
    tokens_out: int
    cached: bool
    cost_usd: Decimal | None
    latency_ms: int
    prompt: str
    version: int
    provider: str
    model: str
    created_at: datetime
    task_id: int | None
    build_id: int | None


class RunDetail(RunOut):
    variables: dict[str, Any]
    rendered: list[dict[str, Any]]
    raw_response: str
    attempts: list[dict[str, Any]]


class DiffOut(Schema):
    name: str
    from_version: int
    to_version: int
    changes: list[dict[str, Any]]
    unified: str


class ProviderIn(Schema):
    name: str
    kind: str
    base_url: str = ""
    model: str = ""
    api_key_env: str = ""
    api_key: str | None = None
    api_key_secret: str = ""
    price_in: Decimal | None = None
    price_out: Decimal | None = None
    timeout: float | None = None
    max_retries: int | None = None


class ProviderOut(Schema):
    name: str
    kind: str
    label: str
    builtin: bool
    base_url: str
    model: str
    api_key_env: str
    api_key_secret: str
    has_stored_key: bool
    price_in: Decimal | None
    price_out: Decimal | None
    timeout: float
    max_retries: int


def version_out(version, labels: dict[int, list[str]] | None = None) -> dict[str, Any]:
    return {
        "version": version.number,
        **{k: v for k, v in version.as_spec().items()},
        "template": version.template,
        "note": version.note,
        "labels": (labels or {}).get(version.number, []),
        "created_by": version.created_by.username if version.created_by else None,
        "created_at": version.created_at,
    }


def _labels_by_number(prompt) -> dict[int, list[str]]:
    by_number: dict[int, list[str]] = {}
    for label, number in sorted(selectors.labels_of(prompt=prompt).items()):
        by_number.setdefault(number, []).append(label)
    return by_number


def run_out(run, *, detail: bool = False) -> dict[str, Any]:
    data = {
        "id": run.id,
        "status": run.status,
        "output": run.output,
        "parsed": run.parsed,
        "error": run.error,
        "tokens_in": run.tokens_in,
        "tokens_out": run.tokens_out,
        "cached": run.cached,
        "cost_usd": run.cost_usd,
        "latency_ms": run.latency_ms,
        "prompt": run.version.prompt.name,
        "version": run.version.number,
        "provider": run.provider,
        "model": run.model,
        "created_at": run.created_at,
        "task_id": run.task_id,
        "build_id": run.task.build_id if run.task_id else None,
    }
    if detail:
        data.update(
            variables=run.variables,
            rendered=run.rendered,
            raw_response=run.raw_response,
            attempts=run.attempts,
        )
    return data


def provider_out(config) -> dict[str, Any]:
    return {
        "name": config.name,
        "kind": config.kind,
        "label": selectors.provider_label(config),
        "builtin": config.pk is None,
        "base_url": config.base_url,
        "model": config.model,
        "api_key_env": config.api_key_env,
        "api_key_secret": config.api_key_secret,
        "has_stored_key": config.has_stored_key,
        "price_in": config.price_in_per_mtok,
        "price_out": config.price_out_per_mtok,
        "timeout": config.timeout_seconds,
        "max_retries": config.max_retries,
    }


def _body(data: VersionIn) -> dict[str, Any]:
    return data.model_dump(exclude={"name", "description", "note"}, exclude_unset=True)


# --- prompts and versions ---------------------------------------------------------------
@router.post("/{slug}/prompts", response={201: CreatedOut})
def create_prompt(request, slug: str, body: PromptIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    version = services.create_prompt(
        user=request.user,
        project=project,
        name=body.name,
        body=_body(body),
        description=body.description,
    )
    return Status(201, {"name": body.name, "version": version.number})


@router.get("/{slug}/prompts", response=list[PromptSummary])
def list_prompts(request, slug: str):
    project = get_project(user=request.user, slug=slug)
    return [
        {
            "name": p.name,
            "description": p.description,
            "latest": p.latest_number,
            "labels": {
                **{label.name: label.version.number for label in p.labels.all()},
                **({LATEST: p.latest_number} if p.latest_number else {}),
            },
        }
        for p in selectors.prompts_of(project=project)
    ]


@router.get("/{slug}/prompts/{name}", response=PromptDetail)
def prompt_detail(request, slug: str, name: str):
    project = get_project(user=request.user, slug=slug)
    prompt = selectors.get_prompt(project=project, name=name)
    labels = selectors.labels_of(prompt=prompt)
    by_number = _labels_by_number(prompt)
    return {
        "name": prompt.name,
        "description": prompt.description,
        "latest": labels.get(LATEST),
        "labels": labels,
        "created_by": prompt.created_by.username if prompt.created_by else None,
        "created_at": prompt.created_at,
        "versions": [version_out(v, by_number) for v in selectors.versions_of(prompt=prompt)],
        "label_history": [
            {
                "label": m.label,
                "from_version": m.from_number,
                "to_version": m.to_number,
                "moved_by": m.moved_by.username if m.moved_by else None,
                "moved_at": m.moved_at,
                "evaluation": m.evaluation_id,
                "forced": m.forced,
                "reason": m.reason,
            }
            for m in selectors.label_history(prompt=prompt)
        ],
    }


@router.post("/{slug}/prompts/{name}/versions", response={201: VersionCreatedOut})
def add_version(request, slug: str, name: str, body: VersionIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    version = services.add_version(
        user=request.user, project=project, name=name, body=_body(body), note=body.note
    )
    return Status(201, {"version": version.number})


@router.get("/{slug}/prompts/{name}/versions", response=list[VersionOut])
def list_versions(request, slug: str, name: str):
    project = get_project(user=request.user, slug=slug)
    prompt = selectors.get_prompt(project=project, name=name)
    by_number = _labels_by_number(prompt)
    return [version_out(v, by_number) for v in selectors.versions_of(prompt=prompt)]


@router.get("/{slug}/prompts/{name}/versions/{number}", response=VersionOut)
def get_version(request, slug: str, name: str, number: int):
    project = get_project(user=request.user, slug=slug)
    prompt = selectors.get_prompt(project=project, name=name)
    return version_out(
        selectors.get_version(prompt=prompt, number=number), _labels_by_number(prompt)
    )


# Past any real number of builds; the databases take OFFSET as a signed 64-bit integer, so
# an unbounded one was a 500.
MAX_USAGE_OFFSET = 1_000_000


class UsageQuery(Schema):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=MAX_USAGE_OFFSET)


class UsageOut(Schema):
    build: int
    pipeline: str
    state: str
    created_at: datetime
    finished_at: datetime | None
    tasks: list[str]


@router.get("/{slug}/prompts/{name}/versions/{number}/usage", response=list[UsageOut])
def version_usage(request, slug: str, name: str, number: int, query: Query[UsageQuery]):
    """The builds whose prompt steps ran this version, newest first."""
    project = get_project(user=request.user, slug=slug)
    version = selectors.get_version(
        prompt=selectors.get_prompt(project=project, name=name), number=number
    )
    return [
        {
            "build": u.build.id,
            "pipeline": u.build.pipeline.name,
            "state": u.build.state,
            "created_at": u.build.created_at,
            "finished_at": u.build.finished_at,
            "tasks": u.tasks,
        }
        for u in selectors.version_usage(version=version, limit=query.limit, offset=query.offset)
    ]


class DiffQuery(Schema):
    from_: int = Field(..., alias="from", ge=1)
    to: int = Field(..., ge=1)


@router.get("/{slug}/prompts/{name}/diff", response=DiffOut)
def diff_versions(request, slug: str, name: str, query: Query[DiffQuery]):
    project = get_project(user=request.user, slug=slug)
    prompt = selectors.get_prompt(project=project, name=name)
    old = selectors.get_version(prompt=prompt, number=query.from_)
    new = selectors.get_version(prompt=prompt, number=query.to)
    result = diff(
        old.as_spec(),
        new.as_spec(),
        old_name=f"{name}#{old.number}",
        new_name=f"{name}#{new.number}",
    )
    return {"name": name, "from_version": old.number, "to_version": new.number, **result}


@router.put("/{slug}/prompts/{name}/labels/{label}", response=LabelOut)
def set_label(request, slug: str, name: str, label: str, body: LabelIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    services.set_label(
        user=request.user,
        project=project,
        name=name,
        label=label,
        number=body.version,
        force=body.force,
        reason=body.reason,
    )
    return {"name": name, "label": label, "version": body.version}


@router.delete("/{slug}/prompts/{name}/labels/{label}", response={204: None})
def remove_label(request, slug: str, name: str, label: str):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    services.remove_label(user=request.user, project=project, name=name, label=label)
    return Status(204, None)


# --- rendering and runs -----------------------------------------------------------------
@router.post("/{slug}/prompts/{name}/render", response=RenderOut)
def render(request, slug: str, name: str, body: RenderIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    ref = selector_ref(name, label=body.label, version=body.version)
    version, messages = services.render(
        user=request.user, project=project, ref=ref, variables=body.variables
    )
    return {"version": version.number, "messages": messages}


@router.post("/{slug}/prompts/{name}/runs", response=RunOut)
def run(request, slug: str, name: str, body: RunIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    ref = selector_ref(name, label=body.label, version=body.version)
    result = services.run_prompt(
        user=request.user,
        project=project,
        ref=ref,
        variables=body.variables,
        cache_mode=body.cache,
    )
    return run_out(result)


class RunsQuery(Schema):
    status: str | None = None
    limit: int = Field(50, ge=1, le=500)


@router.get("/{slug}/prompts/{name}/runs", response=list[RunOut])
def list_runs(request, slug: str, name: str, query: Query[RunsQuery]):
    project = get_project(user=request.user, slug=slug)
    prompt = selectors.get_prompt(project=project, name=name)
    runs = selectors.runs_of(project=project, prompt=prompt, status=query.status)
    return [run_out(r) for r in runs[: query.limit]]


@router.get("/{slug}/prompts/{name}/runs/{run_id}", response=RunDetail)
def run_detail(request, slug: str, name: str, run_id: int):
    project = get_project(user=request.user, slug=slug)
    found = selectors.get_run(project=project, run_id=run_id)
    if found.version.prompt.name != name:
        raise NotFound(f"Prompt '{name}' has no run {run_id}.")
    return run_out(found, detail=True)


# --- providers ----------------------------------------------------------------------------
@router.post("/{slug}/providers", response={200: ProviderOut, 201: ProviderOut})
def save_provider(request, slug: str, body: ProviderIn):
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    config, created = services.save_provider(
        user=request.user,
        project=project,
        name=body.name,
        kind=body.kind,
        base_url=body.base_url,
        model=body.model,
        api_key_env=body.api_key_env,
        api_key=body.api_key,
        api_key_secret=body.api_key_secret,
        price_in=body.price_in,
        price_out=body.price_out,
        timeout=body.timeout,
        max_retries=body.max_retries,
    )
    return Status(201 if created else 200, provider_out(config))


@router.get("/{slug}/providers", response=list[ProviderOut])
def list_providers(request, slug: str):
    project = get_project(user=request.user, slug=slug)
    return [provider_out(c) for c in selectors.providers_of(project=project)]


@router.delete("/{slug}/providers/{name}", response={204: None})
def delete_provider(request, slug: str, name: str):
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    services.delete_provider(user=request.user, project=project, name=name)
    return Status(204, None)
