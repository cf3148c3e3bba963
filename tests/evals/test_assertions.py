"""The assertion engine, without a database: shapes refused at save with their place,
each assertion type, JSON paths and regexes against direct computation, and scores."""

import json
import math
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.assertions import (
    KEYS,
    REGEX_TIMEOUT_SECONDS,
    GradeError,
    check_expectations,
    evaluate,
    json_equal,
)
from evals.jsonpath import Index, Key, PathError, Wildcard, parse_path, render_path, select


def places(expect):
    return [p.where for p in check_expectations(expect)]


# --- check_expectations -------------------------------------------------------------


def test_unknown_types_are_refused_with_their_index():
    expect = [{"type": "contains", "value": "a"}, {"type": "is_json"}, {"type": "sounds_nice"}]
    problems = check_expectations(expect)
    assert [p.where for p in problems] == ["expect.2.type"]
    assert "sounds_nice" in problems[0].message and "contains" in problems[0].message


@pytest.mark.parametrize(
    ("assertion", "where"),
    [
        ({"type": "equals"}, "expect.0.value"),
        ({"type": "equals", "value": 3}, "expect.0.value"),
        ({"type": "contains", "value": "a", "extra": 1}, "expect.0.extra"),
        ({"type": "contains", "value": "a", "ignore_case": "yes"}, "expect.0.ignore_case"),
        ({"type": "regex", "pattern": "(unclosed"}, "expect.0.pattern"),
        ({"type": "regex", "pattern": "a" * 1001}, "expect.0.pattern"),
        ({"type": "json_schema", "schema": {"type": "nonsense"}}, "expect.0.schema"),
        ({"type": "json_schema", "schema": []}, "expect.0.schema"),
        ({"type": "json_path", "path": "score", "equals": 1}, "expect.0.path"),
        ({"type": "json_path", "path": "$.a[", "equals": 1}, "expect.0.path"),
        ({"type": "json_path", "path": "$.a"}, "expect.0.equals"),
        ({"type": "max_latency_ms", "value": -1}, "expect.0.value"),
        ({"type": "max_latency_ms", "value": 1.5}, "expect.0.value"),
        ({"type": "max_cost_usd", "value": True}, "expect.0.value"),
        ({"type": "graded_by", "prompt": "Not A Name"}, "expect.0.prompt"),
        ({"type": "graded_by", "prompt": "judge", "min_score": 2}, "expect.0.min_score"),
        ({"type": "is_json", "weight": 0}, "expect.0.weight"),
        ({"type": "is_json", "weight": float("inf")}, "expect.0.weight"),
        ({"type": "is_json", "weight": "2"}, "expect.0.weight"),
        ("contains", "expect.0"),
    ],
)
def test_bad_shapes_are_named_by_their_field(assertion, where):
    assert places([assertion]) == [where]


def test_good_shapes_pass_and_non_lists_are_refused():
    good = [
        {"type": "equals", "value": "Paris", "trim": True, "weight": 2},
        {"type": "contains", "value": "paris", "ignore_case": True},
        {"type": "not_contains", "value": "London"},
        {"type": "regex", "pattern": r"^\d+$"},
        {"type": "is_json"},
        {"type": "json_schema", "schema": {"type": "object", "required": ["a"]}},
        {"type": "json_path", "path": "$.items[0]['a b'][*]", "equals": [1]},
        {"type": "max_latency_ms", "value": 2000},
        {"type": "max_cost_usd", "value": 0.01},
        {"type": "graded_by", "prompt": "judge@production", "min_score": 0.7},
    ]
    assert check_expectations(good) == []
    assert {a["type"] for a in good} == set(KEYS)
    assert places({"type": "is_json"}) == ["expect"]
    assert places([{"type": "is_json"}] * 51) == ["expect"]


# --- evaluate: each type ------------------------------------------------------------


def run(expect, output="", **kwargs):
    return evaluate(expect, output=output, **kwargs)


def test_text_assertions():
    assert run([{"type": "equals", "value": "Paris"}], "Paris").passed
    assert not run([{"type": "equals", "value": "Paris"}], " Paris\n").passed
    assert run([{"type": "equals", "value": "Paris", "trim": True}], " Paris\n").passed
    assert run([{"type": "contains", "value": "PAR", "ignore_case": True}], "in paris").passed
    assert not run([{"type": "contains", "value": "PAR"}], "in paris").passed
    result = run([{"type": "not_contains", "value": "London"}], "London calling")
    assert not result.passed and result.failures[0].startswith("expect.0 (not_contains)")


