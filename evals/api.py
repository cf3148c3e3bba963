"""Datasets API under /api/projects/{slug}/datasets, and evaluations and label gates
under /api/projects/{slug}/prompts/{name}/: parse input, call a service or a selector,
shape the output. Viewers read; editors write and start evaluations; maintainers set
gates (the services check the roles)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router, Schema, Status
from pydantic import Field

from buildsite.errors import NotFound
from buildsite.roles import Role
from buildsite.selectors import get_project
from prompts import selectors as prompt_selectors

from . import compare, selectors, services
from .models import Dataset, Evaluation, LabelGate

PREFIX = "/projects"
router = Router(tags=["datasets"])
BASE = "/{slug}/datasets/{name}"


class DatasetIn(Schema):
    name: str
    description: str = ""


class DatasetPatch(Schema):
    description: str


class DatasetOut(Schema):
    name: str
    description: str
    version: int
    items: int
    created_at: datetime
    updated_at: datetime


class ItemIn(Schema):
    variables: dict[str, Any] = {}
    expect: list[Any] = []


class ItemOut(Schema):
    item: int
    variables: dict[str, Any]
    expect: list[Any]


class ItemChanged(Schema):
    item: int
    version: int


class UploadOut(Schema):
    added: int
    version: int


class VersionQuery(Schema):
    version: int | None = Field(None, description="a version of the dataset; default: current")


class ItemsQuery(VersionQuery):
    offset: int = Field(0, ge=0, le=100_000)
    limit: int = Field(1000, ge=1, le=1000)


def dataset_out(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "description": dataset.description,
        "version": dataset.version,
        "items": dataset.item_count,
        "created_at": dataset.created_at,
        "updated_at": dataset.updated_at,
    }


def _read(request: HttpRequest, slug: str, name: str) -> Dataset:
    project = get_project(user=request.user, slug=slug, role=Role.VIEWER)
    return selectors.get_dataset(project=project, name=name)


def _detail(project: Any, name: str) -> dict[str, Any]:
    return dataset_out(selectors.get_dataset(project=project, name=name))


@router.post("/{slug}/datasets", response={201: DatasetOut})
def create_dataset(request: HttpRequest, slug: str, body: DatasetIn) -> Status[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    dataset = services.create_dataset(
        user=request.user, project=project, name=body.name, description=body.description
    )
    return Status(201, _detail(project, dataset.name))


@router.get("/{slug}/datasets", response=list[DatasetOut])
def list_datasets(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.VIEWER)
    return [dataset_out(d) for d in selectors.datasets_of(project=project)]


@router.get(BASE, response=DatasetOut)
def dataset_detail(request: HttpRequest, slug: str, name: str) -> dict[str, Any]:
    return dataset_out(_read(request, slug, name))


@router.patch(BASE, response=DatasetOut)
def update_dataset(
    request: HttpRequest, slug: str, name: str, body: DatasetPatch
) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    services.update_dataset(
        user=request.user, project=project, name=name, description=body.description
    )
    return _detail(project, name)


@router.delete(BASE, response={204: None})
def delete_dataset(request: HttpRequest, slug: str, name: str) -> Status[None]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    services.delete_dataset(user=request.user, project=project, name=name)
    return Status(204, None)


@router.get(f"{BASE}/items", response=list[ItemOut])
def list_items(
    request: HttpRequest, slug: str, name: str, query: Query[ItemsQuery]
) -> list[dict[str, Any]]:
    dataset = _read(request, slug, name)
    version = selectors.check_version(dataset, query.version)
    items = selectors.items_at(dataset, version)[query.offset : query.offset + query.limit]
    return [{"item": i.number, "variables": i.variables, "expect": i.expect} for i in items]


@router.post(f"{BASE}/items", response={201: ItemChanged})
def add_item(request: HttpRequest, slug: str, name: str, body: ItemIn) -> Status[dict[str, int]]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    number, version = services.add_item(
        user=request.user, project=project, name=name, variables=body.variables, expect=body.expect
    )
    return Status(201, {"item": number, "version": version})


@router.put(f"{BASE}/items/{{int:item}}", response=ItemChanged)
def update_item(
    request: HttpRequest, slug: str, name: str, item: int, body: ItemIn
) -> dict[str, int]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    version = services.update_item(
        user=request.user,
        project=project,
        name=name,
        number=item,
        variables=body.variables,
        expect=body.expect,
    )
    return {"item": item, "version": version}


@router.delete(f"{BASE}/items/{{int:item}}", response=ItemChanged)
def delete_item(request: HttpRequest, slug: str, name: str, item: int) -> dict[str, int]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    version = services.delete_item(user=request.user, project=project, name=name, number=item)
    return {"item": item, "version": version}


@router.post(
    f"{BASE}/items/upload",
    response={201: UploadOut},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": 'One JSON object {"variables", "expect"} per line (JSONL).',
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
def upload_items(request: HttpRequest, slug: str, name: str) -> Status[dict[str, int]]:
    """The body is the JSONL text itself, whatever its content type: read here, not by
    the API's JSON-object parser. Read at most one byte over the limit, so a large body
    is refused without being held in memory."""
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    limit = services.MAX_UPLOAD_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise services.PayloadTooLarge(f"An upload holds at most {limit} bytes.")
    data = request.read(limit + 1)
    added, version = services.upload_items_jsonl(
        user=request.user, project=project, name=name, data=data
    )
    return Status(201, {"added": added, "version": version})


@router.get(
    f"{BASE}/items/export",
    openapi_extra={
        "responses": {
            200: {
                "description": 'One JSON object {"variables", "expect"} per line (JSONL).',
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            }
        }
    },
)
def export_items(
    request: HttpRequest, slug: str, name: str, query: Query[VersionQuery]
) -> StreamingHttpResponse:
    dataset = _read(request, slug, name)
    version = selectors.check_version(dataset, query.version)
    lines = services.export_lines(selectors.items_at(dataset, version).iterator(chunk_size=500))
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
    filename = f"{dataset.name}-v{version}.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- evaluations and gated labels -------------------------------------------------------
PROMPT = "/{slug}/prompts/{name}"


class EvaluationIn(Schema):
    dataset: str
    version: int | None = None
    label: str | None = None
    provider: str | None = None
    model: str | None = None


class EvaluationStarted(Schema):
    id: int
    build: int


class ItemResultOut(Schema):
    item: int
    state: str
    passed: bool | None
    score: float | None
    output: str | None
    failures: list[str]
    error: str


class EvaluationSummary(Schema):
    id: int
    build: int
    state: str
    version: int
    dataset: str
    dataset_version: int
    provider: str
    model: str
    passed: int
    failed: int
    pass_rate: float | None
    score: float | None
    cost_usd: Decimal | None
    tokens_in: int
    tokens_out: int
    created_by: str | None
    created_at: datetime


class EvaluationOut(EvaluationSummary):
    items: list[ItemResultOut]


class CompareQuery(Schema):
    a: int = Field(description="the evaluation compared from")
    b: int = Field(description="the evaluation compared to")


class CompareSummary(EvaluationSummary):
    latency_ms: float | None


class CompareSide(Schema):
    passed: bool | None
    output: str | None


class CompareItem(Schema):
    item: int
    change: str
    a: CompareSide | None
    b: CompareSide | None
    diff: str


class CompareOut(Schema):
    a: CompareSummary
    b: CompareSummary
    items: list[CompareItem]


class EvaluationsQuery(Schema):
    limit: int = Field(50, ge=1, le=200)


class GateIn(Schema):
    dataset: str
    # Any: checked by the service, so a wrong type is a 422 naming the field.
    min_pass_rate: Any = None


class GateOut(Schema):
    prompt: str
    label: str
    dataset: str
    min_pass_rate: float
    set_by: str | None
    set_at: datetime


def evaluation_out(
    evaluation: Evaluation, *, items: bool, results: selectors.Results | None = None
) -> dict[str, Any]:
    results = results or selectors.evaluation_results(evaluation)
    out: dict[str, Any] = {
        "id": evaluation.id,
        "build": evaluation.build_id,
        "state": results.state,
        "version": evaluation.version.number,
        "dataset": evaluation.dataset.name,
        "dataset_version": evaluation.dataset_version,
        "provider": evaluation.provider,
        "model": evaluation.model,
        "passed": results.passed,
        "failed": results.failed,
        "pass_rate": results.pass_rate,
        "score": results.score,
        "cost_usd": results.cost_usd,
        "tokens_in": results.tokens_in,
        "tokens_out": results.tokens_out,
        "created_by": evaluation.created_by.username if evaluation.created_by else None,
        "created_at": evaluation.created_at,
    }
    if items:
        out["items"] = [asdict(r) for r in results.items]
    return out


def comparison_out(a: Evaluation, b: Evaluation) -> dict[str, Any]:
    ra, rb = selectors.evaluation_results(a), selectors.evaluation_results(b)
    changes = compare.compare_items(
        ra.items, rb.items, a_name=f"evaluation {a.id}", b_name=f"evaluation {b.id}"
    )
    return {
        "a": {**evaluation_out(a, items=False, results=ra), "latency_ms": ra.latency_ms},
        "b": {**evaluation_out(b, items=False, results=rb), "latency_ms": rb.latency_ms},
        "items": [asdict(c) for c in changes],
    }


def gate_out(gate: LabelGate) -> dict[str, Any]:
    return {
        "prompt": gate.prompt.name,
        "label": gate.label,
        "dataset": gate.dataset.name,
        "min_pass_rate": gate.min_pass_rate,
        "set_by": gate.set_by.username if gate.set_by else None,
        "set_at": gate.set_at,
    }


@router.post(f"{PROMPT}/evaluations", response={201: EvaluationStarted})
def start_evaluation(
    request: HttpRequest, slug: str, name: str, body: EvaluationIn
) -> Status[dict[str, int]]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    evaluation = services.start_evaluation(
        user=request.user,
        project=project,
        prompt_name=name,
        dataset_name=body.dataset,
        version=body.version,
        label=body.label,
        provider=body.provider,
        model=body.model,
    )
    return Status(201, {"id": evaluation.id, "build": evaluation.build_id})


@router.get(f"{PROMPT}/evaluations", response=list[EvaluationSummary])
def list_evaluations(
    request: HttpRequest, slug: str, name: str, query: Query[EvaluationsQuery]
) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.VIEWER)
    prompt = prompt_selectors.get_prompt(project=project, name=name)
    evaluations = selectors.evaluations_of(project=project, prompt=prompt)[: query.limit]
    evaluations = list(evaluations)
    results = selectors.results_of(evaluations)
    return [evaluation_out(e, items=False, results=results[e.id]) for e in evaluations]


@router.get(f"{PROMPT}/evaluations/compare", response=CompareOut)
def compare_evaluations(
    request: HttpRequest, slug: str, name: str, query: Query[CompareQuery]
) -> dict[str, Any]:
    """Two evaluations of the prompt item by item (evals.compare); each must be one of
    this prompt's, else 404."""
    project = get_project(user=request.user, slug=slug, role=Role.VIEWER)
    prompt = prompt_selectors.get_prompt(project=project, name=name)
    a, b = (
        selectors.get_evaluation(project=project, prompt=prompt, evaluation_id=i)
        for i in (query.a, query.b)
    )
    return comparison_out(a, b)


