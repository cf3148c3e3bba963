"""A build's state from its tasks' states: read as the distinct states, whatever the
build's size (a finished 10,000-task build was read a row per task)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from builds.services import refresh_build_state, trigger_build
from tests.factories import make_pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_finished_build_is_judged_from_one_row_per_distinct_state(project):
    make_pipeline(project, "tasks:\n" + "".join(f"  t{i}: {{}}\n" for i in range(60)))
    build = trigger_build(user=None, project=project, pipeline="main")
    build.tasks.update(state="succeeded")
    build.tasks.filter(name__in=["t1", "t2"]).update(state="failed")
    with CaptureQueriesContext(connection) as queries:
        refresh_build_state(build=build)
    assert build.state == "failed"
    (distinct,) = [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(distinct)
        assert sorted(row[0] for row in cursor.fetchall()) == ["failed", "succeeded"]
