"""The build steps of evaluations.

`assert`: judge the answer of the task's `prompt` step against a dataset item's
assertions. Evaluation builds (evals.pipeline) put one after the prompt step of each
item's task:

    - prompt: summary#3
      vars: {text: "..."}
    - assert: item 7
      expect: [{"type": "contains", "value": "Paris"}]

It reads the run the prompt step made (`prompt_run` in the task's outputs) for the
answer, its latency and cost, and writes `passed`, `score`, `failures` and `output`
(cut to OUTPUT_CHARS). Failed assertions are the evaluation's result, not an error:
the step succeeds whatever they say. It fails only when there is nothing to judge.

`evaluate`: run a whole evaluation inside the task (evals.inline) and fail the task
below a pass rate, so a pipeline can check a prompt on every push:

    - evaluate: summary@candidate     # name@label or name#version
      dataset: summaries
      min_pass_rate: 0.9              # optional, from 0 to 1; default 1 (every item)
      provider: local                 # optional overrides, as on a prompt step
      model: gpt-4o-mini

Outputs: `evaluation` (its id), `pass_rate`, `passed`, `failed`, `score`. The task
fails when an item could not run, or when the pass rate is below `min_pass_rate`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from builds.steps import StepCancelled, StepContext, StepFailed
from buildsite.errors import InvalidInput
from buildsite.templating import has_markup
from prompts.models import PromptRun
from prompts.refs import parse_ref

from .assertions import check_expectations
from .inline import run_inline_evaluation
from .judging import OUTPUT_CHARS, judge_run

DEFAULT_MIN_PASS_RATE = 1.0  # every item must pass unless the step says otherwise


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
    result = judge_run(
        run, step.get("expect", []), ctx, deadline=time.monotonic() + ctx.timeout
    ).result
    verdict = "passed" if result.passed else f"failed ({len(result.failures)} assertion(s))"
    ctx.log(f"{step['assert']}: {verdict}, score {result.score:.3f}\n")
    for failure in result.failures:
        ctx.log(f"  {failure}\n")
    return {
        "passed": result.passed,
        "score": result.score,
        "failures": result.failures,
        "output": run.output[:OUTPUT_CHARS],
    }


# --- evaluate ---------------------------------------------------------------------------
def check_evaluate_step(step: dict[str, Any]) -> list[tuple[str, str]]:
    """What an `evaluate` step must satisfy at save. Whether the prompt and the dataset
    exist is seen when it runs: either may be created after the pipeline. A value with
    template markup is checked once rendered, when the step runs."""
    problems: list[tuple[str, str]] = []
    ref = step.get("evaluate")
    if isinstance(ref, str) and ref.strip() and not has_markup(ref):
        try:
            parse_ref(ref, where="evaluate")
        except InvalidInput as exc:
            problems.extend((f"evaluate: {p.message}", "evaluate") for p in exc.problems)
    dataset = step.get("dataset")
    if not (isinstance(dataset, str) and dataset.strip()):
        problems.append(("dataset must be the name of a dataset of the project", "dataset"))
    rate = step.get("min_pass_rate", DEFAULT_MIN_PASS_RATE)
    templated = isinstance(rate, str) and has_markup(rate)
    if not templated and (isinstance(rate, str) or _rate(rate) is None):
        problems.append(("min_pass_rate must be a number from 0 to 1", "min_pass_rate"))
    problems.extend(
        (f"{key} must be a non-empty string", key)
        for key in ("provider", "model")
        if key in step and not (isinstance(step[key], str) and step[key].strip())
    )
    return problems


def run_evaluate_step(step: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    ref = parse_ref(step["evaluate"], where="evaluate")
    threshold = _rate(step.get("min_pass_rate", DEFAULT_MIN_PASS_RATE))
    if threshold is None:
        raise StepFailed(
            f"min_pass_rate must be a number from 0 to 1, not {step['min_pass_rate']!r}"
        )
    outcome = run_inline_evaluation(
        ctx=ctx,
        ref=ref,
        dataset_name=str(step.get("dataset", "")).strip(),
        provider=str(step.get("provider") or "").strip(),
        model=str(step.get("model") or "").strip(),
        timeout=min(float(step.get("timeout", ctx.timeout)), ctx.timeout),
    )
    evaluation, results = outcome.evaluation, outcome.results
    rate = results.pass_rate or 0.0
    outputs = {
        "evaluation": evaluation.id,
        "pass_rate": rate,
        "passed": results.passed,
        "failed": results.failed,
        "score": results.score,
    }
    if outcome.stopped == "cancelled":
        raise StepCancelled
    summary = f"evaluation {evaluation.id}: {results.passed} of {len(results.items)} items passed"
    ctx.log(f"{summary}, pass rate {rate:g} (min_pass_rate {threshold:g})\n")
    if outcome.stopped:
        raise StepFailed(f"evaluation {evaluation.id} {outcome.stopped}", outputs)
    unjudged = [r for r in results.items if r.passed is None]
    if unjudged:
        first = unjudged[0]
        raise StepFailed(
            f"{summary}; {len(unjudged)} item(s) could not run (item {first.item}: {first.error})",
            outputs,
        )
    if rate < threshold:
        raise StepFailed(
            f"{summary}: pass rate {rate:g} is below min_pass_rate {threshold:g}", outputs
        )
    return outputs


def _rate(value: Any) -> float | None:
    """A pass rate from 0 to 1 (a rendered template gives it as text), else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= 1 else None
