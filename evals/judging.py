"""Judging one stored prompt run against an item's assertions, inside a build step: the
assertion engine (evals.assertions) with `graded_by` judges run through the prompt
system (same providers and cache, attributed to the step's task). Shared by the
`assert` step (one item per task, in evaluation builds) and the `evaluate` step (every
item inside one task), so both judge alike."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from builds.steps import StepContext
from buildsite.errors import DomainError
from prompts import selectors as prompt_selectors
from prompts import services as prompt_services
from prompts.models import PromptRun
from prompts.refs import parse_ref
from prompts.steps import mask_run as mask_prompt_run
from vault.masking import Masker

from .assertions import GradeError, Result, evaluate

OUTPUT_CHARS = 2000  # of the answer kept with a result (the run keeps all of it)
JUDGE_OUTPUT = "output"  # the judge's variable that receives the answer


@dataclass(frozen=True)
class Judged:
    result: Result
    judge_runs: list[int] = field(default_factory=list)  # ids of the judges' runs


def judge_run(run: PromptRun, expect: list[Any], ctx: StepContext, *, deadline: float) -> Judged:
    """The verdict of `expect` on the run's answer (its latency and cost included).
    Failed assertions, a judge's bad answer included, are the verdict, not an error.
    Every judge gets the time left before `deadline` (time.monotonic()), so judging
    never runs a step past its own timeout."""
    judge_runs: list[int] = []

    def grade(ref_text: str, answer: str, variables: Mapping[str, Any]) -> float:
        return _grade(ctx, ref_text, answer, variables, deadline=deadline, runs=judge_runs)

    cost = float(run.cost_usd) if isinstance(run.cost_usd, Decimal) else None
    result = evaluate(
        expect,
        output=run.output,
        variables=run.variables,
        latency_ms=run.latency_ms,
        cost_usd=cost,
        grade=grade,
    )
    return Judged(result, judge_runs)


def mask_run(run: PromptRun, ctx: StepContext) -> None:
    """A run made by a step sits next to the task's log and outputs, which never show
    the project's secret values: masked the same way."""
    if ctx.hidden:
        mask_prompt_run(run, Masker(ctx.hidden))


def _grade(
    ctx: StepContext,
    ref_text: str,
    answer: str,
    variables: Mapping[str, Any],
    *,
    deadline: float,
    runs: list[int],
) -> float:
    """Run the judge prompt through the same providers and cache as any run, attributed
    to the task, with the answer as its `output` variable and those of the item's
    variables it declares (others would be refused as undeclared). It must answer a JSON
    object with a numeric `score`; anything else is a GradeError (a failed assertion)."""
    timeout = deadline - time.monotonic()
    if timeout <= 0:
        raise GradeError("no time left to run the judge (the step's timeout)")
    try:
        ref = parse_ref(ref_text, where="prompt")
        judge = prompt_selectors.resolve_version(
            prompt=prompt_selectors.get_prompt(project=ctx.project, name=ref.name), ref=ref
        )
        declared = set(judge.variables or {})
        given = {k: v for k, v in variables.items() if k in declared and k != JUDGE_OUTPUT}
        if JUDGE_OUTPUT in declared:
            given[JUDGE_OUTPUT] = answer
        run = prompt_services.run_prompt(
            user=None,
            project=ctx.project,
            ref=ref,
            variables=given,
            timeout=timeout,
            task=ctx.task,
            actor=ctx.build.triggered_by,
        )
    except DomainError as exc:
        raise GradeError(exc.message) from exc
    mask_run(run, ctx)
    runs.append(run.id)
    ctx.log(f"judge {ref} run {run.id}: {run.status}\n")
    if run.status != PromptRun.Status.SUCCEEDED:
        raise GradeError(f"run {run.id} failed: {run.error}")
    value = run.parsed
    if not isinstance(value, dict):
        try:
            value = json.loads(run.output)
        except ValueError:
            raise GradeError(f'run {run.id} did not answer a JSON object {{"score": …}}') from None
    score = value.get("score") if isinstance(value, dict) else None
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise GradeError(f'run {run.id} answered no numeric "score"')
    return float(score)
