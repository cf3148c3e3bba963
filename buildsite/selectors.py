"""Reads for projects and roles; `require_role` is the one place access is decided."""

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .errors import Forbidden, NotFound
from .models import ApiToken, Membership, Project
from .roles import Role


def role_of(*, user: Any, project: Project) -> Role | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    scope = getattr(user, "token_project_id", None)
    if scope is not None and scope != project.id:
        return None
    if user.is_superuser:
        return Role.MAINTAINER
    role = (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )
    return Role(role) if role else None


def require_role(*, user: Any, project: Project, role: Role) -> Role:
    """Raises NotFound for outsiders (so private projects do not leak) and Forbidden
    for members whose role is too low."""
    actual = role_of(user=user, project=project)
    if actual is None:
        raise NotFound(f"No project '{project.slug}'.")
    if not actual.allows(role):
        raise Forbidden(
            f"This needs the {role.value} role in '{project.slug}'; you are {actual.value}."
        )
    return actual


def require_project_creator(*, user: Any) -> None:
    """Raises Forbidden unless `user` may create projects: never through a token scoped
    to one project; staff and superusers only under BUILDSITE_PROJECT_CREATORS=staff
    (the default), any active user under `all`."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise Forbidden("Log in or send a Bearer token to create projects.")
    if getattr(user, "token_project_id", None) is not None:
        raise Forbidden(
            "This API token is scoped to one project and cannot create projects; "
            "use an unscoped token (manage.py create_token without --project) or log in."
        )
    if settings.BUILDSITE_PROJECT_CREATORS == "all":
        return
    if not (user.is_staff or user.is_superuser):
        raise Forbidden(
            "Only staff can create projects on this server; ask an administrator "
            "(BUILDSITE_PROJECT_CREATORS=staff)."
        )


def get_project(*, user: Any, slug: str, role: Role = Role.VIEWER) -> Project:
    project: Project | None = Project.objects.filter(slug=slug).first()
    if project is None:
        raise NotFound(f"No project '{slug}'.")
    require_role(user=user, project=project, role=role)
    return project


def projects_for(*, user: Any) -> QuerySet[Project]:
    if user is None or not user.is_authenticated:
        return Project.objects.none()
    scope = getattr(user, "token_project_id", None)
    qs = (
        Project.objects.all()
        if user.is_superuser
        else Project.objects.filter(memberships__user=user)
    )
    if scope is not None:
        qs = qs.filter(id=scope)
    return qs.order_by("slug")


def user_for_token(raw: str, *, scope: str | None = None) -> Any:
    """The token's user (with `token_project_id` set when the token is scoped to a
    project), or None. Without `scope`, only API tokens (no scopes) count; with one,
    only tokens that have it, so a metrics token never reaches a project."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=ApiToken.digest_of(raw), user__is_active=True)
        .first()
    )
    if token is None:
        return None
    scopes = token.scopes or []
    if (scope is None and scopes) or (scope is not None and scope not in scopes):
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    user = token.user
    user.token_project_id = token.project_id
    user.token_prefix = token.prefix  # the audit log names the token that acted
    return user
