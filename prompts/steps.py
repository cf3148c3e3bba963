"""The `prompt` build step: run a prompt from the library inside a pipeline task.

    - prompt: release-notes@production
      vars: {version: "{{ params.version }}"}
      output: notes        # parsed answer -> task outputs["notes"]
      cache: false         # optional: bypass the response cache
      timeout: 120         # optional: seconds for the whole call, repairs included
      provider: local      # optional: another provider of the project (evaluations)
      model: gpt-4o-mini   # optional: another model

The engine renders `vars` before the step runs. The run is stored like any other,
linked to the task; its id is in the outputs (`prompt_run`, and `<output>_run`).
"""

from __future__ import annotations

from typing import Any

from builds.steps import StepContext, StepFailed
from vault.masking import Masker

from . import services
from .models import PromptRun
from .refs import parse_ref


def check_prompt_step(step: dict[str, Any]) -> list[tuple[str, str]]:
    """What a pipeline's `prompt` step must satisfy beyond its keys."""
    if not isinstance(step.get("vars", {}), dict):
        return [("vars must be a mapping", "vars")]
    return [
        (f"{key} must be a non-empty string", key)
        for key in ("provider", "model")
        if key in step and not (isinstance(step[key], str) and step[key].strip())
    ]


def run_prompt_step(step: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    ref = parse_ref(step["prompt"], where="prompt")
    variables = step.get("vars") or {}
    if not isinstance(variables, dict):
        raise StepFailed("'vars' must be a mapping of variable names to values")
    timeout = min(float(step.get("timeout", ctx.timeout)), ctx.timeout)
    cache_mode = step.get("cache")
    if cache_mode is not None and not isinstance(cache_mode, bool):
        raise StepFailed("'cache' must be true or false")
    ctx.log(f"prompt {ref}\n")
    run = services.run_prompt(
        user=None,
        project=ctx.project,
        ref=ref,
        variables=variables,
        cache_mode=cache_mode,
        timeout=timeout,
        task=ctx.task,
        actor=ctx.build.triggered_by,
        provider=step.get("provider") or None,
        model=step.get("model") or None,
    )
    if ctx.hidden:
        mask_run(run, Masker(ctx.hidden))
    version = run.version
    cost = "unknown" if run.cost_usd is None else f"${run.cost_usd}"
    ctx.log(
        f"run {run.id}: {version.prompt.name}#{version.number} via {run.provider} ({run.model}), "
        f"{'cache hit' if run.cached else f'{len(run.attempts)} attempt(s)'}, "
        f"tokens {run.tokens_in} in / {run.tokens_out} out, cost {cost}, {run.latency_ms} ms\n"
    )
    outputs: dict[str, Any] = {"prompt_run": run.id}
    name = step.get("output")
    if name:
        outputs[f"{name}_run"] = run.id
    if run.status != run.Status.SUCCEEDED:
        raise StepFailed(f"prompt {ref} (run {run.id}): {run.error}", outputs)
    if name:
        outputs[name] = run.parsed
    return outputs


MASKED_FIELDS = ("variables", "rendered", "raw_response", "output", "parsed", "error", "attempts")


def mask_run(run: PromptRun, masker: Masker) -> None:
    """The run a build step made, with the project's secret values masked: its record
    sits next to the task's log and outputs, which never show them. (Templates cannot
    read secrets, so this only matters when a model or a provider's error repeats
    one, such as the provider's key kept as a project secret.)"""
    changed = []
    for name in MASKED_FIELDS:
        value = getattr(run, name)
        masked = masker.mask_value(value)
        if masked != value:
            setattr(run, name, masked)
            changed.append(name)
    if changed:
        run.save(update_fields=changed)
