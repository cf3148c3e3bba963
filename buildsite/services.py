"""Writes for projects, memberships and API tokens."""

import logging
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from .errors import Conflict, InvalidInput, NotFound, Problem
from .models import ApiToken, Membership, Project, slug_validator
from .roles import Role
from .selectors import require_project_creator, require_role

TOKEN_PREFIX = "bst_"
audit = logging.getLogger("buildsite.audit")


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def create_project(*, creator: Any, slug: str, name: str, actor: Any = None) -> Project:
    """`creator` becomes the project's maintainer. `actor` is who asks (checked by
    `require_project_creator`); None for the server itself (commands, seeds, tests)."""
    if actor is not None:
        require_project_creator(user=actor)
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
def set_public_badges(*, actor: Any, project: Project, public: bool) -> Project:
    """Whether anyone, signed in or not, may fetch the project's pipeline badges (the
    state of each pipeline's latest build, nothing else)."""
    if actor is not None:
        require_role(user=actor, project=project, role=Role.MAINTAINER)
    project.settings = {**(project.settings or {}), "public_badges": bool(public)}
    Project.objects.filter(id=project.id).update(settings=project.settings)
    return project


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def set_membership(*, actor: Any, project: Project, username: str, role: str) -> Membership:
    """Add a member or change a member's role (maintainers only)."""
    if actor is not None:
        require_role(user=actor, project=project, role=Role.MAINTAINER)
    if role not in Role.values:
        raise InvalidInput([Problem(f"Unknown role '{role}'.", where="role")])
    user = get_user_model().objects.filter(username=username).first()
    if user is None or not user.is_active:
        raise NotFound(_cannot_add(actor=actor, username=username, exists=user is not None))
    membership: Membership
    membership, created = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    audit.info(
        "%s %s '%s' as %s in '%s'",
        getattr(actor, "username", "(server)"),
        "added" if created else "set",
        user.username,
        role,
        project.slug,
    )
    return membership


def _cannot_add(*, actor: Any, username: str, exists: bool) -> str:
    """Why `username` cannot be added. A maintainer who is not staff gets one answer for
    unknown and deactivated accounts, so the endpoint does not tell them apart; adding
    an active user necessarily shows that it exists (docs/security.md, "Usernames")."""
    if actor is not None and not (actor.is_staff or actor.is_superuser):
        return f"No active user '{username}' to add."
    return f"User '{username}' is deactivated." if exists else f"No user '{username}'."


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
