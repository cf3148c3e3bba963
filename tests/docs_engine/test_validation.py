"""Validation rules, pure (no database)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsite.errors import InvalidInput
from docs_engine.validation import Site, check_schema, validate_document

SITE = Site(
    anchors={
        "guides/install": frozenset({"requirements", "steps"}),
        "faq": frozenset(),
    },
    redirects={"old/setup": "guides/install"},
)


def check(body, *, title="T", path="guides/intro", tags=None, schema=None, limit=512 * 1024):
    return validate_document(
        path=path, title=title, body=body, tags=tags, site=SITE, schema=schema,
        max_body_bytes=limit,
    )  # fmt: skip


def messages(problems):
    return [(p.line, p.message) for p in problems]


def test_a_clean_document_has_no_problems():
    result = check("# Intro\n\nSee [install](install) and [faq](/docs/faq).\n")
    assert result.errors == [] and result.warnings == []
    assert result.anchors == ["intro"]


def test_title_is_required_unless_front_matter_gives_one():
    assert [p.message for p in check("text", title="").errors] == ["a title is required"]
    assert check("---\ntitle: From YAML\n---\ntext", title=None).title == "From YAML"


def test_broken_links_and_anchors_are_reported_at_their_lines():
    body = (
        "# Intro\n\nok [a](install#steps)\n\n"
        "[b](missing)\n[c](/docs/faq#nope)\n[d](#intro)\n[e](#gone)\n"
    )
    result = check(body)
    assert messages(result.errors) == [
        (5, "broken link 'missing': no document 'guides/missing'"),
        (6, "broken link '/docs/faq#nope': no heading '#nope' in faq"),
        (8, "broken link '#gone': no heading '#gone' in this document"),
    ]


def test_relative_links_resolve_like_files():
    assert check("[x](../faq)").errors == []
    errors = check("[x](../../faq)").errors
    assert "points above the top" in errors[0].message


def test_links_through_a_redirect_are_a_warning():
    result = check("[x](/docs/old/setup#requirements)")
    assert result.errors == []
    assert "moved to guides/install" in result.warnings[0].message


def test_external_links_are_not_checked_but_unsafe_ones_warn():
    result = check(
        "[a](https://example.com/x) [b](mailto:x@y.z) [c](/static/x.css)\n\n"
        "[d](data:image/png;base64,AAAA)"
    )
    assert result.errors == []
    assert [p.line for p in result.warnings] == [3]


def test_empty_headings_are_errors_and_level_jumps_warnings():
    result = check("# Title\n\n##\n\n#### Deep\n")
    assert messages(result.errors) == [(3, "empty heading: give it some text or remove it")]
    assert messages(result.warnings) == [(5, "heading level jumps from h2 to h4")]


def test_front_matter_yaml_errors_carry_the_line():
    result = check("---\ntitle: x\nbad: [unclosed\n---\nbody\n")
    assert result.errors[0].message.startswith("front-matter is not valid YAML")
    assert result.errors[0].line in (3, 4)


def test_front_matter_must_be_closed_and_a_mapping():
    assert check("---\ntitle: x\n").errors[0].message.startswith("front-matter opened")
    assert check("---\n- a\n---\n").errors[0].message.startswith("front-matter must be")


SCHEMA = {
    "type": "object",
    "required": ["owner"],
    "properties": {"owner": {"type": "string"}, "version": {"type": "integer"}},
}


def test_front_matter_is_checked_against_the_project_schema_with_lines():
    result = check("---\ntitle: x\nversion: two\n---\n# H\n", schema=SCHEMA)
    got = messages(result.errors)
    assert (2, "front-matter (front-matter): 'owner' is a required property") in got
    assert (3, "front-matter version: 'two' is not of type 'integer'") in got


def test_a_yaml_alias_bomb_is_refused_not_expanded():
    lines = ["---", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        name, previous = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    bomb = "\n".join(lines + ["---", ""])
    assert "too large" in check(bomb).errors[0].message


def test_size_limits():
    result = check("x" * 2000, limit=1024)
    assert "the limit is 1024" in result.errors[0].message
    assert check("a", title="t" * 201).errors[0].message.startswith("the title is longer")


def test_tags_are_cleaned_and_checked():
    assert check("x", tags=["Ops", "ops", "release-1.2"]).tags == ["ops", "release-1.2"]
    assert check("x", tags=["bad tag"]).errors[0].where == "tags"
    assert check("---\ntags: [a, b]\n---\n").tags == ["a", "b"]


def test_every_problem_is_reported_at_once():
    result = check("##\n[x](nowhere)\n", title="")
    assert len(result.errors) == 3
    with pytest.raises(InvalidInput) as exc:
        result.raise_errors()
    assert len(exc.value.problems) == 3


def test_line_numbers_count_the_front_matter():
    result = check("---\nowner: me\n---\n\n[x](nowhere)\n")
    assert result.errors[0].line == 5


def test_invalid_schemas_are_refused():
    with pytest.raises(InvalidInput):
        check_schema({"type": "no-such-type"})
    with pytest.raises(InvalidInput):
        check_schema([])
    check_schema(SCHEMA)


@given(st.text(max_size=400))
def test_any_text_validates_without_crashing(body):
    result = check(body)
    for problem in result.errors + result.warnings:
        assert problem.line is None or 1 <= problem.line <= body.count("\n") + 2
