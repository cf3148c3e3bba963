"""Dependency resolution without a database."""

from hypothesis import given
from hypothesis import strategies as st

from tasks.dag import downstream_of, graph_problems, layers, topological_order, unblocked
from tasks.states import TaskState

S = TaskState


@st.composite
def acyclic_graphs(draw):
    """Random DAGs: a task may only need tasks defined before it."""
    n = draw(st.integers(min_value=1, max_value=25))
    names = [f"t{i}" for i in range(n)]
    return {
        name: sorted(draw(st.sets(st.sampled_from(names[:i]), max_size=4))) if i else []
        for i, name in enumerate(names)
    }


def test_unknown_dependency_is_named_with_its_line():
    problems = graph_problems({"a": ["nope"]}, {"a": 3})
    assert [(p.message, p.line, p.where) for p in problems] == [
        ("needs unknown task 'nope'", 3, "tasks.a")
    ]


def test_cycle_names_every_task_on_it_and_a_line():
    needs = {"a": ["c"], "b": ["a"], "c": ["b"], "d": []}
    (problem,) = graph_problems(needs, {"a": 2, "b": 5, "c": 8, "d": 11})
    assert problem.message.startswith("dependency cycle: ")
    on_cycle = set(problem.message.removeprefix("dependency cycle: ").split(" -> "))
    assert on_cycle == {"a", "b", "c"}
    assert problem.line == 2


def test_self_dependency_is_refused():
    assert graph_problems({"a": ["a"]})[0].message == "a task cannot need itself"


@given(acyclic_graphs())
def test_topological_order_puts_dependencies_first(needs):
    assert graph_problems(needs) == []
    order = topological_order(needs)
    assert sorted(order) == sorted(needs)
    position = {name: i for i, name in enumerate(order)}
    for name, deps in needs.items():
        assert all(position[d] < position[name] for d in deps)


@given(acyclic_graphs())
def test_layers_are_one_deeper_than_the_deepest_dependency(needs):
    depth = layers(needs)
    for name, deps in needs.items():
        assert depth[name] == (max(depth[d] for d in deps) + 1 if deps else 0)


@given(acyclic_graphs(), st.data())
def test_downstream_is_everything_reachable_through_dependents(needs, data):
    root = data.draw(st.sampled_from(sorted(needs)))
    down = downstream_of(needs, [root])
    assert root not in down
    for name in needs:
        depends = any(d == root or d in down for d in needs[name])
        assert (name in down) is depends


def test_unblocked_promotes_only_tasks_whose_dependencies_are_done():
    needs = {"a": [], "b": ["a"], "c": ["a", "b"], "d": ["x"], "x": []}
    states = {"a": S.SUCCEEDED, "b": S.PENDING, "c": S.PENDING, "d": S.PENDING, "x": S.FAILED}
    assert unblocked(needs, states) == {"b": S.READY, "d": S.UPSTREAM_FAILED}


def test_a_cached_dependency_counts_as_done():
    assert unblocked({"a": [], "b": ["a"]}, {"a": S.CACHED, "b": S.PENDING}) == {"b": S.READY}
