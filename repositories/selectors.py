"""Reads of repositories."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import reverse

from buildsite.errors import NotFound
from buildsite.models import Project

from .git import Remote
from .models import Repository


def repositories_of(*, project: Project) -> QuerySet[Repository]:
    return Repository.objects.filter(project=project).order_by("name")


def get_repository(*, project: Project, ref: int | str) -> Repository:
    """By id or by name, within a project the caller's role was checked in (callers get
    it from `get_project`)."""
    qs = Repository.objects.filter(project=project)
    # isdecimal, not isdigit: "²" is a digit that int() refuses (a 500, not a 404).
    by_id = isinstance(ref, int) or (str(ref).isdecimal() and len(str(ref)) <= 18)
    found: Repository | None = (
        qs.filter(id=int(ref)).first() if by_id else qs.filter(name=ref).first()
    )
    if found is None:
        raise NotFound(f"No repository '{ref}' in '{project.slug}'.")
    found.project = project
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
