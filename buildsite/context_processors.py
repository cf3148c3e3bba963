from typing import Any

from django.http import HttpRequest

from .selectors import projects_for


def projects(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_projects": []}
    return {"nav_projects": projects_for(user=user)}
