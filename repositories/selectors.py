"""Reads of repositories."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse

from buildsite.errors import NotFound
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role

from .git import Remote
from .models import Repository


def repositories_of(*, project: Project) -> QuerySet[Repository]:
    return Repository.objects.filter(project=project).order_by("name")


def get_repository(
    *, user: Any, project: Project, ref: int | str, role: Role = Role.VIEWER
) -> Repository:
    """By id or by name, within the project."""
    require_role(user=user, project=project, role=role)
    qs = Repository.objects.select_related("project").filter(project=project)
    # isdecimal, not isdigit: "²" is a digit that int() refuses (a 500, not a 404).
    by_id = isinstance(ref, int) or (str(ref).isdecimal() and len(str(ref)) <= 18)
    found: Repository | None = (
        qs.filter(id=int(ref)).first() if by_id else qs.filter(name=ref).first()
    )
    if found is None:
        raise NotFound(f"No repository '{ref}' in '{project.slug}'.")
    return found


def webhook_path(repository: Repository) -> str:
    return str(reverse("api:receive_webhook", kwargs={"repository_id": repository.id}))


def remote_of(repository: Repository) -> Remote:
    """Where to fetch it, with the credential its project secret holds."""
    credential = ""
    if repository.credentials_secret:
        from vault.selectors import secret_value

        try:
            credential = secret_value(
                project=repository.project, name=repository.credentials_secret
            )
        except NotFound:
            raise NotFound(
                f"the repository's credentials secret {repository.credentials_secret} "
                "is not set in the project"
            ) from None
    return Remote(url=repository.url, credential=credential)
