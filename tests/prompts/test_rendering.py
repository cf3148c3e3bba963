"""Rendering rules (pure): declared variables, StrictUndefined, types, save-time checks."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsite.errors import InvalidInput
from prompts.rendering import check_templates, coerce, normalize_variables, render_messages


def render(template=None, messages=None, declared=None, given=None):
    return render_messages(
        template=template, messages=messages, declared=normalize_variables(declared), given=given
    )


def problems(exc_info) -> list[str]:
    return [p.message for p in exc_info.value.problems]


def test_text_template_is_one_user_message_with_loops_and_conditionals():
    out = render(
        "Notes for {{ version }}:\n{% for c in changes %}- {{ c }}\n{% endfor %}"
        "{% if urgent %}URGENT{% endif %}",
        declared={
            "version": "string",
            "changes": "array",
            "urgent": {"type": "boolean", "default": False},
        },
        given={"version": "1.2", "changes": ["a", "b"]},
    )
    assert out == [{"role": "user", "content": "Notes for 1.2:\n- a\n- b\n"}]


def test_chat_messages_keep_their_roles():
    out = render(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi {{ n }}"},
        ],
        declared={"n": "integer"},
        given={"n": "3"},
    )
    assert out == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi 3"},
    ]


def test_missing_variable_is_an_error_naming_it_never_an_empty_string():
    with pytest.raises(InvalidInput) as info:
        render("Hello {{ who }}", declared={"who": "string"}, given={})
    assert problems(info) == ["missing variable 'who'"]


def test_default_fills_a_missing_variable():
    assert render("Hi {{ who }}", declared={"who": {"default": "all"}})[0]["content"] == "Hi all"


def test_undeclared_value_is_refused_by_name():
    with pytest.raises(InvalidInput) as info:
        render("Hi", declared={}, given={"extra": 1})
    assert "variable 'extra' is not declared" in problems(info)[0]


def test_wrong_type_names_the_variable():
    with pytest.raises(InvalidInput) as info:
        render("{{ n }}", declared={"n": "integer"}, given={"n": "three"})
    assert problems(info)[0].startswith("variable 'n' must be integer")


def test_save_time_check_reports_syntax_errors_with_their_line():
    with pytest.raises(InvalidInput) as info:
        check_templates(
            template=None,
            messages=[
                {"role": "system", "content": "ok"},
                {"role": "user", "content": "line one\nline two\n{{ x }\n"},
            ],
            variables={"x": {"type": "string"}},
        )
    problem = info.value.problems[0]
    assert problem.where == "messages[1].content"
    assert problem.line == 3
    assert problem.message == "template syntax error: unexpected '}'"


def test_save_time_check_refuses_undeclared_variables_by_name_and_line():
    with pytest.raises(InvalidInput) as info:
        check_templates(template="one\ntwo {{ who }}", messages=None, variables={})
    problem = info.value.problems[0]
    assert problem.message == "variable 'who' is used but not declared in 'variables'"
    assert problem.line == 2


def test_loop_variables_are_not_mistaken_for_undeclared_ones():
    check_templates(
        template="{% for c in items %}{{ c }}{% endfor %}",
        messages=None,
        variables={"items": {"type": "array"}},
    )


def test_sandbox_refuses_unsafe_attribute_access():
    with pytest.raises(InvalidInput) as info:
        render("{{ x.__class__.__mro__ }}", declared={"x": "string"}, given={"x": "a"})
    assert "not allowed" in problems(info)[0] or "undefined" in problems(info)[0]


def test_variable_declarations_are_validated():
    with pytest.raises(InvalidInput) as info:
        normalize_variables(
            {"bad-name": "string", "n": "float", "ok": {"type": "integer", "default": "x"}}
        )
    messages = problems(info)
    assert len(messages) == 3


@given(st.text())
def test_a_string_value_renders_verbatim(value):
    assert render("{{ v }}", declared={"v": "string"}, given={"v": value})[0]["content"] == value


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_survive_the_round_trip_through_pipeline_strings(n):
    assert coerce("n", "integer", str(n)) == n


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c, max_size=3),
        max_leaves=8,
    )
)
def test_arrays_are_accepted_as_json_strings(value):
    import json

    items = value if isinstance(value, list) else [value]
    assert coerce("a", "array", json.dumps(items)) == items
