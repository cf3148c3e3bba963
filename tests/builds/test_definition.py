"""Pipeline YAML validation: every problem is reported with its task and line."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builds.definition import merge_params, parse_definition
from builds.steps import step_kinds
from buildsite.errors import InvalidInput


def problems_of(text):
    with pytest.raises(InvalidInput) as err:
        parse_definition(text)
    return [(p.message, p.line, p.where) for p in err.value.problems]


def test_design_example_parses_with_defaults():
    spec = parse_definition("""
name: release
params: {version: "1.0.0"}
resources: {cpu: 1}
tasks:
  test:
    steps:
      - run: pytest -q
    timeout: 600
    retries: 1
  notes:
    needs: [test]
    priority: 10
    cache: true
    steps:
      - prompt: release-notes@production
        vars: {version: "{{ params.version }}", log: "{{ tasks.test.outputs.stdout_tail }}"}
        output: notes
  publish:
    needs: [notes]
    steps:
      - document: releases/{{ params.version }}
        body: "{{ tasks.notes.outputs.notes }}"
""")
    test, notes = spec["tasks"]["test"], spec["tasks"]["notes"]
    assert test["retries"] == 1 and test["timeout"] == 600 and test["resources"] == {"cpu": 1}
    assert test["line"] == 6
    assert notes["needs"] == ["test"] and notes["priority"] == 10 and notes["cache"] is True
    assert notes["resources"] == {"cpu": 1, "llm": 1}, "prompt steps claim the llm pool"
    assert spec["params"] == {"version": "1.0.0"}


def test_cycle_is_refused_with_the_tasks_and_line():
    (problem,) = problems_of("""tasks:
  a:
    needs: [b]
  b:
    needs: [a]
""")
    message, line, where = problem
    assert message in ("dependency cycle: a -> b -> a", "dependency cycle: b -> a -> b")
    assert line == 2 and where == "tasks.a"


def test_unknown_need_names_task_and_line():
    assert problems_of("tasks:\n  a: {}\n  b:\n    needs: [a, c]\n") == [
        ("needs unknown task 'c'", 3, "tasks.b")
    ]


def test_every_problem_is_reported_not_just_the_first():
    problems = problems_of("""tasks:
  a:
    retries: -1
    colour: red
  b:
    priority: high
""")
    wheres = {where for _, _, where in problems}
    assert {"tasks.a.retries", "tasks.a", "tasks.b.priority"} <= wheres
    assert any("unknown key" in m and "colour" in m for m, _, _ in problems)
    assert all(line is not None for _, line, _ in problems)


def test_bad_steps_are_located():
    problems = problems_of("""tasks:
  a:
    steps:
      - run: echo ok
      - run: echo {{ oops
      - frobnicate: x
      - run: echo hi
        shell: zsh
""")
    by_where = {w: (m, line) for m, line, w in problems}
    assert by_where["tasks.a.steps[1]"][1] == 5
    assert "template syntax error" in by_where["tasks.a.steps[1]"][0]
    # The kinds are those registered by the installed apps (evals adds `assert`, `evaluate`).
    kinds = ", ".join(step_kinds())
    assert by_where["tasks.a.steps[2]"] == (f"a step needs exactly one of: {kinds}", 6)
    assert {"run", "document", "prompt"} <= set(step_kinds())
    assert "shell" in by_where["tasks.a.steps[3]"][0]


def test_yaml_syntax_error_has_a_line():
    ((message, line, _),) = problems_of("tasks:\n  a:\n    steps: [\n")
    assert message.startswith("invalid YAML") and line is not None


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text", "tasks: {}"])
def test_non_pipelines_are_refused(text):
    assert problems_of(text)


@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text):
    try:
        parse_definition(text)
    except InvalidInput as err:
        assert err.problems


def test_params_merge_defaults_and_refuse_unknown_names():
    spec = {"params": {"version": "1.0", "channel": "beta"}}
    assert merge_params(spec, {"version": "2.0"}) == {"version": "2.0", "channel": "beta"}
    with pytest.raises(InvalidInput) as err:
        merge_params(spec, {"verison": "2.0"})
    assert "verison" in err.value.message and "channel, version" in err.value.message


def test_step_kinds_come_from_the_registry(monkeypatch):
    """The engine names no step kind: one registered by an app is valid in pipelines,
    with its own keys, checks and pool claims."""
    from builds import steps

    monkeypatch.setattr(steps, "_KINDS", dict(steps.step_kinds()))
    steps.register_step(
        steps.StepKind(
            name="echo",
            keys=frozenset({"echo", "loud"}),
            run=lambda step, ctx: {"said": step["echo"]},
            claims={"speaker": 1},
            check=lambda step: [] if step.get("loud") in (None, True) else [("say it", "loud")],
        )
    )
    spec = parse_definition("tasks:\n  a: {steps: [{echo: hi}]}\n")
    assert spec["tasks"]["a"]["resources"] == {"cpu": 1, "speaker": 1}
    with pytest.raises(InvalidInput) as err:
        parse_definition("tasks:\n  a:\n    steps:\n      - echo: hi\n        loud: no\n")
    assert [(p.message, p.line) for p in err.value.problems] == [("say it", 5)]


ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True)
    )
    + "tasks: {t: {steps: [{run: 'true'}]}}\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ALIAS_BOMB, "anchors and aliases"),
        ("params: &a [*a]\ntasks: {}\n", "anchors and aliases"),
        ("x: " + "[" * 990 + "]" * 990 + "\ntasks: {}\n", "nested more than 40"),
    ],
)
def test_yaml_whose_size_is_not_its_texts_is_refused_at_once(text, message):
    """A 367-byte alias bomb took 23.6 s and stored 58 MB; deep nesting was a 500."""
    started = time.monotonic()
    with pytest.raises(InvalidInput) as err:
        parse_definition(text)
    assert message in err.value.problems[0].message
    assert time.monotonic() - started < 1.0