def test_failures_name_the_assertion_and_truncate_what_was_got():
    result = run([{"type": "is_json"}, {"type": "equals", "value": "x"}], "y" * 5000)
    assert [f.split(" ", 1)[0] for f in result.failures] == ["expect.0", "expect.1"]
    assert "expected 'x'" in result.failures[1]
    assert all(len(f) < 400 for f in result.failures)


def test_json_assertions():
    schema = {"type": "object", "properties": {"score": {"type": "integer", "maximum": 10}}}
    expect = [
        {"type": "is_json"},
        {"type": "json_schema", "schema": schema},
        {"type": "json_path", "path": "$.score", "equals": 7},
    ]
    assert run(expect, ' {"score": 7}\n').passed
    assert run(expect, '{"score": 7.0}').passed  # 7 and 7.0 are the same JSON number
    failed = run(expect, '{"score": 11}')
    assert [f.split(" ")[0] for f in failed.failures] == ["expect.1", "expect.2"]
    assert "$.score" in failed.failures[0] and "got 11" in failed.failures[1]
    assert not run(expect, "score: 7").passed
    missing = run([{"type": "json_path", "path": "$.other", "equals": 1}], '{"score": 7}')
    assert "nothing at $.other" in missing.failures[0]
    assert not run([{"type": "is_json"}], "NaN").passed
    assert not run([{"type": "is_json"}], "[" * 100_000).passed  # too deep: refused, no crash


def test_json_path_equality_keeps_booleans_apart_from_numbers():
    assert not run([{"type": "json_path", "path": "$.ok", "equals": 1}], '{"ok": true}').passed
    assert run([{"type": "json_path", "path": "$.ok", "equals": True}], '{"ok": true}').passed
    wildcard = {"type": "json_path", "path": "$.xs[*].id", "equals": [1, 2]}
    assert run([wildcard], '{"xs": [{"id": 1}, {"id": 2}]}').passed
    assert not json_equal(1, True) and not json_equal([0], [False])
    assert json_equal({"a": 1}, {"a": 1.0})


def test_latency_and_cost():
    expect = [{"type": "max_latency_ms", "value": 100}, {"type": "max_cost_usd", "value": 0.01}]
    assert run(expect, latency_ms=100, cost_usd=0.01).passed
    slow = run(expect, latency_ms=101, cost_usd=0.02)
    assert "101 ms" in slow.failures[0] and "0.02" in slow.failures[1]
    unknown = run(expect)
    assert "unknown" in unknown.failures[0] and "unknown" in unknown.failures[1]


def test_graded_by_calls_the_judge_with_output_and_variables():
    calls = []

    def grade(prompt, output, variables):
        calls.append((prompt, output, variables))
        return {"great": 0.9, "meh": 0.4}[output]

    expect = [{"type": "graded_by", "prompt": "judge@production", "min_score": 0.5}]
    good = run(expect, "great", variables={"q": 1}, grade=grade)
    assert good.passed and good.score == pytest.approx(0.9)
    assert calls == [("judge@production", "great", {"q": 1})]
    meh = run(expect, "meh", grade=grade)
    assert not meh.passed and meh.score == pytest.approx(0.4) and "0.4" in meh.failures[0]
    assert "no judge" in run(expect, "great").failures[0]


@pytest.mark.parametrize("returned", [1.5, -0.1, float("nan"), "0.9", None, True])
def test_a_judge_returning_no_score_fails_the_assertion(returned):
    result = run([{"type": "graded_by", "prompt": "judge"}], "x", grade=lambda *a: returned)
    assert not result.passed and result.score == 0.0 and "not a score" in result.failures[0]


def test_a_judge_error_becomes_the_failure():
    def grade(*args):
        raise GradeError("the judge answered 'dunno'")

    result = run([{"type": "graded_by", "prompt": "judge"}], "x", grade=grade)
    assert "dunno" in result.failures[0]


def test_unsaved_shapes_are_refused_by_evaluate_too():
    from buildsite.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"expect\.0\.type"):
        run([{"type": "vibes"}], "x")


# --- regex ------------------------------------------------------------------------


