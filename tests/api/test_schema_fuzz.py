"""Every operation of /api/openapi.json, fed generated input (schemathesis) with a
maintainer's token: no response is a 500, and every response matches the schema.
Bounded: a few examples per operation, derandomized, so a run takes seconds."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.factories import create_token, make_pipeline, make_project, make_user

pytestmark = pytest.mark.slow
EXAMPLES = 25

# Dataset uploads take JSON Lines (one object per line), which schemathesis cannot
# produce from a schema: generate such text, well formed or not.
_JSONL_LINE = st.one_of(
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {"variables": st.dictionaries(st.text(max_size=5), st.text(max_size=10))},
            optional={"expect": st.lists(st.fixed_dictionaries({"type": st.text(max_size=8)}))},
        ),
    ),
    st.text(max_size=40),
)
schemathesis.openapi.media_type(
    "application/x-ndjson",
    st.lists(_JSONL_LINE, max_size=5).map(lambda lines: "\n".join(lines).encode()),
)


def test_no_input_gets_a_500_and_responses_match_the_schema(transactional_db):
    from buildsite.wsgi import application

    user = make_user("fuzz")
    project = make_project(owner=user, slug="fuzz")
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'true'}]}\n")
    _, token = create_token(user=user, project=None)
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case):
            # Business rules (a pipeline must parse, a slug must exist) reject input the
            # schema allows; that is a 4xx, not a failure. Everything else is checked.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except BaseException as exc:  # noqa: BLE001 - an ExceptionGroup: collect them all
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
