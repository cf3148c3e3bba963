"""The search query builder (pure): any input gives a well-formed expression."""

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from docs_engine.search.query import Term, marked_to_html, parse_query, to_fts5, to_tsquery


def test_words_phrases_prefixes_and_exclusions():
    terms = parse_query('install "quick start" inst* -windows')
    assert terms == [
        Term(("install",)),
        Term(("quick", "start")),
        Term(("inst",), prefix=True),
        Term(("windows",), negated=True),
    ]
    assert to_fts5(terms) == '("install" AND "quick start" AND "inst"*) NOT "windows"'
    assert to_tsquery(terms) == "'install' & ('quick' <-> 'start') & 'inst':* & !'windows'"


def test_operators_and_punctuation_are_text():
    assert to_fts5(parse_query('AND OR ( ) NEAR "unclosed')) == (
        '("and" AND "or" AND "near" AND "unclosed")'
    )
    assert parse_query('c++ *** --- ""') == [Term(("c",))]
    assert parse_query("foo-bar") == [Term(("foo", "bar"))]


def test_only_exclusions_or_nothing_match_nothing():
    assert to_fts5(parse_query("-a -b")) is None
    assert to_tsquery(parse_query("")) is None


def test_snippet_markup_is_escaped_apart_from_marks():
    assert marked_to_html("<b>\ue000x\ue001</b>") == "&lt;b&gt;<mark>x</mark>&lt;/b&gt;"


_db = sqlite3.connect(":memory:")
_db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter unicode61')")
_db.execute("INSERT INTO t VALUES ('some text to search')")


@given(st.text(max_size=80))
def test_any_input_is_a_valid_fts5_expression(text):
    expression = to_fts5(parse_query(text))
    if expression is not None:
        _db.execute("SELECT count(*) FROM t WHERE t MATCH ?", (expression,)).fetchone()
