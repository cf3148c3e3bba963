"""Writes of project secrets: set (create or replace) and delete, maintainers only.

A value is encrypted before it is stored and never logged; the audit log records who
set or deleted which name."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import record_action
from buildsite.crypto import encrypt
from buildsite.errors import Conflict, InvalidInput, NotFound, Problem
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role

from .models import Secret
from .rules import name_problem, value_problem

audit = logging.getLogger("buildsite.audit")


def _actor(user: Any) -> Any:
    return user if user is not None and user.is_authenticated else None


def set_secret(*, user: Any, project: Project, name: str, value: str, actor: Any = None) -> Secret:
    """Create the secret or give it a new value; each set bumps its version. user=None
    is the server (the admin passes who acts as `actor`)."""
    if user is not None:
        require_role(user=user, project=project, role=Role.MAINTAINER)
    problems = []
    if message := name_problem(name):
        problems.append(Problem(message, where="name"))
    if not isinstance(value, str):
        problems.append(Problem("a secret value is text", where="value"))
    elif message := value_problem(value):
        problems.append(Problem(message, where="value"))
    if problems:
        raise InvalidInput(problems)
    who = _actor(user) or _actor(actor)
    token = encrypt(value)
    try:
        with transaction.atomic():
            secret: Secret | None = (
                Secret.objects.select_for_update().filter(project=project, name=name).first()
            )
            if secret is None:
                secret = Secret(project=project, name=name, version=1)
            else:
                secret.version += 1
            secret.value_encrypted = token
            secret.set_by = who
            secret.set_at = timezone.now()
            secret.save()
            # The name and version only: never the value.
            record_action(
                actor=who,
                project=project,
                action="secret.set",
                target=f"secret {name}",
                detail=f"version {secret.version}",
            )
    except IntegrityError as exc:  # created by someone else at the same moment
        raise Conflict(f"Secret '{name}' was set by someone else just now; set it again.") from exc
    audit.info(
        "%s set secret %s (version %s) in '%s'",
        getattr(who, "username", "(server)"),
        name,
        secret.version,
        project.slug,
    )
    return secret


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def delete_secret(*, user: Any, project: Project, name: str, actor: Any = None) -> None:
    if user is not None:
        require_role(user=user, project=project, role=Role.MAINTAINER)
    deleted, _ = Secret.objects.filter(project=project, name=name).delete()
    if not deleted:
        raise NotFound(f"No secret '{name}' in '{project.slug}'.")
    who = _actor(user) or _actor(actor)
    record_action(actor=who, project=project, action="secret.delete", target=f"secret {name}")
    audit.info(
        "%s deleted secret %s in '%s'", getattr(who, "username", "(server)"), name, project.slug
    )
