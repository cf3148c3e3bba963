"""Prompt library pages: library, editor with preview, playground, runs, providers.

Each view parses the request, calls a selector or service, and renders; domain errors
become form messages (or 404/403), never a 500."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from buildsite.errors import DomainError, InvalidInput
from buildsite.pages import page, problem_messages, project_context
from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors, services
from .forms import form_values, label_move, variables_from, version_body
from .refs import LATEST, selector_ref
from .rendering import render_messages
from .sections import prompt_sections
from .spec import clean_version, diff


@page
def library(request, slug):
    project = get_project(user=request.user, slug=slug)
    context = project_context(request, project, prompts=selectors.prompts_of(project=project))
    context["form"] = form_values(None)
    context["providers"] = selectors.providers_of(project=project)
    if request.method == "POST":
        get_project(user=request.user, slug=slug, role=Role.EDITOR)
        name = request.POST.get("name", "").strip()
        try:
            services.create_prompt(
                user=request.user,
                project=project,
                name=name,
                body=version_body(request.POST),
                description=request.POST.get("description", ""),
            )
        except DomainError as exc:
            context.update(problems=problem_messages(exc), form=request.POST, name=name)
            return render(request, "prompts/library.html", context, status=422)
        messages.success(request, f"Prompt '{name}' created (version 1).")
        return redirect("prompt-detail", slug=slug, name=name)
    return render(request, "prompts/library.html", context)


@page
def detail(request, slug, name):
    """The prompt's versions and labels, and the editor for a new version with preview."""
    project = get_project(user=request.user, slug=slug)
    prompt = selectors.get_prompt(project=project, name=name)
    context = _detail_context(request, project, prompt)
    if request.method == "POST":
        get_project(user=request.user, slug=slug, role=Role.EDITOR)
        context["form"] = request.POST
        try:
            body = version_body(request.POST)
            if request.POST.get("action") == "preview":
                context["preview"] = _preview(body, request.POST.get("sample", ""))
            else:
                version = services.add_version(
                    user=request.user,
                    project=project,
                    name=name,
                    body=body,
                    note=request.POST.get("note", ""),
                )
                messages.success(request, f"Saved version {version.number}.")
                return redirect("prompt-detail", slug=slug, name=name)
        except DomainError as exc:
            context["problems"] = problem_messages(exc)
            return render(request, "prompts/detail.html", context, status=422)
    return render(request, "prompts/detail.html", context)


def _detail_context(request, project, prompt, **extra) -> dict:
    """What the prompt page shows; the label form's refusals render it again."""
    versions = list(selectors.versions_of(prompt=prompt))
    return project_context(
        request,
        project,
        prompt=prompt,
        versions=versions,
        labels=selectors.labels_of(prompt=prompt),
        history=selectors.label_history(prompt=prompt, limit=20),
        providers=selectors.providers_of(project=project),
        form=form_values(versions[0] if versions else None),
        sample=request.POST.get("sample", "{}"),
        sections=prompt_sections(request=request, project=project, prompt=prompt),
        **extra,
    )


def _preview(body: dict, sample: str) -> list[dict[str, str]]:
    """Render an unsaved version with sample variables (validated like a save)."""
    spec = clean_version(body)
    try:
        values = json.loads(sample or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"sample variables: not valid JSON: {exc.msg}") from exc
    return render_messages(
        template=spec["template"],
        messages=spec["messages"] or None,
        declared=spec["variables"],
        given=values,
    )


@page
@require_POST
def set_label(request, slug, name):
    """Point or remove a label. A refused move (a gate's 409, a forced move without a
    reason) shows the page again with the message in the label form, its fields kept."""
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    prompt = selectors.get_prompt(project=project, name=name)
    try:
        if request.POST.get("action") == "remove":
            label = request.POST.get("label", "").strip()
            services.remove_label(user=request.user, project=project, name=name, label=label)
            messages.success(request, f"Removed label '{label}'.")
        else:
            move = label_move(request.POST)
            services.set_label(user=request.user, project=project, name=name, **move)
            forced = " (forced)" if move["force"] else ""
            messages.success(
                request, f"'{move['label']}' now points to version {move['number']}{forced}."
            )
    except DomainError as exc:
        context = _detail_context(
            request, project, prompt, label_form=request.POST, label_problems=problem_messages(exc)
        )
        return render(request, "prompts/detail.html", context, status=exc.status)
    return redirect("prompt-detail", slug=slug, name=name)


@page
def diff_page(request, slug, name):
    project = get_project(user=request.user, slug=slug)
    prompt = selectors.get_prompt(project=project, name=name)
    try:
        old_n, new_n = int(request.GET.get("from", "")), int(request.GET.get("to", ""))
    except ValueError:
        raise Http404("choose two versions") from None
    old = selectors.get_version(prompt=prompt, number=old_n)
    new = selectors.get_version(prompt=prompt, number=new_n)
    result = diff(
        old.as_spec(), new.as_spec(), old_name=f"{name}#{old_n}", new_name=f"{name}#{new_n}"
    )
    return render(
        request,
        "prompts/diff.html",
        project_context(request, project, prompt=prompt, old=old, new=new, result=result),
    )


