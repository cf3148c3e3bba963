"""Dataset pages: /p/<slug>/datasets/ (list, create) and /p/<slug>/datasets/<name>/
(items of any version, add an item, upload JSONL, export, delete); the prompt page's
evaluations section (registered with prompts.sections), an evaluation's page and the
comparison of two. Every write goes through the services, as the API's do."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators import http as http_decorators

from buildsite.errors import DomainError, InvalidInput, NotFound, Problem
from buildsite.models import Project
from buildsite.pages import View, page, problem_messages, project_context
from buildsite.roles import Role
from buildsite.selectors import get_project
from prompts import selectors as prompt_selectors
from prompts.refs import LATEST

from . import compare, selectors, services
from .assertions import KEYS
from .models import Evaluation

require_http_methods: Callable[[list[str]], Callable[[View], View]] = (
    http_decorators.require_http_methods
)
PAGE_ITEMS = 500
SECTION_EVALUATIONS = 20  # newest shown on the prompt page
CHOICES = 100  # newest evaluations offered to compare with


@page
@require_http_methods(["GET", "POST"])
def datasets(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    if request.method == "POST":
        get_project(user=request.user, slug=slug, role=Role.EDITOR)
        name = request.POST.get("name", "").strip()
        try:
            services.create_dataset(
                user=request.user,
                project=project,
                name=name,
                description=request.POST.get("description", "").strip(),
            )
        except DomainError as exc:
            context = _list_context(
                request, project, problems=problem_messages(exc), form=request.POST
            )
            return render(request, "evals/datasets.html", context, status=exc.status)
        return redirect("dataset", slug=slug, name=name)
    return render(request, "evals/datasets.html", _list_context(request, project))


def _list_context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    return project_context(
        request, project, datasets=selectors.datasets_of(project=project), **extra
    )


@page
@require_http_methods(["GET", "POST"])
def dataset(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    selectors.get_dataset(project=project, name=name)  # 404 before any form is read
    if request.method == "POST":
        get_project(user=request.user, slug=slug, role=Role.EDITOR)
        try:
            done = _act(request, project, name)
        except DomainError as exc:
            context = _detail_context(
                request, project, name, problems=problem_messages(exc), form=request.POST
            )
            return render(request, "evals/dataset.html", context, status=exc.status)
        messages.success(request, done)
        if request.POST.get("action") == "delete-dataset":
            return redirect("datasets", slug=slug)
        return redirect("dataset", slug=slug, name=name)
    return render(request, "evals/dataset.html", _detail_context(request, project, name))


def _act(request: HttpRequest, project: Project, name: str) -> str:
    """One form's action; the message to show after it."""
    action, user = request.POST.get("action", ""), request.user
    if action == "add":
        number, version = services.add_item(
            user=user,
            project=project,
            name=name,
            variables=_json_field(request, "variables", {}),
            expect=_json_field(request, "expect", []),
        )
        return f"Added item {number}: version {version}."
    if action == "upload":
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput([Problem("choose a JSONL file to upload", where="file")])
        data = upload.read(services.MAX_UPLOAD_BYTES + 1)
        added, version = services.upload_items_jsonl(
            user=user, project=project, name=name, data=data
        )
        return f"Uploaded {added} items: version {version}."
    if action == "delete-item":
        number = _int(request.POST.get("item", ""), "item")
        version = services.delete_item(user=user, project=project, name=name, number=number)
        return f"Removed item {number}: version {version}."
    if action == "describe":
        description = request.POST.get("description", "").strip()
        services.update_dataset(user=user, project=project, name=name, description=description)
        return "Saved the description."
    if action == "delete-dataset":
        services.delete_dataset(user=user, project=project, name=name)
        return f"Deleted dataset {name}."
    raise InvalidInput([Problem(f"unknown action {action[:50]!r}", where="action")])


def _json_field(request: HttpRequest, field: str, default: Any) -> Any:
    text = request.POST.get(field, "").strip()
    if not text:
        return default
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise InvalidInput([Problem(f"not JSON: {str(exc)[:150]}", where=field)]) from None


