"""Writes for projects, memberships and API tokens."""

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from .errors import Conflict, InvalidInput, NotFound, Problem
from .models import ApiToken, Membership, Project, slug_validator
from .roles import Role
from .selectors import require_role

TOKEN_PREFIX = "bst_"


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def create_project(*, creator: Any, slug: str, name: str) -> Project:
    try:
        slug_validator(slug)
    except ValidationError as exc:
        raise InvalidInput([Problem(exc.messages[0], where="slug")]) from exc
    if not name.strip():
        raise InvalidInput([Problem("A project needs a name.", where="name")])
    if Project.objects.filter(slug=slug).exists():
        raise Conflict(f"A project with slug '{slug}' already exists.")
    try:
        with transaction.atomic():
            project: Project = Project.objects.create(slug=slug, name=name.strip())
    except IntegrityError as exc:
        raise Conflict(f"A project with slug '{slug}' already exists.") from exc
    Membership.objects.create(project=project, user=creator, role=Role.MAINTAINER)
    return project


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def set_membership(*, actor: Any, project: Project, username: str, role: str) -> Membership:
    """Add a member or change a member's role (maintainers only)."""
    if actor is not None:
        require_role(user=actor, project=project, role=Role.MAINTAINER)
    if role not in Role.values:
        raise InvalidInput([Problem(f"Unknown role '{role}'.", where="role")])
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"No user '{username}'.")
    membership: Membership
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def create_token(
    *, user: Any, project: Project | None = None, name: str = ""
) -> tuple[ApiToken, str]:
    """Returns the token row and its clear text, which is never stored."""
    if project is not None:
        require_role(user=user, project=project, role=Role.VIEWER)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, project=project, name=name, prefix=raw[:10], digest=ApiToken.digest_of(raw)
    )
    return token, raw
