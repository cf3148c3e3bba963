"""Project secrets API under /api/projects/{slug}/secrets: values go in, never out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status

from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors, services
from .models import Secret

PREFIX = "/projects"
router = Router(tags=["secrets"])


class SecretIn(Schema):
    value: str


class SecretOut(Schema):
    name: str
    version: int
    set_by: str | None
    set_at: datetime


def secret_out(secret: Secret) -> dict[str, Any]:
    return {
        "name": secret.name,
        "version": secret.version,
        "set_by": secret.set_by.username if secret.set_by else None,
        "set_at": secret.set_at,
    }


@router.put("/{slug}/secrets/{name}", response=SecretOut)
def set_secret(request: HttpRequest, slug: str, name: str, body: SecretIn) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    secret = services.set_secret(user=request.user, project=project, name=name, value=body.value)
    return secret_out(secret)


@router.get("/{slug}/secrets", response=list[SecretOut])
def list_secrets(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    return [secret_out(s) for s in selectors.secrets_of(user=request.user, project=project)]


@router.delete("/{slug}/secrets/{name}", response={204: None})
def delete_secret(request: HttpRequest, slug: str, name: str) -> Status[None]:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    services.delete_secret(user=request.user, project=project, name=name)
    return Status(204, None)
