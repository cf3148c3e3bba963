"""Response processing (pure): fences, JSON extraction, schema validation, repair."""

import json

from hypothesis import given
from hypothesis import strategies as st

from prompts.processing import (
    ExtractionError,
    find_json,
    process,
    repair_message,
    strip_code_fences,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
# prose never contains the characters that start JSON values or fences
prose = st.text(
    alphabet=st.characters(blacklist_characters='{}[]`"', blacklist_categories=("Cs",)), max_size=60
)
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "count": {"type": "integer", "minimum": 0}},
    "required": ["title", "count"],
}


@given(json_objects, prose, prose)
def test_finds_an_object_inside_prose(value, before, after):
    text = f"{before}{json.dumps(value)}{after}"
    assert find_json(text) == value


@given(json_objects, prose, prose, st.sampled_from(["json", "JSON", "", "javascript"]))
def test_finds_an_object_inside_a_code_fence(value, before, after, lang):
    text = f"{before}\n```{lang}\n{json.dumps(value, indent=2)}\n```\n{after}"
    assert find_json(text) == value


@given(st.text(max_size=80), prose)
def test_strip_code_fences_returns_the_block_body(body, around):
    body = body.replace("`", "")
    assert strip_code_fences(f"{around}\n```\n{body}\n```") == body.strip()


@given(st.text(max_size=200))
def test_extraction_either_finds_json_or_says_so(text):
    try:
        value = find_json(text)
    except ExtractionError as exc:
        assert "no JSON object" in str(exc)
    else:
        assert isinstance(value, (dict, list))


def test_text_without_json_is_an_extraction_failure():
    result = process("Sure! Here you go.", response_format="json", schema=None)
    assert not result.ok and result.error == "no JSON object found in the response"


def test_schema_violations_are_listed_with_their_path():
    result = process('{"title": 3, "count": -1}', response_format="json", schema=SCHEMA)
    assert not result.ok
    assert "$.count: -1 is less than the minimum of 0" in result.error
    assert "$.title: 3 is not of type 'string'" in result.error
    assert result.parsed == {"title": 3, "count": -1}


def test_a_valid_fenced_answer_passes():
    result = process(
        'Here:\n```json\n{"title": "x", "count": 2}\n```', response_format="json", schema=SCHEMA
    )
    assert result.ok and result.parsed == {"title": "x", "count": 2}
    assert json.loads(result.output) == result.parsed


def test_text_format_returns_the_trimmed_answer_and_refuses_an_empty_one():
    assert process("  hello \n", response_format="text", schema=None).parsed == "hello"
    assert not process("   ", response_format="text", schema=None).ok


def test_repair_message_names_the_error_and_carries_the_schema():
    message = repair_message("does not match the schema: $.count: ...", SCHEMA)
    assert message["role"] == "user"
    assert "does not match the schema" in message["content"]
    assert '"required"' in message["content"]


def test_a_flood_of_braces_is_refused_quickly():
    import time

    started = time.monotonic()
    try:
        find_json("{" * 50_000 + '{"a": 1}')
    except ExtractionError as exc:
        assert "no JSON object" in str(exc)
    assert time.monotonic() - started < 1.0
