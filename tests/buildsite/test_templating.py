import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsite.templating import TemplateError, check_syntax, render, render_value


def test_variables_render_and_missing_ones_are_named():
    assert render("v{{ params.version }}", {"params": {"version": "2"}}) == "v2"
    with pytest.raises(TemplateError) as err:
        render("{{ params.nope }}", {"params": {}}, where="steps[0]")
    assert "nope" in err.value.message and "steps[0]" in err.value.message


def test_sandbox_refuses_unsafe_attribute_access():
    with pytest.raises(TemplateError):
        render("{{ ''.__class__.__mro__ }}", {})


def test_syntax_errors_carry_their_line():
    with pytest.raises(TemplateError) as err:
        check_syntax("line one\n{% if x %}\nno end", line_offset=10)
    assert err.value.problems[0].line is not None and err.value.problems[0].line > 10


def test_render_value_walks_nested_structures():
    assert render_value({"a": ["{{ x }}", 1], "b": "{{ x }}!"}, {"x": "y"}) == {
        "a": ["y", 1],
        "b": "y!",
    }


@given(st.text(alphabet=st.characters(blacklist_characters="{}%#"), max_size=100))
def test_text_without_markup_is_returned_unchanged(text):
    assert render(text, {}) == text