@router.get(f"{PROMPT}/evaluations/{{int:evaluation_id}}", response=EvaluationOut)
def evaluation_detail(
    request: HttpRequest, slug: str, name: str, evaluation_id: int
) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug, role=Role.VIEWER)
    prompt = prompt_selectors.get_prompt(project=project, name=name)
    evaluation = selectors.get_evaluation(
        project=project, prompt=prompt, evaluation_id=evaluation_id
    )
    return evaluation_out(evaluation, items=True)


@router.put(f"{PROMPT}/labels/{{label}}/gate", response=GateOut)
def set_gate(
    request: HttpRequest, slug: str, name: str, label: str, body: GateIn
) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug, role=Role.VIEWER)
    gate = services.set_gate(
        user=request.user,
        project=project,
        prompt_name=name,
        label=label,
        dataset_name=body.dataset,
        min_pass_rate=body.min_pass_rate,
    )
    return gate_out(gate)


@router.get(f"{PROMPT}/labels/{{label}}/gate", response=GateOut)
def gate_detail(request: HttpRequest, slug: str, name: str, label: str) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug, role=Role.VIEWER)
    prompt = prompt_selectors.get_prompt(project=project, name=name)
    gate = selectors.gate_of(prompt=prompt, label=label)
    if gate is None:
        raise NotFound(f"Label '{label}' of prompt '{name}' has no gate.")
    return gate_out(gate)


@router.delete(f"{PROMPT}/labels/{{label}}/gate", response={204: None})
def remove_gate(request: HttpRequest, slug: str, name: str, label: str) -> Status[None]:
    project = get_project(user=request.user, slug=slug, role=Role.VIEWER)
    services.remove_gate(user=request.user, project=project, prompt_name=name, label=label)
    return Status(204, None)
