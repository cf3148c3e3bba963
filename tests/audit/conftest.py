"""A project with a maintainer (alice), an editor (bob), a viewer (vic), an outsider
(olga) and a staff admin, each calling the API with a real token whose prefix the
audit log should name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from buildsite.roles import Role
from buildsite.services import create_token
from tests.factories import add_member, make_pipeline

PIPELINE = """\
name: main
params: {version: "1.0"}
tasks:
  a:
    steps: [{run: "true"}]
  b:
    needs: [a]
    steps: [{run: "true"}]
"""
BASE = "/api/projects/acme"


@dataclass
class Caller:
    user: Any
    client: Client
    prefix: str = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        url = path if path.startswith("/api/") else f"{BASE}{path}"
        send = getattr(self.client, method.lower())
        if body is None:
            return send(url)
        return send(url, json.dumps(body), content_type="application/json")

    @property
    def actor_name(self) -> str:
        return f"{self.user.username} (token {self.prefix}…)"


@dataclass
class World:
    project: Any
    alice: Caller
    bob: Caller
    vic: Caller
    olga: Caller
    admin: Any
    root: Caller
    extra: dict[str, Any] = field(default_factory=dict)


def make_user(username: str, **extra: Any) -> Any:
    # No password: these users call with tokens (or force_login), and hashing one
    # costs a noticeable part of a second per user.
    return get_user_model().objects.create_user(username=username, password=None, **extra)


def caller(user, project=None) -> Caller:
    token, raw = create_token(user=user, project=project)
    return Caller(user, Client(HTTP_AUTHORIZATION=f"Bearer {raw}"), token.prefix)


@pytest.fixture
def world(user, project, settings) -> World:
    # Repositories on 127.0.0.1 (never fetched here: jobs run only on commit).
    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}
    bob, vic, olga = make_user("bob"), make_user("vic"), make_user("olga")
    add_member(project, bob, Role.EDITOR)
    add_member(project, vic, Role.VIEWER)
    make_pipeline(project, PIPELINE)
    admin = make_user("root", is_staff=True, is_superuser=True)
    return World(
        project=project,
        alice=caller(user),
        bob=caller(bob),
        vic=caller(vic),
        olga=caller(olga),
        admin=admin,
        root=caller(admin),
    )
