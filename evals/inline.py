"""Evaluations run inside one task, by a pipeline's `evaluate` step (a service).

The step does not start an evaluation build and wait for it: a task that holds a worker
while waiting on other tasks can deadlock a small cluster (two workers, two such steps).
It runs the items itself, one after the other, through the same prompt system (cache,
providers, runs linked to the task) and the same judging as an evaluation build's
`assert` steps (evals.judging). The Evaluation row is written at the start and as items
are judged, so it is listed with the prompt's evaluations, can be watched, and once
every item ran and was judged it justifies a gated label move like any other.

An item whose prompt cannot run (a provider error, an item variable the version does
not accept) is not judged: it is recorded with its error, the other items still run,
and the evaluation ends `failed`, as an evaluation build whose item task failed does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from builds.steps import StepContext
from buildsite.errors import DomainError, InvalidInput, Problem
from prompts import selectors as prompt_selectors
from prompts import services as prompt_services
from prompts.models import PromptRun
from prompts.refs import PromptRef

from . import selectors
from .judging import OUTPUT_CHARS, judge_run, mask_run
from .models import DatasetItem, Evaluation

PROGRESS_SECONDS = 2.0  # at most this often the item results are written while running
State = Evaluation.State


@dataclass(frozen=True)
class Outcome:
    evaluation: Evaluation
    results: selectors.Results
    # Why the step stopped before every item ran: "" (it did not), "cancelled", or a
    # sentence for the task's error.
    stopped: str = ""


def run_inline_evaluation(
    *,
    ctx: StepContext,
    ref: PromptRef,
    dataset_name: str,
    provider: str = "",
    model: str = "",
    timeout: float,
) -> Outcome:
    """Run the version `ref` resolves to (now: a label moving meanwhile changes
    nothing) over the current items of the dataset. Refuses (DomainError) before
    anything runs when the prompt, the dataset or the provider does not exist."""
    project, build = ctx.project, ctx.build
    deadline = time.monotonic() + timeout
    prompt = prompt_selectors.get_prompt(project=project, name=ref.name)
    version = prompt_selectors.resolve_version(prompt=prompt, ref=ref)
    dataset = selectors.datasets_of(project=project).filter(name=dataset_name).first()
    if dataset is None:
        message = f"no dataset '{dataset_name}' in project '{project.slug}'"
        raise InvalidInput([Problem(message, where="dataset")])
    if provider:
        prompt_selectors.provider_config(project=project, name=provider)  # refused if unknown
    items = list(selectors.items_at(dataset, dataset.version))
    if not items:
        message = f"dataset '{dataset.name}' has no items to evaluate"
        raise InvalidInput([Problem(message, where="dataset")])
    creator = build.triggered_by
    evaluation: Evaluation = Evaluation.objects.create(
        project=project,
        prompt=prompt,
        version=version,
        dataset=dataset,
        dataset_version=dataset.version,
        build=build,
        task=ctx.task,
        state=State.RUNNING,
        item_results=[_pending(item.number) for item in items],
        provider=provider,
        model=model,
        created_by=creator if creator is not None and creator.is_authenticated else None,
    )
    ctx.log(
        f"evaluation {evaluation.id}: {prompt.name}#{version.number} on dataset "
        f"{dataset.name} v{dataset.version} ({len(items)} items)\n"
    )
    pinned = PromptRef(prompt.name, None, version.number)
    try:
        stopped = _run_items(ctx, evaluation, items, pinned, deadline)
    except BaseException:
        # A bug or the worker going down mid-item: the evaluation must not stay running.
        _save(evaluation, State.FAILED)
        raise
    return Outcome(evaluation, selectors.evaluation_results(evaluation), stopped)


def _run_items(
    ctx: StepContext,
    evaluation: Evaluation,
    items: list[DatasetItem],
    ref: PromptRef,
    deadline: float,
) -> str:
    results: list[dict[str, Any]] = evaluation.item_results
    saved = time.monotonic()
    for index, item in enumerate(items):
        remaining = deadline - time.monotonic()
        if ctx.should_stop() or remaining <= 0:
            for rest in results[index:]:
                rest["state"] = "cancelled"
            if remaining <= 0:
                _save(evaluation, State.FAILED)
                return f"timed out after {index} of {len(items)} items"
            _save(evaluation, State.CANCELLED)
            return "cancelled"
        results[index] = _run_item(ctx, evaluation, item, ref, deadline)
        ctx.log(_line(results[index]))
        if time.monotonic() - saved >= PROGRESS_SECONDS:
            _save(evaluation, State.RUNNING)
            saved = time.monotonic()
    judged = all(r["passed"] is not None for r in results)
    _save(evaluation, State.SUCCEEDED if judged else State.FAILED)
    return ""


def _run_item(
    ctx: StepContext, evaluation: Evaluation, item: DatasetItem, ref: PromptRef, deadline: float
) -> dict[str, Any]:
    result = _pending(item.number)
    try:
        run = prompt_services.run_prompt(
            user=None,
            project=ctx.project,
            ref=ref,
            variables=item.variables,
            timeout=max(deadline - time.monotonic(), 0.001),  # checked > 0 by the caller
            task=ctx.task,
            actor=ctx.build.triggered_by,
            provider=evaluation.provider or None,
            model=evaluation.model or None,
        )
    except DomainError as exc:  # the item's variables do not fit the version
        return {**result, "state": "failed", "error": exc.message}
    mask_run(run, ctx)
    result.update(prompt_run=run.id, runs=[run.id])
    if run.status != PromptRun.Status.SUCCEEDED:
        return {**result, "state": "failed", "error": f"prompt run {run.id}: {run.error}"}
    judged = judge_run(run, item.expect, ctx, deadline=deadline)
    return {
        **result,
        "state": "succeeded",
        "passed": judged.result.passed,
        "score": judged.result.score,
        "output": run.output[:OUTPUT_CHARS],
        "failures": judged.result.failures,
        "runs": [run.id, *judged.judge_runs],
    }


def _pending(number: int) -> dict[str, Any]:
    return {
        "item": number,
        "state": "pending",
        "passed": None,
        "score": None,
        "output": None,
        "failures": [],
        "error": "",
        "prompt_run": None,
        "runs": [],
    }


def _line(result: dict[str, Any]) -> str:
    """One line of the task's log per item."""
    head = f"item {result['item']}"
    if result["passed"] is None:
        return f"{head}: not judged: {result['error']}\n"
    verdict = "passed" if result["passed"] else f"failed ({len(result['failures'])} assertion(s))"
    return f"{head}: {verdict}, score {result['score']:.3f} (run {result['prompt_run']})\n"


def _save(evaluation: Evaluation, state: str) -> None:
    evaluation.state = state
    evaluation.save(update_fields=["state", "item_results"])
