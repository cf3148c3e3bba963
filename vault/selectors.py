"""Reads of project secrets. Only `secret_values` and `secret_value` decrypt, for the
worker running a build step and for a provider call; nothing that answers a person
returns a value."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from buildsite.crypto import SecretUnreadable, decrypt
from buildsite.errors import NotFound
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from tasks import rawsql

from .models import Secret


def secrets_of(*, user: Any, project: Project) -> QuerySet[Secret]:
    """The project's secrets without their values, by name (editors and maintainers:
    editors write the pipelines that declare them). user=None is the server."""
    if user is not None:
        require_role(user=user, project=project, role=Role.EDITOR)
    return (
        Secret.objects.filter(project=project)
        .select_related("set_by")
        .defer("value_encrypted")
        .order_by("name")
    )


def secret_values(*, project_id: int) -> dict[str, str | None]:
    """Every secret of a project by name, decrypted; None for a value that cannot be
    decrypted any more (the encryption key changed). One query: a build attempt reads
    them once, to give the declared ones to its steps and to mask all of them."""
    values: dict[str, str | None] = {}
    # Plain SQL: every attempt of every task runs this, most often for a project with no
    # secrets, and compiling the ORM query cost more than the step `true` (a third of
    # the per-step overhead outside the step itself in bench/scheduler.py's profile).
    sql = f"SELECT name, value_encrypted FROM {rawsql.table(Secret)} WHERE project_id = %s"
    for name, token in rawsql.fetch(sql, [project_id]):
        try:
            values[name] = decrypt(token)
        except SecretUnreadable:
            values[name] = None
    return values


def secret_versions(*, project_id: int) -> dict[str, tuple[int, int]]:
    """(id, version) of each secret of a project by name: what a cache key may know of
    a value. The id tells a secret deleted and set again from the first one."""
    rows = Secret.objects.filter(project_id=project_id).values_list("name", "id", "version")
    return {name: (secret_id, version) for name, secret_id, version in rows}


def secret_value(*, project: Project, name: str) -> str:
    """One secret's value, for the server's own use (a provider's API key). Raises
    NotFound, or SecretUnreadable when it cannot be decrypted."""
    token = (
        Secret.objects.filter(project=project, name=name)
        .values_list("value_encrypted", flat=True)
        .first()
    )
    if token is None:
        raise NotFound(f"No secret '{name}' in '{project.slug}'.")
    return decrypt(token)


def has_secret(*, project: Project, name: str) -> bool:
    return bool(Secret.objects.filter(project=project, name=name).exists())