@page
def playground(request, slug, name):
    """Render and run a version with given variables."""
    project = get_project(user=request.user, slug=slug)
    prompt = selectors.get_prompt(project=project, name=name)
    labels = selectors.labels_of(prompt=prompt)
    chosen = request.POST.get("ref") or request.GET.get("ref") or LATEST
    context = project_context(
        request,
        project,
        prompt=prompt,
        labels=labels,
        chosen=chosen,
        versions=list(selectors.versions_of(prompt=prompt)),
    )
    try:
        ref = (
            selector_ref(name, label=None, version=int(chosen[1:]))
            if chosen.startswith("#")
            else selector_ref(name, label=chosen, version=None)
        )
        version = selectors.resolve_version(prompt=prompt, ref=ref)
    except (DomainError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
        return redirect("prompt-playground", slug=slug, name=name)
    context.update(
        version=version, values={n: request.POST.get(f"var:{n}", "") for n in version.variables}
    )
    if request.method == "POST":
        get_project(user=request.user, slug=slug, role=Role.EDITOR)
        variables = variables_from(request.POST, version.variables)
        try:
            if request.POST.get("action") == "run":
                cache_mode = (
                    None
                    if request.POST.get("cache", "auto") == "auto"
                    else (request.POST.get("cache") == "on")
                )
                context["run"] = services.run_prompt(
                    user=request.user,
                    project=project,
                    ref=ref,
                    variables=variables,
                    cache_mode=cache_mode,
                )
                context["rendered"] = context["run"].rendered
            else:
                _, context["rendered"] = services.render(
                    user=request.user, project=project, ref=ref, variables=variables
                )
        except DomainError as exc:
            context["problems"] = problem_messages(exc)
            return render(request, "prompts/playground.html", context, status=422)
    return render(request, "prompts/playground.html", context)


@page
def runs(request, slug):
    project = get_project(user=request.user, slug=slug)
    prompt = None
    if request.GET.get("prompt"):
        prompt = selectors.get_prompt(project=project, name=request.GET["prompt"])
    status = request.GET.get("status") or None
    qs = selectors.runs_of(project=project, prompt=prompt, status=status)[:200]
    return render(
        request,
        "prompts/runs.html",
        project_context(request, project, runs=qs, prompt=prompt, status=status),
    )


@page
def run_detail(request, slug, run_id):
    project = get_project(user=request.user, slug=slug)
    run = selectors.get_run(project=project, run_id=run_id)
    return render(
        request,
        "prompts/run.html",
        project_context(
            request,
            project,
            run=run,
            revisions=selectors.revisions_from_run(run=run),
            parsed_json=json.dumps(run.parsed, indent=2, ensure_ascii=False),
            variables_json=json.dumps(run.variables, indent=2, ensure_ascii=False),
        ),
    )


@page
def providers(request, slug):
    project = get_project(user=request.user, slug=slug)
    context = project_context(request, project, providers=selectors.providers_of(project=project))
    if request.method == "POST":
        get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
        data = request.POST
        try:
            if data.get("action") == "delete":
                services.delete_provider(
                    user=request.user, project=project, name=data.get("name", "")
                )
                messages.success(request, f"Removed provider '{data.get('name')}'.")
                return redirect("prompt-providers", slug=slug)
            config, created = services.save_provider(
                user=request.user,
                project=project,
                name=data.get("name", "").strip(),
                kind=data.get("kind", ""),
                base_url=data.get("base_url", "").strip(),
                model=data.get("model", "").strip(),
                api_key_env=data.get("api_key_env", "").strip(),
                api_key_secret=data.get("api_key_secret", "").strip(),
                # an empty field keeps the stored key; "clear" removes it
                api_key=("" if data.get("clear_key") else (data.get("api_key") or None)),
                price_in=data.get("price_in") or None,
                price_out=data.get("price_out") or None,
                timeout=float(data["timeout"]) if data.get("timeout") else None,
                max_retries=int(data["max_retries"]) if data.get("max_retries") else None,
            )
        except ValueError:
            context["problems"] = ["timeout and max_retries must be numbers"]
            return render(request, "prompts/providers.html", context, status=422)
        except DomainError as exc:
            context.update(problems=problem_messages(exc), form=data)
            return render(request, "prompts/providers.html", context, status=422)
        messages.success(request, f"Provider '{config.name}' {'added' if created else 'saved'}.")
        return redirect("prompt-providers", slug=slug)
    return render(request, "prompts/providers.html", context)
