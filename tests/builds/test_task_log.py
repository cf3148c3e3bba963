"""A task's log is its `log` events: nothing lost when a flush fails, nothing reordered."""

import pytest

from builds import execution
from builds.execution import TaskLog
from builds.selectors import task_log
from builds.services import trigger_build
from tasks.models import Event, Task
from tests.factories import api_client, make_pipeline, run_build

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


def test_every_attempt_is_in_the_log_and_marked(project, inline_workers, fast_engine):
    make_pipeline(project, "tasks:\n  flaky: {retries: 1, steps: [{run: 'echo trying; exit 1'}]}\n")
    build = run_build(project)
    log = task_log(build=build, name="flaky")
    first, marker, second = log.partition("--- attempt 2 ---\n")
    assert marker and "trying" in first and "trying" in second


def test_a_task_that_has_not_started_has_no_log_and_says_so(project, user, monkeypatch):
    import builds.services

    monkeypatch.setattr(builds.services, "dispatch_on_commit", lambda project_id: None)
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'true'}]}\n")
    build = trigger_build(user=None, project=project, pipeline="main")
    response = api_client(user, project).get(f"/api/builds/{build.id}/tasks/t/log")
    assert response.status_code == 404
    assert "has not started" in response.json()["detail"]
