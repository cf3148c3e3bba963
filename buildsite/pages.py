"""What every HTML page of a project shares: login, domain errors as 404/403 pages, and
the caller's role in the page context."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from .errors import DomainError, Forbidden, InvalidInput, NotFound
from .models import Project
from .roles import Role
from .selectors import role_of

View = Callable[..., HttpResponse]


def page(view: View) -> View:
    """Login required; a project the user may not see is a 404 (so private projects do
    not leak), too low a role a 403."""

    @login_required  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from None
        except Forbidden as exc:
            raise PermissionDenied(exc.message) from None

    return wrapper  # type: ignore[no-any-return]  # login_required(...) is Any to mypy


def problem_messages(exc: DomainError) -> list[str]:
    """A refused form's problems, one line each, for the page that shows the form again."""
    if isinstance(exc, InvalidInput):
        return [str(p) for p in exc.problems]
    return [exc.message]


def can_edit(role: Role | None) -> bool:
    return role is not None and role.allows(Role.EDITOR)


def can_manage(role: Role | None) -> bool:
    return role is not None and role.allows(Role.MAINTAINER)


def project_context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    """The project, the caller's role in it, and what that role may do."""
    role = role_of(user=request.user, project=project)
    return {
        "project": project,
        "role": role,
        "can_edit": can_edit(role),
        "can_manage": can_manage(role),
        **extra,
    }