def _int(text: str, field: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise InvalidInput([Problem("a whole number", where=field)])
    return int(text)


def _detail_context(
    request: HttpRequest, project: Project, name: str, **extra: Any
) -> dict[str, Any]:
    current = selectors.get_dataset(project=project, name=name)
    asked = request.GET.get("version", "")
    if asked and not (asked.isdigit() and len(asked) <= 9):
        raise NotFound(f"Dataset '{name}' has no version {asked[:20]!r}.")
    version = selectors.check_version(current, int(asked) if asked else None)
    items = [
        (i.number, json.dumps(i.variables, indent=1), json.dumps(i.expect, indent=1))
        for i in selectors.items_at(current, version)[:PAGE_ITEMS]
    ]
    return project_context(
        request,
        project,
        dataset=current,
        version=version,
        versions=range(current.version, -1, -1),
        items=items,
        page_items=PAGE_ITEMS,
        assertion_types=list(KEYS),
        max_upload_mib=services.MAX_UPLOAD_BYTES // (1024 * 1024),
        **extra,
    )


# --- evaluations ------------------------------------------------------------------------
def prompt_section(*, request: HttpRequest, project: Project, prompt: Any) -> dict[str, Any]:
    """The prompt page's "Evaluations" section: the newest evaluations and, for editors,
    the form that starts one (posted to `start_evaluation`)."""
    shown = selectors.evaluations_of(project=project, prompt=prompt)[:SECTION_EVALUATIONS]
    return {
        "template": "evals/_prompt_evaluations.html",
        "evaluations": _summaries(list(shown)),
        "limit": SECTION_EVALUATIONS,
        "datasets": selectors.datasets_of(project=project),
        "labels": sorted(prompt_selectors.labels_of(prompt=prompt).items()),
        "versions": prompt.versions.order_by("-number").values_list("number", flat=True),
        "providers": prompt_selectors.providers_of(project=project),
    }


@page
@require_http_methods(["POST"])
def start_evaluation(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    prompt_selectors.get_prompt(project=project, name=name)  # 404 before the form is read
    try:
        version, label = _ref(request.POST.get("ref", "").strip())
        evaluation = services.start_evaluation(
            user=request.user,
            project=project,
            prompt_name=name,
            dataset_name=request.POST.get("dataset", "").strip(),
            version=version,
            label=label,
            provider=request.POST.get("provider", "").strip() or None,
            model=request.POST.get("model", "").strip() or None,
        )
    except DomainError as exc:
        messages.error(request, "Evaluation not started: " + "; ".join(problem_messages(exc)))
        return redirect("prompt-detail", slug=slug, name=name)
    messages.success(request, f"Started evaluation {evaluation.id} (build {evaluation.build_id}).")
    return redirect("evaluation", slug=slug, name=name, evaluation_id=evaluation.id)


def _ref(text: str) -> tuple[int | None, str | None]:
    """The form's `ref`: "#N" is version N, anything else a label (empty: latest)."""
    if not text.startswith("#"):
        return None, text or LATEST
    return _int(text[1:], "version"), None


@page
def evaluation(request: HttpRequest, slug: str, name: str, evaluation_id: int) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    prompt = prompt_selectors.get_prompt(project=project, name=name)
    found = selectors.get_evaluation(project=project, prompt=prompt, evaluation_id=evaluation_id)
    others = selectors.evaluations_of(project=project, prompt=prompt).exclude(id=found.id)
    context = project_context(
        request,
        project,
        prompt=prompt,
        evaluation=_summary(found),
        others=others[:CHOICES],
    )
    return render(request, "evals/evaluation.html", context)


@page
def compare_evaluations(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """Two evaluations of the prompt side by side (?a=&b=): regressions first."""
    project = get_project(user=request.user, slug=slug)
    prompt = prompt_selectors.get_prompt(project=project, name=name)
    context = project_context(
        request,
        project,
        prompt=prompt,
        choices=selectors.evaluations_of(project=project, prompt=prompt)[:CHOICES],
        form=request.GET,
    )
    problems = []
    ids: dict[str, int] = {}
    for field in ("a", "b"):
        text = request.GET.get(field, "").strip()
        if text.isdigit() and len(text) <= 9:
            ids[field] = int(text)
        else:
            problems.append(Problem("choose an evaluation (its id)", where=field))
    if problems:
        context["problems"] = problem_messages(InvalidInput(problems))
        return render(request, "evals/compare.html", context, status=422)
    a, b = (
        selectors.get_evaluation(project=project, prompt=prompt, evaluation_id=ids[f])
        for f in ("a", "b")
    )
    left, right = _summary(a), _summary(b)
    ra, rb = left["results"], right["results"]
    changes = compare.compare_items(
        ra.items, rb.items, a_name=f"evaluation {a.id}", b_name=f"evaluation {b.id}"
    )
    counts = {kind: 0 for kind in compare.ORDER}
    for change in changes:
        counts[change.change] += 1
    pass_delta = compare.delta(ra.pass_rate, rb.pass_rate)
    context.update(
        a=left,
        b=right,
        changes=[(c, compare.diff_lines(c.diff)) for c in changes],
        counts=counts,
        pass_delta_pct=None if pass_delta is None else round(pass_delta * 100, 1),
        cost_delta=compare.delta(ra.cost_usd, rb.cost_usd),
        latency_delta=compare.delta(ra.latency_ms, rb.latency_ms),
    )
    return render(request, "evals/compare.html", context)


def _summaries(evaluations: list[Evaluation]) -> list[dict[str, Any]]:
    """Evaluations and their results, with the pass rate as a percentage for pages."""
    results = selectors.results_of(evaluations)
    return [
        {"evaluation": e, "results": results[e.id], "pass_pct": _percent(results[e.id].pass_rate)}
        for e in evaluations
    ]


def _percent(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 1)


def _summary(evaluation: Evaluation) -> dict[str, Any]:
    return _summaries([evaluation])[0]
