"""The live sockets, driven with Channels' WebsocketCommunicator against the real ASGI app
(origin check, session auth, routing): refusal, order, replay after ?after=N, live
delivery through the group, and the embedded relay forwarding rows written elsewhere."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections

from buildsite.asgi import application
from buildsite.roles import Role
from tasks.consumers import after_from
from tasks.events import send_to_groups
from tasks.models import Event
from tasks.services import record_event
from tests.factories import add_member, make_pipeline, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_thread_connections():
    """database_sync_to_async runs in a worker thread whose connection would outlive the
    test (CONN_MAX_AGE), and PostgreSQL will not drop a test database still in use."""
    yield
    await database_sync_to_async(connections.close_all)()


PIPELINE = """
tasks:
  one: {steps: [{run: "echo one"}]}
  two: {needs: [one], steps: [{run: "echo two"}]}
"""


def session_cookie(user) -> bytes:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return f"{django_settings.SESSION_COOKIE_NAME}={store.session_key}".encode()


async def communicator(path: str, user=None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(session_cookie)(user)))
    return WebsocketCommunicator(application, path, headers=headers)


def setup_build():
    from builds.services import trigger_build

    owner = make_user()
    project = make_project(owner=owner, slug="live")
    make_pipeline(project, PIPELINE)
    build = trigger_build(user=None, project=project, pipeline="main")
    return owner, project, build


def log_event(project, build, text):
    task = build.tasks.get(name="one")
    return record_event(project_id=project.id, type=Event.Type.LOG, task=task, data={"text": text})


async def receive_all(comm, count, timeout=3):
    return [await comm.receive_json_from(timeout=timeout) for _ in range(count)]


@pytest.fixture
def no_relay(settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "EVENT_RELAY": False}


@pytest.fixture
def with_relay(settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "EVENT_RELAY": True, "RELAY_POLL_SECONDS": 0.01}


def test_after_is_parsed_defensively():
    assert after_from(b"after=12") == 12
    assert after_from(b"") == 0
    assert after_from(b"after=-3") == 0
    assert after_from(b"after=abc") == 0


async def test_outsider_and_anonymous_are_refused(no_relay):
    owner, project, build = await database_sync_to_async(setup_build)()
    outsider = await database_sync_to_async(make_user)()
    for path in (f"/ws/builds/{build.id}/", "/ws/projects/live/"):
        for who in (outsider, None):
            comm = await communicator(path, who)
            connected, code = await comm.connect()
            assert not connected, (path, who)
            assert code == 4403
            await comm.disconnect()


async def test_unknown_build_and_project_are_refused_like_private_ones(no_relay):
    owner, project, build = await database_sync_to_async(setup_build)()
    for path in (f"/ws/builds/{build.id + 1000}/", "/ws/projects/nope/"):
        comm = await communicator(path, owner)
        connected, _ = await comm.connect()
        assert not connected
        await comm.disconnect()


async def test_foreign_origin_is_refused(no_relay):
    owner, project, build = await database_sync_to_async(setup_build)()
    cookie = await database_sync_to_async(session_cookie)(owner)
    comm = WebsocketCommunicator(
        application,
        f"/ws/builds/{build.id}/",
        headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)],
    )
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


async def test_viewer_gets_the_history_in_id_order_with_the_api_shape(no_relay):
    owner, project, build = await database_sync_to_async(setup_build)()
    viewer = await database_sync_to_async(make_user)()
    await database_sync_to_async(add_member)(project, viewer, Role.VIEWER)
    expected = await database_sync_to_async(
        lambda: [e.id for e in Event.objects.filter(build_id=build.id).order_by("id")]
    )()
    assert len(expected) >= 3  # build queued, tasks resolved
    comm = await communicator(f"/ws/builds/{build.id}/", viewer)
    connected, _ = await comm.connect()
    assert connected
    events = await receive_all(comm, len(expected))
    assert [e["id"] for e in events] == expected
    first = events[0]
    assert set(first) >= {"id", "type", "build", "task", "state"}
    assert first["build"] == build.id
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


async def test_replay_starts_after_n(no_relay):
    owner, project, build = await database_sync_to_async(setup_build)()
    ids = await database_sync_to_async(
        lambda: list(Event.objects.filter(build_id=build.id).values_list("id", flat=True))
    )()
    cut = ids[1]
    comm = await communicator(f"/ws/builds/{build.id}/?after={cut}", owner)
    assert (await comm.connect())[0]
    events = await receive_all(comm, len(ids) - 2)
    assert [e["id"] for e in events] == ids[2:]
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


async def test_live_events_come_through_the_group_once_even_if_also_replayed(no_relay):
    owner, project, build = await database_sync_to_async(setup_build)()
    comm = await communicator(f"/ws/builds/{build.id}/", owner)
    assert (await comm.connect())[0]
    history = await database_sync_to_async(
        lambda: list(Event.objects.filter(build_id=build.id).order_by("id"))
    )()
    await receive_all(comm, len(history))
    # An event published twice (the replay/live boundary, a relay restart) arrives once.
    await get_channel_layer().group_send(
        f"build.{build.id}", {"type": "event.batch", "events": [_serialized(history[-1])]}
    )
    assert await comm.receive_nothing(timeout=0.2)
    fresh = await database_sync_to_async(log_event)(project, build, "hello\n")
    await database_sync_to_async(send_to_groups)([fresh])
    live = await comm.receive_json_from(timeout=3)
    assert live["id"] == fresh.id
    assert live["type"] == "log" and live["data"]["text"] == "hello\n"
    assert live["task"] == "one"
    await comm.disconnect()


async def test_project_socket_sees_every_build_of_its_project_only(no_relay):
    owner, project, build = await database_sync_to_async(setup_build)()
    other = await database_sync_to_async(make_project)(owner=owner, slug="other")
    count = await database_sync_to_async(
        lambda: Event.objects.filter(project_id=project.id).count()
    )()
    comm = await communicator("/ws/projects/live/", owner)
    assert (await comm.connect())[0]
    events = await receive_all(comm, count)
    assert {e["project"] for e in events} == {project.id}
    foreign = await database_sync_to_async(record_event)(
        project_id=other.id, type=Event.Type.CACHE, data={"n": 1}
    )
    await database_sync_to_async(send_to_groups)([foreign])
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
async def test_embedded_relay_forwards_rows_written_by_another_process(with_relay):
    """Workers only write rows; the relay in the web process must push them, in order."""
    owner, project, build = await database_sync_to_async(setup_build)()
    count = await database_sync_to_async(lambda: Event.objects.filter(build_id=build.id).count())()
    comm = await communicator(f"/ws/builds/{build.id}/", owner)
    assert (await comm.connect())[0]
    await receive_all(comm, count)
    written = []
    for i in range(5):
        written.append((await database_sync_to_async(log_event)(project, build, f"line {i}\n")).id)
    events = await receive_all(comm, 5)
    assert [e["id"] for e in events] == written
    assert [e["data"]["text"] for e in events] == [f"line {i}\n" for i in range(5)]
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()
    await asyncio.sleep(0)


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
async def test_reconnect_with_after_gets_what_was_missed_while_away(with_relay):
    owner, project, build = await database_sync_to_async(setup_build)()
    comm = await communicator(f"/ws/builds/{build.id}/", owner)
    assert (await comm.connect())[0]
    count = await database_sync_to_async(lambda: Event.objects.filter(build_id=build.id).count())()
    seen = await receive_all(comm, count)
    await comm.disconnect()
    missed = [(await database_sync_to_async(log_event)(project, build, "away\n")).id]
    comm = await communicator(f"/ws/builds/{build.id}/?after={seen[-1]['id']}", owner)
    assert (await comm.connect())[0]
    missed.append((await database_sync_to_async(log_event)(project, build, "back\n")).id)
    events = await receive_all(comm, 2)
    assert [e["id"] for e in events] == missed
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


def _serialized(event):
    from tasks.events import serialize

    return serialize(event)


async def test_events_go_out_in_batches_per_group_in_id_order():
    """A 10,000-task build must not cost two channel-layer messages per event."""
    from types import SimpleNamespace

    from django.utils import timezone

    from tasks.events import BATCH, send_batches, serialize

    sent = []

    class Layer:
        async def group_send(self, group, message):
            sent.append((group, [e["id"] for e in message["events"]]))

    now = timezone.now()
    events = [
        SimpleNamespace(
            id=i, type="task.state", project_id=7, build_id=3, task_name=f"t{i}",
            new_state="cached", old_state="pending", data={}, created_at=now,
        )
        for i in range(1, 2 * BATCH + 51)
    ]  # fmt: skip
    await send_batches(Layer(), [serialize(e) for e in events])
    assert [group for group, _ in sent] == ["build.3"] * 3 + ["project.7"] * 3
    for group in ("build.3", "project.7"):
        ids = [i for g, batch in sent if g == group for i in batch]
        assert ids == list(range(1, 2 * BATCH + 51))
