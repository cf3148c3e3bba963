"""Refs, version specs and diffs, the offline provider, key crypto, pricing (the URL
guard is in test_netguard.py)."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import validate

from buildsite import crypto
from buildsite.errors import InvalidInput
from prompts.pricing import cost_of
from prompts.providers import ChatRequest, OfflineProvider
from prompts.refs import PromptRef, parse_ref
from prompts.spec import clean_version, diff

names = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)


# --- refs -------------------------------------------------------------------------------
def test_refs():
    assert parse_ref("notes@production") == PromptRef("notes", "production", None)
    assert parse_ref("notes#12") == PromptRef("notes", None, 12)
    assert parse_ref("notes") == PromptRef("notes", "latest", None)
    for bad in ("", "Notes", "notes@", "notes#0", "notes#x", "a@b#1", "notes@prod@x"):
        with pytest.raises(InvalidInput):
            parse_ref(bad)


@given(
    names, st.one_of(names.map(lambda n: ("@", n)), st.integers(1, 10**6).map(lambda n: ("#", n)))
)
def test_refs_round_trip(name, selector):
    ref = parse_ref(f"{name}{selector[0]}{selector[1]}")
    assert parse_ref(str(ref)) == ref
    assert ref.name == name


# --- specs and diffs ----------------------------------------------------------------------
def test_spec_lists_every_problem():
    with pytest.raises(InvalidInput) as info:
        clean_version(
            {
                "template": "x",
                "messages": [{"role": "user", "content": "y"}],
                "temperature": 3,
                "response_format": "xml",
            }
        )
    where = {p.where for p in info.value.problems}
    assert {"template", "temperature", "response_format"} <= where


def test_spec_refuses_an_invalid_json_schema():
    with pytest.raises(InvalidInput) as info:
        clean_version({"template": "x", "response_format": "json", "response_schema": {"type": 5}})
    assert info.value.problems[0].where == "response_schema"
    assert "invalid JSON Schema" in info.value.problems[0].message


def test_diff_shows_changed_fields_and_a_unified_diff():
    old = clean_version({"template": "Hello {{ a }}", "variables": {"a": "string"}})
    new = clean_version(
        {"template": "Hi {{ a }}", "variables": {"a": "string"}, "temperature": 0.5}
    )
    result = diff(old, new, old_name="p#1", new_name="p#2")
    assert [c["field"] for c in result["changes"]] == ["template", "temperature"]
    assert "-Hello {{ a }}" in result["unified"] and "+Hi {{ a }}" in result["unified"]


# --- offline provider --------------------------------------------------------------------
SCHEMAS = [
    {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 40},
            "n": {"type": "integer", "minimum": 5, "maximum": 9},
        },
        "required": ["title", "n"],
    },
    {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 3},
    {
        "type": "object",
        "properties": {
            "x": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 1}]},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
        },
        "$defs": {"tag": {"type": "string", "maxLength": 4}},
    },
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"const": 1}}, "required": ["a"]},
            {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
        ]
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_offline_json_answers_match_the_schema(schema):
    import json

    request = ChatRequest(
        messages=[{"role": "user", "content": "go"}],
        model="offline",
        response_format="json",
        response_schema=schema,
    )
    result = OfflineProvider().complete(request)
    validate(json.loads(result.text), schema)


def test_offline_answers_are_deterministic_and_labelled():
    request = ChatRequest(
        messages=[{"role": "user", "content": "Summarise the log"}], model="offline"
    )
    a, b = OfflineProvider().complete(request), OfflineProvider().complete(request)
    assert a == b
    assert a.text.startswith("[offline provider") and "Summarise the log" in a.text
    assert a.tokens_in > 0 and a.tokens_out > 0


# --- stored keys and prices -------------------------------------------------------------
def test_stored_keys_are_encrypted_and_decrypt_only_with_the_same_key(monkeypatch, settings):
    monkeypatch.delenv("BUILDSITE_ENCRYPTION_KEY", raising=False)
    token = crypto.encrypt("sk-live-abc")
    assert "sk-live-abc" not in token
    assert crypto.decrypt(token) == "sk-live-abc"
    monkeypatch.setenv("BUILDSITE_ENCRYPTION_KEY", "a different passphrase")
    with pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(token)


def test_cost_uses_the_price_table_or_the_provider_override():
    assert cost_of(model="gpt-4o-mini", tokens_in=1_000_000, tokens_out=2_000_000) == Decimal(
        "1.35"
    )
    assert cost_of(model="gpt-4o-2024-08-06", tokens_in=1000, tokens_out=0) == Decimal("0.0025")
    assert cost_of(model="my-local-llama", tokens_in=10, tokens_out=10) is None
    assert cost_of(
        model="my-local-llama",
        tokens_in=500_000,
        tokens_out=0,
        override=(Decimal("2"), Decimal("4")),
    ) == Decimal("1")
