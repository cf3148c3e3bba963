"""WebSocket consumers: `/ws/projects/{slug}/` and `/ws/builds/{id}/`, both with `?after=N`.

The contract: each message is one JSON event exactly as `tasks.events.serialize` makes
it (the same ids as `GET /api/builds/{id}/events`). On connect the socket joins its
group first, then replays the Event rows after N from the table, then streams live ones;
an event id already sent is never sent again, so the replay/live boundary neither loses
nor repeats anything. Sockets whose session user has no role in the project are refused.
"""

from __future__ import annotations

from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from buildsite.models import Project
from buildsite.selectors import role_of

from .events import build_group, project_group, serialize
from .relay import EventRelay, ensure_relay
from .selectors import events_after

REPLAY_PAGE = 1000
RECENT_IDS = 5000
CLOSE_FORBIDDEN = 4403


def after_from(query_string: bytes) -> int:
    values = parse_qs(query_string.decode("latin-1")).get("after", ["0"])
    try:
        return max(0, int(values[-1]))
    except ValueError:
        return 0


class EventConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # Channels is untyped
    """Shared by both sockets: subclasses say which project and which events."""

    relay: EventRelay | None = None

    async def connect(self) -> None:
        self.group: str | None = None
        self.sent_ids: set[int] = set()
        self.sent_order: deque[int] = deque()
        # The client already has everything up to `?after`; nothing below it is resent.
        self.floor = after_from(self.scope.get("query_string", b""))
        self.last_id = self.floor
        target = await self.resolve()
        if target is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.project_id, self.build_id, self.group = target
        # The relay must know the newest id before we read the table, so that every
        # later row reaches us live and every earlier one is in the replay.
        self.relay = await ensure_relay()
        if self.relay is not None:
            self.relay.attach()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.replay()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.relay is not None:
            self.relay.detach()
            self.relay = None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; a ping gets the newest id sent so far."""
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "last": self.last_id})

    async def replay(self) -> None:
        while True:
            page = await database_sync_to_async(self.fetch)(self.last_id)
            for event in page:
                await self.deliver(event)
            if len(page) < REPLAY_PAGE:
                return

    def fetch(self, after: int) -> list[dict[str, Any]]:
        rows = events_after(
            build_id=self.build_id,
            project_id=None if self.build_id else self.project_id,
            after=after,
            limit=REPLAY_PAGE,
        )
        return [serialize(e) for e in rows]

    async def event_message(self, message: dict[str, Any]) -> None:
        """One event, as processes of the previous release send them (a rolling deploy
        runs both for a while)."""
        await self.deliver(message["event"])

    async def event_batch(self, message: dict[str, Any]) -> None:
        """Live events from the group, in id order (sent by the relay or, with Redis, by
        the process that wrote them)."""
        for event in message["events"]:
            await self.deliver(event)

    async def deliver(self, event: dict[str, Any]) -> None:
        event_id = event["id"]
        if event_id in self.sent_ids or event_id <= self.floor:
            return
        self.remember(event_id)
        self.last_id = max(self.last_id, event_id)
        await self.send_json(event)

    def remember(self, event_id: int) -> None:
        self.sent_ids.add(event_id)
        self.sent_order.append(event_id)
        if len(self.sent_order) > RECENT_IDS:
            self.sent_ids.discard(self.sent_order.popleft())

    async def resolve(self) -> tuple[int, int | None, str] | None:
        raise NotImplementedError


class ProjectEventsConsumer(EventConsumer):
    async def resolve(self) -> tuple[int, int | None, str] | None:
        slug = self.scope["url_route"]["kwargs"]["slug"]
        project_id = await database_sync_to_async(_visible_project)(self.scope.get("user"), slug)
        if project_id is None:
            return None
        return project_id, None, project_group(project_id)


class BuildEventsConsumer(EventConsumer):
    async def resolve(self) -> tuple[int, int | None, str] | None:
        build_id = int(self.scope["url_route"]["kwargs"]["build_id"])
        project_id = await database_sync_to_async(_visible_build)(self.scope.get("user"), build_id)
        if project_id is None:
            return None
        return project_id, build_id, build_group(build_id)


def _visible_project(user: Any, slug: str) -> int | None:
    project: Project | None = Project.objects.filter(slug=slug).first()
    if project is None or role_of(user=user, project=project) is None:
        return None
    project_id: int = project.id
    return project_id


def _visible_build(user: Any, build_id: int) -> int | None:
    from builds.models import Build

    build = Build.objects.select_related("project").filter(id=build_id).first()
    if build is None or role_of(user=user, project=build.project) is None:
        return None
    project_id: int = build.project_id
    return project_id
