"""Writes for projects, memberships and API tokens."""

import logging
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit.services import record_action

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
    record_action(
        actor=actor,
        project=project,
        action="project.create",
        target=f"project {slug}",
        detail=f"maintainer {creator.get_username()}",
    )
    return project


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def set_public_badges(*, actor: Any, project: Project, public: bool) -> Project:
    """Whether anyone, signed in or not, may fetch the project's pipeline badges (the
    state of each pipeline's latest build, nothing else)."""
    if actor is not None:
        require_role(user=actor, project=project, role=Role.MAINTAINER)
    project.settings = {**(project.settings or {}), "public_badges": bool(public)}
    Project.objects.filter(id=project.id).update(settings=project.settings)
    record_action(
        actor=actor,
        project=project,
        action="project.update",
        target=f"project {project.slug}",
        detail=f"public badges {'on' if public else 'off'}",
    )
    return project


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def set_membership(
    *, actor: Any, project: Project, username: str, role: str, in_admin: bool = False
) -> Membership:
    """Add a member or change a member's role (maintainers only; `in_admin`: a staff
    user in the admin, whose permissions the admin checked)."""
    if actor is not None and not in_admin:
        require_role(user=actor, project=project, role=Role.MAINTAINER)
    if role not in Role.values:
        raise InvalidInput([Problem(f"Unknown role '{role}'.", where="role")])
    user = get_user_model().objects.filter(username=username).first()
    if user is None or not user.is_active:
        raise NotFound(_cannot_add(actor=actor, username=username, exists=user is not None))
    old_role = (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )
    membership: Membership
    membership, created = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    was = " (added)" if old_role is None else "" if old_role == role else f" (was {old_role})"
    record_action(
        actor=actor,
        project=project,
        action="member.set",
        target=f"member {user.username}",
        detail=f"role {role}{was}",
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


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def remove_membership(*, actor: Any, membership: Membership, in_admin: bool = False) -> None:
    """Take a member out of a project (maintainers only; `in_admin` as above)."""
    project = membership.project
    if actor is not None and not in_admin:
        require_role(user=actor, project=project, role=Role.MAINTAINER)
    membership.delete()
    record_action(
        actor=actor,
        project=project,
        action="member.remove",
        target=f"member {membership.user.username}",
        detail=f"was {membership.role}",
    )


def _cannot_add(*, actor: Any, username: str, exists: bool) -> str:
    """Why `username` cannot be added. A maintainer who is not staff gets one answer for
    unknown and deactivated accounts, so the endpoint does not tell them apart; adding
    an active user necessarily shows that it exists (docs/security.md, "Usernames")."""
    if actor is not None and not (actor.is_staff or actor.is_superuser):
        return f"No active user '{username}' to add."
    return f"User '{username}' is deactivated." if exists else f"No user '{username}'."


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def create_token(
    *, user: Any, project: Project | None = None, name: str = "", scopes: list[str] | None = None
) -> tuple[ApiToken, str]:
    """Returns the token row and its clear text, which is never stored. With `scopes`
    (e.g. ["metrics"]) the token is good for those only, not for the API."""
    scopes = sorted(set(scopes or []))
    if unknown := [s for s in scopes if s not in ApiToken.SCOPES]:
        raise InvalidInput(
            [Problem(f"Unknown scope '{unknown[0]}'; use one of: {', '.join(ApiToken.SCOPES)}.")]
        )
    if scopes and project is not None:
        # Scopes name server-wide reads (metrics); a project would limit nothing.
        raise InvalidInput([Problem("A token with scopes cannot be limited to a project.")])
    if project is not None:
        require_role(user=user, project=project, role=Role.VIEWER)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        project=project,
        name=name,
        prefix=raw[:10],
        digest=ApiToken.digest_of(raw),
        scopes=scopes,
    )
    # `user` is both the owner and, by this module's convention, who asks.
    record_action(
        actor=user,
        project=project,
        action="token.create",
        target=_token_target(token),
        detail=_token_detail(token),
    )
    return token, raw


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def revoke_token(*, actor: Any, token: ApiToken) -> None:
    """Delete the token (it stops working at once) and record who did it. `actor` is
    whoever revokes it (the admin passes the staff user); None for the server."""
    record_action(
        actor=actor,
        project=token.project,
        action="token.revoke",
        target=_token_target(token),
        detail=_token_detail(token),
    )
    token.delete()


def _token_target(token: ApiToken) -> str:
    # The prefix is the public part shown in the admin; the rest is never stored.
    return f"token {token.prefix}…"


def _token_detail(token: ApiToken) -> str:
    owner = token.user.get_username() if token.user_id else "?"
    return f"of {owner}" + (f", name '{token.name}'" if token.name else "")
