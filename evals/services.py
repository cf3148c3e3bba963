"""Writes of datasets and their items. Editors write, viewers read.

Each user action that changes items (add, update, delete, upload) is one transaction
that locks the dataset row, raises its version by one and records the change in the
audit log; the rows of earlier versions are closed, never changed (see models)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

from django.apps import apps
from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from audit.services import record_action
from builds.models import Pipeline, PipelineVersion
from builds.services import trigger_build, version_of_text
from buildsite.errors import Conflict, DomainError, InvalidInput, NotFound, Problem
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from prompts import selectors as prompt_selectors
from prompts.refs import LABEL_RE, LATEST, NAME_RE, parse_ref, selector_ref
from tasks.states import BuildState

from . import pipeline, selectors
from .assertions import check_expectations, graded_prompts
from .models import Dataset, DatasetItem, Evaluation, LabelGate

MAX_DESCRIPTION_CHARS = 2000
MAX_ITEM_BYTES = 100_000
MAX_ITEMS = 10_000
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_LINES = 10_000
MAX_PROBLEMS = 20
ITEM_KEYS = {"variables", "expect"}


class PayloadTooLarge(DomainError):
    status = 413


def create_dataset(*, user: Any, project: Project, name: str, description: str = "") -> Dataset:
    require_role(user=user, project=project, role=Role.EDITOR)
    problems = []
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(
            Problem("use 1-80 lower-case letters, digits, '.', '_' and '-'", where="name")
        )
    problems.extend(_description_problems(description))
    if problems:
        raise InvalidInput(problems)
    try:
        with transaction.atomic():
            dataset: Dataset = Dataset.objects.create(
                project=project, name=name, description=description
            )
            _audit(user, dataset, "dataset.create")
    except IntegrityError as exc:
        raise Conflict(f"Dataset '{name}' exists in '{project.slug}'.") from exc
    return dataset


def update_dataset(*, user: Any, project: Project, name: str, description: str) -> Dataset:
    require_role(user=user, project=project, role=Role.EDITOR)
    if problems := _description_problems(description):
        raise InvalidInput(problems)
    with transaction.atomic():
        dataset = selectors.get_dataset(project=project, name=name, lock=True)
        dataset.description = description
        dataset.save(update_fields=["description", "updated_at"])
        _audit(user, dataset, "dataset.update")
    return dataset


def delete_dataset(*, user: Any, project: Project, name: str) -> None:
    require_role(user=user, project=project, role=Role.EDITOR)
    with transaction.atomic():
        dataset = selectors.get_dataset(project=project, name=name, lock=True)
        gated = [f"{g.prompt.name}@{g.label}" for g in dataset.gates.select_related("prompt")]
        if gated:
            raise Conflict(
                f"Dataset '{name}' gates the label(s) {', '.join(gated)}; remove those gates first."
            )
        _audit(user, dataset, "dataset.delete")
        dataset.delete()


def add_item(
    *, user: Any, project: Project, name: str, variables: Any, expect: Any
) -> tuple[int, int]:
    """(item number, new version)."""
    item = _checked_item({"variables": variables, "expect": expect}, prompts=_prompts(project))
    added: list[int] = []

    def add(dataset: Dataset) -> str:
        added.append(_next_number(dataset))
        _insert(dataset, [(added[0], item)])
        return f"added item {added[0]}"

    dataset, _ = _change_items(user, project, name, add, adding=1)
    return added[0], int(dataset.version)


def update_item(
    *, user: Any, project: Project, name: str, number: int, variables: Any, expect: Any
) -> int:
    """The new version; the item keeps its number, earlier versions keep its old state."""
    item = _checked_item({"variables": variables, "expect": expect}, prompts=_prompts(project))

    def update(dataset: Dataset) -> str:
        _close(dataset, number)
        _insert(dataset, [(number, item)])
        return f"changed item {number}"

    return int(_change_items(user, project, name, update)[0].version)


def delete_item(*, user: Any, project: Project, name: str, number: int) -> int:
    def delete(dataset: Dataset) -> str:
        _close(dataset, number)
        return f"removed item {number}"

    return int(_change_items(user, project, name, delete)[0].version)


def upload_items_jsonl(*, user: Any, project: Project, name: str, data: bytes) -> tuple[int, int]:
    """Adds one item per non-blank line, all or none: (items added, new version)."""
    require_role(user=user, project=project, role=Role.EDITOR)
    if len(data) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"An upload holds at most {MAX_UPLOAD_BYTES} bytes.")
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the end of the last line, not a line of its own
        lines.pop()
    if len(lines) > MAX_UPLOAD_LINES:
        message = f"an upload has at most {MAX_UPLOAD_LINES} lines"
        raise InvalidInput([Problem(message, where="body")])
    items: list[dict[str, Any]] = []
    problems: list[Problem] = []
    prompts = _prompts(project)
    for line_number, raw in enumerate(lines, start=1):
        if raw.strip() and len(problems) < MAX_PROBLEMS:
            try:
                items.append(
                    _checked_item(_parse_line(raw, line_number), prompts=prompts, line=line_number)
                )
            except InvalidInput as exc:
                problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems[:MAX_PROBLEMS])
    if not items:
        raise InvalidInput(
            [Problem("the upload holds no items (one JSON object per line)", where="body")]
        )

    def upload(dataset: Dataset) -> str:
        first = _next_number(dataset)
        _insert(dataset, list(enumerate(items, start=first)))
        return f"uploaded items {first}-{first + len(items) - 1}"

    dataset, _ = _change_items(user, project, name, upload, adding=len(items))
    return len(items), int(dataset.version)


def export_lines(items: Iterator[DatasetItem]) -> Iterator[str]:
    """JSONL that `upload_items_jsonl` reads back into the same items."""
    for item in items:
        yield (
            json.dumps({"variables": item.variables, "expect": item.expect}, ensure_ascii=False)
            + "\n"
        )


def _change_items(
    user: Any, project: Project, name: str, change: Callable[[Dataset], str], adding: int = 0
) -> tuple[Dataset, str]:
    require_role(user=user, project=project, role=Role.EDITOR)
    with transaction.atomic():
        dataset = selectors.get_dataset(project=project, name=name, lock=True)
        if adding:
            current = DatasetItem.objects.filter(dataset=dataset, removed_in__isnull=True).count()
            if current + adding > MAX_ITEMS:
                raise InvalidInput(
                    [
                        Problem(
                            f"a dataset holds at most {MAX_ITEMS} items; it has {current}",
                            where="items",
                        )
                    ]
                )
        dataset.version += 1
        dataset.save(update_fields=["version", "updated_at"])
        detail = change(dataset)
        _audit(user, dataset, "dataset.items", detail)
    return dataset, detail


def _next_number(dataset: Dataset) -> int:
    # Over every row ever written, so a removed item's number is never given again.
    highest = DatasetItem.objects.filter(dataset=dataset).aggregate(n=Max("number"))["n"]
    return int(highest or 0) + 1


def _insert(dataset: Dataset, items: list[tuple[int, dict[str, Any]]]) -> None:
    DatasetItem.objects.bulk_create(
        [
            DatasetItem(dataset=dataset, number=number, added_in=dataset.version, **item)
            for number, item in items
        ],
        batch_size=500,
    )


def _close(dataset: Dataset, number: int) -> None:
    """Ends the item's current row at the dataset's (new) version."""
    item = selectors.current_item(dataset, number)
    DatasetItem.objects.filter(pk=item.pk).update(removed_in=dataset.version)


def _parse_line(raw: bytes, line: int) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=refuse)
    except UnicodeDecodeError:
        raise InvalidInput(
            [Problem("the line is not UTF-8 text", line=line, where="body")]
        ) from None
    except (ValueError, RecursionError) as exc:
        message = f"not a JSON object: {str(exc)[:150]}"
        raise InvalidInput([Problem(message, line=line, where="body")]) from None


def _prompts(project: Project) -> Callable[[], set[str]]:
    """The project's prompt names, read once and only if an item has a `graded_by`.
    The model is looked up by name: prompts/ is outside mypy's strict set, and importing
    its models module would pull it in."""
    prompt_template = apps.get_model("prompts", "PromptTemplate")

    def names() -> set[str]:
        return set(prompt_template.objects.filter(project=project).values_list("name", flat=True))

    return functools.cache(names)


def _checked_item(
    data: Any, *, prompts: Callable[[], set[str]], line: int | None = None
) -> dict[str, Any]:
    """{"variables", "expect"} after every check, or InvalidInput naming each field."""
    from buildsite.api import json_body_problems  # here: the API module mounts this app

    problems = [Problem(p.message, line=line, where=p.where) for p in json_body_problems(data)]
    if problems or not isinstance(data, dict):
        raise InvalidInput(problems)
    variables, expect = data.get("variables", {}), data.get("expect", [])
    for key in sorted(set(data) - ITEM_KEYS):
        problems.append(
            Problem(
                f"an item has only 'variables' and 'expect', not '{key[:50]}'", line=line, where=key
            )
        )
    if not isinstance(variables, dict):
        problems.append(
            Problem("variables is an object of name: value", line=line, where="variables")
        )
    problems.extend(
        Problem(p.message, line=line, where=p.where) for p in check_expectations(expect)
    )
    if not problems:
        problems.extend(_missing_judges(prompts, expect, line))
    size = len(json.dumps(data, ensure_ascii=False).encode())
    if size > MAX_ITEM_BYTES:
        problems.append(
            Problem(
                f"an item holds at most {MAX_ITEM_BYTES} bytes of JSON", line=line, where="body"
            )
        )
    if problems:
        raise InvalidInput(problems)
    return {"variables": variables, "expect": expect}


def _missing_judges(
    prompts: Callable[[], set[str]], expect: list[Any], line: int | None
) -> Iterator[Problem]:
    if not graded_prompts(expect):
        return
    for index, a in enumerate(expect):
        if a["type"] == "graded_by" and (judge := parse_ref(a["prompt"]).name) not in prompts():
            message = f"no prompt '{judge}' in this project to grade with"
            yield Problem(message, line=line, where=f"expect.{index}.prompt")


def _description_problems(description: Any) -> list[Problem]:
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        return [
            Problem(
                f"a description is text of at most {MAX_DESCRIPTION_CHARS} characters",
                where="description",
            )
        ]
    return []


def _audit(user: Any, dataset: Dataset, action: str, detail: str = "") -> None:
    line = f"version {dataset.version}" + (f": {detail}" if detail else "")
    record_action(
        actor=user,
        project=dataset.project,
        action=action,
        target=f"dataset {dataset.name}",
        detail=line,
    )


# --- evaluations ------------------------------------------------------------------------
MAX_MODEL_CHARS = 200


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def start_evaluation(
    *,
    user: Any,
    project: Project,
    prompt_name: str,
    dataset_name: str,
    version: int | None = None,
    label: str | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> Evaluation:
    """Run a prompt version over the current items of a dataset as an ordinary build:
    a generated pipeline (evals.pipeline) saved as a version of the prompt's `eval-…`
    pipeline, then triggered like any build, so it is dispatched, claims the `llm`
    pool, uses the prompt cache, is watched live and cancelled like any build."""
    require_role(user=user, project=project, role=Role.EDITOR)
    prompt = prompt_selectors.get_prompt(project=project, name=prompt_name)
    pinned = prompt_selectors.resolve_version(
        prompt=prompt, ref=selector_ref(prompt_name, label=label, version=version)
    )
    dataset = selectors.get_dataset(project=project, name=dataset_name)
    provider = _override(provider, "provider", 80)
    model = _override(model, "model", MAX_MODEL_CHARS)
    if provider:
        prompt_selectors.provider_config(project=project, name=provider)  # 422 when unknown
    items = [
        (item.number, item.variables, item.expect)
        for item in selectors.items_at(dataset, dataset.version)
    ]
    if not items:
        raise InvalidInput(
            [Problem(f"dataset '{dataset.name}' has no items to evaluate", where="dataset")]
        )
    text = pipeline.definition(
        prompt=prompt.name,
        version=pinned.number,
        items=items,
        provider=provider,
        model=model,
    )
    pipeline_version = _evaluation_pipeline_version(project, prompt.name, dataset, text)
    build = trigger_build(
        user=user,
        project=project,
        pipeline=pipeline_version.pipeline.name,
        version=pipeline_version.number,
        trigger="evaluation",
        via=f"evaluation of {prompt.name}#{pinned.number}",
    )
    evaluation: Evaluation = Evaluation.objects.create(
        project=project,
        prompt=prompt,
        version=pinned,
        dataset=dataset,
        dataset_version=dataset.version,
        build=build,
        provider=provider,
        model=model,
        created_by=user if user.is_authenticated else None,
    )
    overrides = "".join(f", {k} {v}" for k, v in (("provider", provider), ("model", model)) if v)
    record_action(
        actor=user,
        project=project,
        action="evaluation.start",
        target=f"prompt {prompt.name}",
        detail=f"evaluation {evaluation.id}: v{pinned.number} on dataset {dataset.name} "
        f"v{dataset.version} ({len(items)} items), build {build.id}{overrides}",
    )
    return evaluation


def _override(value: Any, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidInput(
            [Problem(f"give a non-empty {field} of at most {limit} characters", where=field)]
        )
    return value.strip()


def _evaluation_pipeline_version(
    project: Project, prompt: str, dataset: Dataset, text: str
) -> PipelineVersion:
    """The version of the prompt's evaluation pipeline holding `text` (the same
    evaluation asked again reuses it). A pipeline of that name that is not this prompt's
    evaluation pipeline (a user's own, or one of a prompt whose name differs only in '.'
    and '_') is never written to."""
    name = pipeline.pipeline_name(prompt)
    found, _ = Pipeline.objects.get_or_create(project=project, name=name)
    latest = found.versions.order_by("-number").values_list("spec", flat=True).first()
    if latest is not None and latest.get("description") != pipeline.description(prompt):
        raise Conflict(
            f"Pipeline '{name}' exists and is not the evaluation pipeline of prompt "
            f"'{prompt}'; rename that pipeline to evaluate this prompt."
        )
    try:
        result: PipelineVersion = version_of_text(pipeline=found, definition=text)
    except InvalidInput as exc:
        # Only the size of the data can make a generated definition invalid.
        reason = exc.problems[0].message if exc.problems else exc.message
        raise InvalidInput(
            [
                Problem(
                    f"dataset '{dataset.name}' v{dataset.version} cannot run as one "
                    f"build: {reason}",
                    where="dataset",
                )
            ]
        ) from exc
    return result


# --- gated labels -----------------------------------------------------------------------
@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def set_gate(
    *,
    user: Any,
    project: Project,
    prompt_name: str,
    label: str,
    dataset_name: Any,
    min_pass_rate: Any,
) -> LabelGate:
    require_role(user=user, project=project, role=Role.MAINTAINER)
    problems = []
    if label == LATEST or not LABEL_RE.match(label or ""):
        problems.append(Problem("a gate guards a label that can be moved", where="label"))
    if not isinstance(dataset_name, str) or not dataset_name:
        problems.append(Problem("name a dataset of the project", where="dataset"))
    if (
        isinstance(min_pass_rate, bool)
        or not isinstance(min_pass_rate, int | float)
        or not 0 <= min_pass_rate <= 1
    ):
        problems.append(Problem("min_pass_rate is a number from 0 to 1", where="min_pass_rate"))
    if problems:
        raise InvalidInput(problems)
    prompt = prompt_selectors.get_prompt(project=project, name=prompt_name)
    dataset = selectors.datasets_of(project=project).filter(name=dataset_name).first()
    if dataset is None:
        raise InvalidInput(
            [Problem(f"no dataset '{dataset_name}' in '{project.slug}'", where="dataset")]
        )
    gate: LabelGate
    gate, _ = LabelGate.objects.update_or_create(
        prompt=prompt,
        label=label,
        defaults={"dataset": dataset, "min_pass_rate": float(min_pass_rate), "set_by": user},
    )
    record_action(
        actor=user,
        project=project,
        action="gate.set",
        target=f"prompt {prompt.name}",
        detail=f"{label}: pass rate ≥ {float(min_pass_rate):g} on dataset {dataset.name}",
    )
    return gate


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def remove_gate(*, user: Any, project: Project, prompt_name: str, label: str) -> None:
    require_role(user=user, project=project, role=Role.MAINTAINER)
    prompt = prompt_selectors.get_prompt(project=project, name=prompt_name)
    gate = selectors.gate_of(prompt=prompt, label=label)
    if gate is None:
        raise NotFound(f"Label '{label}' of prompt '{prompt.name}' has no gate.")
    record_action(
        actor=user,
        project=project,
        action="gate.remove",
        target=f"prompt {prompt.name}",
        detail=f"{label} (was ≥ {gate.min_pass_rate:g} on dataset {gate.dataset.name})",
    )
    gate.delete()


GATE_CANDIDATES = 50  # newest finished evaluations of a version a gate looks at


def check_label_move(*, prompt: Any, label: str, version: Any, force: bool) -> int | None:
    """The label check evals registers with prompts.gates (called inside set_label's
    transaction). An ungated label or a forced move: None. Otherwise the id of the best
    evaluation of exactly this version on the gate's dataset at its current version
    that finished (every item ran and was judged) with a pass rate at or above
    the gate's; none: Conflict naming the gate and the best evaluation found."""
    gate = selectors.gate_of(prompt=prompt, label=label)
    if gate is None or force:
        return None
    dataset = gate.dataset
    # Finished: an evaluation build that succeeded, or an `evaluate` step's evaluation
    # that ran and judged every item (whatever threshold its step then applied).
    built = Q(task__isnull=True, build__state=BuildState.SUCCEEDED)
    inline = Q(task__isnull=False, state=Evaluation.State.SUCCEEDED)
    finished = (
        Evaluation.objects.filter(built | inline, prompt=prompt, version=version, dataset=dataset)
        .select_related("build")
        .order_by("-created_at", "-id")[:GATE_CANDIDATES]
    )
    results = selectors.results_of(list(finished))
    rated = [(results[e.id].pass_rate or 0.0, e) for e in finished]
    current = [(rate, e) for rate, e in rated if e.dataset_version == dataset.version]
    # A label serves the version with its own provider and model: an evaluation run on
    # another (a comparison) says nothing about what the label would serve.
    passing = [
        (rate, e)
        for rate, e in current
        if rate >= gate.min_pass_rate and not e.provider and not e.model
    ]
    if passing:
        best = max(passing, key=lambda pair: pair[0])  # max keeps the first (newest) of ties
        return int(best[1].id)
    rule = (
        f"Label '{label}' is gated: it moves only to a version with a finished evaluation on "
        f"dataset '{dataset.name}' v{dataset.version} with a pass rate of at least "
        f"{gate.min_pass_rate:g}."
    )
    if current:
        rate, best_e = max(current, key=lambda pair: pair[0])
        found = f"The best evaluation of v{version.number} is {best_e.id}, with {rate:g}."
        if best_e.provider or best_e.model:
            found += (
                " It ran with another provider or model; only an evaluation with the "
                "version's own counts."
            )
    elif rated:
        rate, best_e = max(rated, key=lambda pair: pair[0])
        found = (
            f"The best evaluation of v{version.number} is {best_e.id} ({rate:g}), on dataset "
            f"v{best_e.dataset_version}, not the current v{dataset.version}."
        )
    else:
        found = f"No finished evaluation of v{version.number} on '{dataset.name}' was found."
    raise Conflict(f"{rule} {found} A maintainer may force the move with a reason.")
