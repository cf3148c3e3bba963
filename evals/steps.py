"""The `assert` build step: judge the answer of the task's `prompt` step against a
dataset item's assertions. Evaluation pipelines (evals.evaluations) put one after the
prompt step of each item's task:

    - prompt: summary#3
      vars: {text: "..."}
    - assert: item 7
      expect: [{"type": "contains", "value": "Paris"}]

It reads the run the prompt step made (`prompt_run` in the task's outputs) for the
answer, its latency and cost, and writes `passed`, `score`, `failures` and `output`
(cut to OUTPUT_CHARS). Failed assertions are the evaluation's result, not an error:
the step succeeds whatever they say. It fails only when there is nothing to judge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from builds.steps import StepContext, StepFailed
from buildsite.errors import DomainError
from prompts import selectors as prompt_selectors
from prompts import services as prompt_services
from prompts.models import PromptRun
from prompts.refs import parse_ref

from .assertions import GradeError, check_expectations, evaluate

OUTPUT_CHARS = 2000  # of the answer kept in the task's outputs (the run keeps all of it)
JUDGE_OUTPUT = "output"  # the judge's variable that receives the answer


def check_assert_step(step: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.message, "expect") for p in check_expectations(step.get("expect", []))]


def run_assert_step(step: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    run_id = ctx.outputs.get("prompt_run")
    run: PromptRun | None = (
        PromptRun.objects.filter(id=run_id, project=ctx.project).first()
        if isinstance(run_id, int)
        else None
    )
    if run is None:
        raise StepFailed("no prompt run to judge: an assert step follows a prompt step")
    expect = step.get("expect", [])
    output = run.output
    cost = float(run.cost_usd) if isinstance(run.cost_usd, Decimal) else None
    result = evaluate(
        expect,
        output=output,
        variables=run.variables,
        latency_ms=run.latency_ms,
        cost_usd=cost,
        grade=lambda prompt, answer, variables: _grade(ctx, prompt, answer, variables),
    )
    verdict = "passed" if result.passed else f"failed ({len(result.failures)} assertion(s))"
    ctx.log(f"{step['assert']}: {verdict}, score {result.score:.3f}\n")
    for failure in result.failures:
        ctx.log(f"  {failure}\n")
    return {
        "passed": result.passed,
        "score": result.score,
        "failures": result.failures,
        "output": output[:OUTPUT_CHARS],
    }


def _grade(ctx: StepContext, ref_text: str, answer: str, variables: Mapping[str, Any]) -> float:
    """Run the judge prompt through the same providers and cache as any run, attributed
    to the task, with the answer as its `output` variable and those of the item's
    variables it declares (others would be refused as undeclared). It must answer a JSON
    object with a numeric `score`; anything else is a GradeError (a failed assertion)."""
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
            timeout=ctx.timeout,
            task=ctx.task,
            actor=ctx.build.triggered_by,
        )
    except DomainError as exc:
        raise GradeError(exc.message) from exc
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
