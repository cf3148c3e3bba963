"""Repositories API and the push webhook: parse input, call a service, shape output."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status

from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors, services, webhooks
from .models import Repository

router = Router(tags=["repositories"])
hooks_router = Router(tags=["repositories"])


class RepositoryIn(Schema):
    name: str
    url: str
    branch: str = "main"
    pipeline_path: str = ".buildsite.yml"
    branches: list[str] = []
    credentials_secret: str = ""
    status_forge: str = ""
    status_api_url: str = ""
    status_token_secret: str = ""


class RepositoryOut(Schema):
    id: int
    name: str
    url: str
    branch: str
    pipeline_path: str
    branches: list[str]
    credentials_secret: str
    status_forge: str
    status_api_url: str
    status_token_secret: str
    webhook_url: str


class RepositoryCreated(RepositoryOut):
    webhook_secret: str  # shown once, here and on rotation


class SecretOut(Schema):
    webhook_secret: str


class HookOut(Schema):
    build: int | None
    reason: str = ""


class HookError(Schema):
    detail: str


def repository_out(request: HttpRequest, repository: Repository) -> dict[str, Any]:
    return {
        "id": repository.id,
        "name": repository.name,
        "url": repository.url,
        "branch": repository.branch,
        "pipeline_path": repository.pipeline_path,
        "branches": repository.branches,
        "credentials_secret": repository.credentials_secret,
        "status_forge": repository.status_forge,
        "status_api_url": repository.status_api_url,
        "status_token_secret": repository.status_token_secret,
        "webhook_url": request.build_absolute_uri(selectors.webhook_path(repository)),
    }


@router.post("/{slug}/repositories", response={201: RepositoryCreated})
def create_repository(
    request: HttpRequest, slug: str, body: RepositoryIn
) -> Status[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    repository, secret = services.create_repository(
        user=request.user, project=project, **body.dict()
    )
    return Status(201, {**repository_out(request, repository), "webhook_secret": secret})


@router.get("/{slug}/repositories", response=list[RepositoryOut])
def list_repositories(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug)
    return [repository_out(request, r) for r in selectors.repositories_of(project=project)]


@router.get("/{slug}/repositories/{repository_id}", response=RepositoryOut)
def get_repository(request: HttpRequest, slug: str, repository_id: int) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug)
    repository = selectors.get_repository(project=project, ref=repository_id)
    return repository_out(request, repository)


@router.post("/{slug}/repositories/{repository_id}/webhook-secret", response=SecretOut)
def rotate_webhook_secret(request: HttpRequest, slug: str, repository_id: int) -> dict[str, str]:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    repository = selectors.get_repository(project=project, ref=repository_id)
    return {
        "webhook_secret": services.rotate_webhook_secret(user=request.user, repository=repository)
    }


@router.delete("/{slug}/repositories/{repository_id}", response={204: None})
def delete_repository(request: HttpRequest, slug: str, repository_id: int) -> Status[None]:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    repository = selectors.get_repository(project=project, ref=repository_id)
    services.delete_repository(user=request.user, repository=repository)
    return Status(204, None)


@hooks_router.post(
    "/{repository_id}",
    auth=None,
    url_name="receive_webhook",
    response={202: HookOut, 400: HookError, 401: HookError, 404: HookError, 413: HookError},
)
def receive_webhook(request: HttpRequest, repository_id: int) -> Status[dict[str, Any]]:
    """A forge's push webhook: signed with the repository's webhook secret."""
    try:
        build, reason = services.receive_webhook(
            repository_id=repository_id, headers=request.headers, body=request.body
        )
    except webhooks.BadSignature as exc:
        return Status(401, {"detail": str(exc)})
    except webhooks.BadPayload as exc:
        return Status(400, {"detail": str(exc)})
    return Status(202, {"build": build.id if build else None, "reason": reason})
