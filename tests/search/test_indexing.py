"""The log indexer: chunks of one attempt, topped up and split; the event position,
holes in the ids (PostgreSQL commits ids out of order)."""

from types import SimpleNamespace

import pytest

from builds.services import trigger_build
from search import indexing, services
from search.models import IndexPosition, LogChunk
from tasks import outbox as tasks_outbox
from tasks.models import Event, Task
from tasks.services import record_event
from tests.factories import make_pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture
def task(project, monkeypatch):
    import builds.services

    monkeypatch.setattr(builds.services, "dispatch_on_commit", lambda project_id: None)
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'true'}]}\n")
    return Task.objects.get(build=trigger_build(user=None, project=project, pipeline="main"))


def log(task, text, attempt=1):
    return record_event(
        project_id=task.build.project_id, type=Event.Type.LOG, task=task,
        data={"text": text, "attempt": attempt},
    )  # fmt: skip


def bodies():
    return list(LogChunk.objects.order_by("id").values_list("attempt", "body"))


def test_an_attempt_is_topped_up_then_split_at_line_ends(task, monkeypatch):
    monkeypatch.setattr(services, "CHUNK_CHARS", 20)
    log(task, "one\n")
    indexing.run_upkeep()
    log(task, "two\n")
    log(task, "\x1b[31mred\x1b[0m\n", attempt=2)  # colour codes are not text
    indexing.run_upkeep()
    assert bodies() == [(1, "one\ntwo\n"), (2, "red\n")]
    log(task, "three\nfour-four-four\n")  # 8 + 6 fits, the rest does not
    indexing.run_upkeep()
    assert bodies() == [(1, "one\ntwo\nthree\n"), (2, "red\n"), (1, "four-four-four\n")]
    log(task, "x" * 45)  # one line longer than a chunk
    indexing.run_upkeep()
    assert [b for _, b in bodies()][3:] == ["x" * 20, "x" * 20, "x" * 5]


def test_other_events_move_the_position_but_index_nothing(task, project):
    event = record_event(project_id=project.id, type=Event.Type.LABEL_MOVED, data={})
    assert indexing.run_upkeep() == 0
    assert IndexPosition.objects.get(name=indexing.POSITION).last_event_id == event.id


def test_a_hole_holds_the_position_back_until_it_fills_or_times_out(monkeypatch, settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "SEARCH_GAP_SECONDS": 2.0}
    monkeypatch.setattr(tasks_outbox, "connection", SimpleNamespace(vendor="postgresql"))
    clock = [100.0]
    monkeypatch.setattr(tasks_outbox.time, "monotonic", lambda: clock[0])
    indexing.GAPS.clear()
    assert indexing.GAPS.contiguous(10, [11, 12, 14]) == 12  # 13 may still commit
    clock[0] += 3
    assert indexing.GAPS.contiguous(12, [14]) == 14  # waited long enough: rolled back
    assert indexing.GAPS.contiguous(14, [15, 16]) == 16
