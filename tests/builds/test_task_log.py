"""A task's log is its `log` events: nothing lost when a flush fails, nothing reordered."""

import pytest

from builds import execution
from builds.execution import TaskLog
from builds.services import trigger_build
from tasks.models import Event, Task
from tests.factories import make_pipeline

pytestmark = pytest.mark.django_db


def test_a_failed_flush_keeps_its_text_for_the_next_one(project, monkeypatch):
    make_pipeline(project, "tasks:\n  a: {steps: [{run: 'true'}]}\n")
    task = Task.objects.get(build=trigger_build(user=None, project=project, pipeline="main"))
    log = TaskLog(task, project.id)
    real = execution.write_events
    calls = []

    def flaky(rows):
        calls.append(rows)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        real(rows)

    monkeypatch.setattr(execution, "write_events", flaky)
    log.write("one\n")
    with pytest.raises(RuntimeError):
        log.flush()
    log.write("two\n")
    log.flush()
    texts = list(
        Event.objects.filter(task=task, type="log").order_by("id").values_list("data", flat=True)
    )
    assert [t["text"] for t in texts] == ["one\ntwo\n"]
    assert log.take_rest() == ""
