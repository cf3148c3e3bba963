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


@pytest.mark.parametrize(
    "source",
    [
        "{{ (10 ** 100000000) > 1 }}",  # froze every request for 3.5 minutes (constant folding)
        "{{ x * 10000000 }}",
        "{{ 'x' * 10000000 }}",
        "{{ [1] * 10000000 }}",
        "{{ '%0100000000d' % 1 }}",
    ],
)
def test_size_bombs_are_refused_at_once_naming_the_bound(source):
    import time

    started = time.monotonic()
    check_syntax(source)  # saving compiles nothing large any more
    with pytest.raises(TemplateError) as err:
        render(source, {"x": "abc"}, where="template")
    assert "too large" in err.value.message or "over" in err.value.message
    assert "template" in err.value.message
    assert time.monotonic() - started < 1.0


def test_ordinary_arithmetic_and_repetition_still_work():
    assert render("{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ 'v%s' % 1 }} {{ 6 * 7 }}", {}) == (
        "1024 ababab v1 42"
    )


def test_rendered_output_is_capped():
    with pytest.raises(TemplateError, match="over 1000000 characters"):
        render("{% for i in range(20) %}{{ x }}{% endfor %}", {"x": "y" * 100_000})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "loops",
        ),
        ("{% for a in range(99999) %}{% for b in range(99) %}x{% endfor %}{% endfor %}", "over"),
    ],
)
def test_loops_are_bounded_in_items_and_time(source, message):
    import time

    started = time.monotonic()
    with pytest.raises(TemplateError, match=message):
        render(source, {})
    assert time.monotonic() - started < 3.0  # the render's own bound is 2 s


def test_a_small_loop_still_renders():
    assert render("{% for i in range(3) %}{{ i }}{% endfor %}", {}) == "012"