def test_catastrophic_backtracking_is_cut_off():
    started = time.monotonic()
    result = run([{"type": "regex", "pattern": r"(x+x+)+y"}], "x" * 5000)
    assert time.monotonic() - started < REGEX_TIMEOUT_SECONDS + 1.5
    assert not result.passed and "took over" in result.failures[0]
    schema = {"type": "string", "pattern": r"^(a|aa)+$"}
    slow = run([{"type": "json_schema", "schema": schema}], json.dumps("a" * 60 + "!"))
    assert not slow.passed and "took over" in slow.failures[0]


PATTERN_ATOMS = st.sampled_from(["a", "b", ".", r"\d", "[ab]", "[^a]", "^", "$", "x", r"\s"])
QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{1,2}", "*?"])


@st.composite
def patterns(draw):
    parts = draw(st.lists(st.tuples(PATTERN_ATOMS, QUANTIFIERS), min_size=1, max_size=6))
    pattern = "".join(a + (q if a not in "^$" else "") for a, q in parts)
    if draw(st.booleans()):
        pattern = f"({pattern})|{draw(PATTERN_ATOMS)}"
    return pattern


@given(pattern=patterns(), text=st.text(alphabet="ab1 x\n", max_size=30))
def test_regex_agrees_with_python_re(pattern, text):
    expected = re.search(pattern, text) is not None
    assert run([{"type": "regex", "pattern": pattern}], text).passed is expected


# --- JSON path --------------------------------------------------------------------

KEYS_TEXT = st.text(alphabet="ab_-'\" .[]$\\1", min_size=1, max_size=6)
DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS_TEXT, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def document_and_walk(draw):
    """A document and a path into it, with the value found by indexing directly."""
    document = draw(DOCUMENTS)
    segments, value = [], document
    while isinstance(value, list | dict) and value and draw(st.booleans()):
        if isinstance(value, list):
            index = draw(st.integers(-len(value), len(value) - 1))
            segments.append(Index(index))
            value = value[index]
        else:
            key = draw(st.sampled_from(sorted(value)))
            segments.append(Key(key))
            value = value[key]
    return document, segments, value


@given(document_and_walk())
def test_json_path_agrees_with_direct_indexing(case):
    document, segments, value = case
    path = render_path(segments)
    assert parse_path(path) == tuple(segments)
    assert select(document, parse_path(path)) == [value]
    expect = [{"type": "json_path", "path": path, "equals": value}]
    assert check_expectations(expect) == []
    assert run(expect, json.dumps(document)).passed


@given(DOCUMENTS)
def test_wildcard_selects_every_element(document):
    expected = (
        list(document)
        if isinstance(document, list)
        else list(document.values())
        if isinstance(document, dict)
        else []
    )
    assert select(document, (Wildcard(),)) == expected
    assert select(document, parse_path("$.*")) == expected


@pytest.mark.parametrize("path", ["$.", "$..a", "$[1:2]", "$[?(@.a)]", "$['a]", "$[a]", "x"])
def test_json_path_outside_the_subset_is_refused(path):
    with pytest.raises(PathError):
        parse_path(path)


# --- scores -----------------------------------------------------------------------

SIMPLE = st.sampled_from(
    [
        {"type": "contains", "value": "a"},
        {"type": "not_contains", "value": "b"},
        {"type": "is_json"},
        {"type": "regex", "pattern": "^a"},
    ]
)
WEIGHTS = st.none() | st.floats(min_value=1e-6, max_value=1000)


@given(
    st.lists(st.tuples(SIMPLE, WEIGHTS), max_size=8),
    st.sampled_from(["a", "b", "ab", '"a"', "1"]),
)
@settings(max_examples=200)
def test_score_is_a_weighted_mean_in_range_and_passing_means_all_pass(assertions, output):
    expect = [dict(a, **({} if w is None else {"weight": w})) for a, w in assertions]
    result = run(expect, output)
    singles = [run([a], output).passed for a in expect]
    assert 0.0 <= result.score <= 1.0 and not math.isnan(result.score)
    assert result.passed is all(singles)
    assert len(result.failures) == singles.count(False)
    if all(singles):
        assert result.score == 1.0
    if expect and not any(singles):
        assert result.score == 0.0
    weights = [a.get("weight", 1.0) for a in expect]
    mean = sum(w * s for w, s in zip(weights, singles, strict=True)) / sum(weights) if expect else 1
    assert result.score == pytest.approx(mean)
