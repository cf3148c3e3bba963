"""Reads of datasets (a project's datasets with their current item counts, one dataset,
the items of any version), evaluations and their results, and label gates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet

from buildsite.errors import NotFound
from buildsite.models import Project
from prompts.models import PromptRun
from tasks.models import Task
from tasks.states import TERMINAL

from .models import Dataset, DatasetItem, Evaluation, LabelGate
from .pipeline import item_number

CURRENT = Q(items__removed_in__isnull=True)


def datasets_of(*, project: Project) -> QuerySet[Dataset]:
    """Each with `item_count`: the items of its current version."""
    return Dataset.objects.filter(project=project).annotate(
        item_count=Count("items", filter=CURRENT)
    )


def get_dataset(*, project: Project, name: str, lock: bool = False) -> Dataset:
    query = Dataset.objects.select_for_update() if lock else datasets_of(project=project)
    dataset: Dataset | None = query.filter(project=project, name=name).first()
    if dataset is None:
        raise NotFound(f"No dataset '{name}' in '{project.slug}'.")
    return dataset


def check_version(dataset: Dataset, version: int | None) -> int:
    """The version asked for (default: the current one); NotFound for one not made yet."""
    if version is None:
        return int(dataset.version)
    if not 0 <= version <= dataset.version:
        raise NotFound(
            f"Dataset '{dataset.name}' has versions 0 to {dataset.version}, not {version}."
        )
    return version


def items_at(dataset: Dataset, version: int) -> QuerySet[DatasetItem]:
    """The items of `version`, by item number: the same rows whatever changed since."""
    return DatasetItem.objects.filter(
        Q(removed_in__isnull=True) | Q(removed_in__gt=version),
        dataset=dataset,
        added_in__lte=version,
    ).order_by("number")


def current_item(dataset: Dataset, number: int) -> DatasetItem:
    # A number beyond what a column holds is absent too (SQLite would raise on it).
    item: DatasetItem | None = None
    if 0 < number < 2**31:
        item = DatasetItem.objects.filter(
            dataset=dataset, number=number, removed_in__isnull=True
        ).first()
    if item is None:
        raise NotFound(f"Dataset '{dataset.name}' has no item {number}.")
    return item


# --- evaluations ------------------------------------------------------------------------
def evaluations_of(*, project: Project, prompt: Any) -> QuerySet[Evaluation]:
    """Newest first."""
    return (
        Evaluation.objects.filter(project=project, prompt=prompt)
        .select_related("version", "dataset", "build", "created_by")
        .order_by("-created_at", "-id")
    )


def get_evaluation(*, project: Project, prompt: Any, evaluation_id: int) -> Evaluation:
    evaluation: Evaluation | None = None
    if 0 < evaluation_id < 2**31:  # beyond what a column holds: absent (SQLite would raise)
        evaluation = evaluations_of(project=project, prompt=prompt).filter(id=evaluation_id).first()
    if evaluation is None:
        raise NotFound(f"Prompt '{prompt.name}' has no evaluation {evaluation_id}.")
    return evaluation


@dataclass(frozen=True)
class ItemResult:
    item: int
    state: str  # the item's task state
    passed: bool | None  # None: not judged (not run yet, or could not run)
    score: float | None
    output: str | None
    failures: list[str]
    error: str  # why the item could not be run (the task's error)


@dataclass(frozen=True)
class Results:
    state: str
    passed: int
    failed: int
    pass_rate: float | None  # passed / items; None for an evaluation without items
    score: float | None  # mean score of the judged items
    cost_usd: Decimal | None  # None while any run's cost is unknown
    tokens_in: int
    tokens_out: int
    items: list[ItemResult]
    latency_ms: float | None = None  # mean of the items' prompt calls (judges not counted)


def evaluation_results(evaluation: Evaluation) -> Results:
    return results_of([evaluation])[evaluation.id]


def results_of(evaluations: Sequence[Evaluation]) -> dict[int, Results]:
    """The results of each evaluation, in one shape whichever way it ran: at most two
    queries for the evaluation builds and two for the inline ones, for any number of
    evaluations (lists, the gate check, the prompt page)."""
    inline = [e for e in evaluations if e.task_id is not None]
    return {
        **_build_results([e for e in evaluations if e.task_id is None]),
        **(_inline_results(inline) if inline else {}),
    }


def _build_results(evaluations: Sequence[Evaluation]) -> dict[int, Results]:
    """What each build did, read from its tasks (the assert step's outputs) and the runs
    they made (judges' included), so the figures are never out of step with the build."""
    if not evaluations:
        return {}
    by_build = {e.build_id: e for e in evaluations}
    items: dict[int, list[ItemResult]] = defaultdict(list)
    item_runs: set[int] = set()
    for build_id, name, state, outputs, error in Task.objects.filter(
        build_id__in=by_build
    ).values_list("build_id", "name", "state", "outputs", "error"):
        number = item_number(name)
        if number is None:
            continue
        judged = isinstance(outputs, dict) and isinstance(outputs.get("passed"), bool)
        if isinstance(outputs, dict) and isinstance(outputs.get("prompt_run"), int):
            item_runs.add(outputs["prompt_run"])
        items[build_id].append(
            ItemResult(
                item=number,
                state=state,
                passed=outputs["passed"] if judged else None,
                score=float(outputs["score"]) if judged else None,
                output=outputs.get("output") if judged else None,
                failures=list(outputs.get("failures") or []) if judged else [],
                error=error or "",
            )
        )
    runs: dict[int, list[tuple[int, int, int, Decimal | None, int | None]]] = defaultdict(list)
    for build_id, *run in PromptRun.objects.filter(task__build_id__in=by_build).values_list(
        "task__build_id", "id", "tokens_in", "tokens_out", "cost_usd", "latency_ms"
    ):
        runs[build_id].append(tuple(run))
    return {
        e.id: _results(
            sorted(items[e.build_id], key=_by_item),
            runs[e.build_id],
            item_runs,
            state=e.build.state,
        )
        for e in evaluations
    }


def _inline_results(evaluations: Sequence[Evaluation]) -> dict[int, Results]:
    """Evaluations an `evaluate` step ran: items as the step recorded them, figures from
    the runs each item made (its answer and its judges'). One still `running` whose task
    has ended was cut short (its worker was lost): it is reported failed."""
    run_ids = {
        run for e in evaluations for r in e.item_results or [] for run in r.get("runs") or []
    }
    rows = PromptRun.objects.filter(id__in=run_ids).values_list(
        "id", "tokens_in", "tokens_out", "cost_usd", "latency_ms"
    )
    by_id = {row[0]: row for row in rows}
    ended = set(
        Task.objects.filter(
            id__in={e.task_id for e in evaluations if e.state == Evaluation.State.RUNNING},
            state__in=TERMINAL,
        ).values_list("id", flat=True)
    )
    out: dict[int, Results] = {}
    for e in evaluations:
        recorded = e.item_results or []
        items = [
            ItemResult(
                item=r["item"],
                state=r["state"],
                passed=r.get("passed"),
                score=r.get("score"),
                output=r.get("output"),
                failures=list(r.get("failures") or []),
                error=r.get("error") or "",
            )
            for r in recorded
        ]
        runs = [by_id[i] for r in recorded for i in r.get("runs") or [] if i in by_id]
        item_runs = {r["prompt_run"] for r in recorded if r.get("prompt_run")}
        # Only a row still `running` whose task has ended is stale (its worker died);
        # another evaluation of the same task (a retry, a second step) keeps its state.
        stale = e.state == Evaluation.State.RUNNING and e.task_id in ended
        state = Evaluation.State.FAILED if stale else e.state
        out[e.id] = _results(items, runs, item_runs, state=state)
    return out


def _by_item(result: ItemResult) -> int:
    return result.item


def _results(
    items: list[ItemResult],
    runs: list[tuple[int, int, int, Decimal | None, int | None]],
    item_runs: set[int],
    *,
    state: str,
) -> Results:
    judged_items = [r for r in items if r.passed is not None]
    passed = sum(1 for r in judged_items if r.passed)
    costs = [cost for _, _, _, cost, _ in runs]
    latencies = [ms for run_id, _, _, _, ms in runs if run_id in item_runs and ms is not None]
    return Results(
        state=state,
        passed=passed,
        failed=len(judged_items) - passed,
        pass_rate=passed / len(items) if items else None,
        score=sum(r.score or 0.0 for r in judged_items) / len(judged_items)
        if judged_items
        else None,
        cost_usd=None
        if any(c is None for c in costs)
        else sum((c for c in costs if c is not None), Decimal("0")),
        tokens_in=sum(t or 0 for _, t, _, _, _ in runs),
        tokens_out=sum(t or 0 for _, _, t, _, _ in runs),
        items=items,
        latency_ms=sum(latencies) / len(latencies) if latencies else None,
    )


def gate_of(*, prompt: Any, label: str) -> LabelGate | None:
    gate: LabelGate | None = (
        LabelGate.objects.filter(prompt=prompt, label=label).select_related("dataset").first()
    )
    return gate


def gates_of(*, prompt: Any) -> QuerySet[LabelGate]:
    return LabelGate.objects.filter(prompt=prompt).select_related("dataset", "set_by")
