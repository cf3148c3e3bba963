from typing import Any

from django.http import HttpRequest

from .selectors import projects_for


def sandbox(request: HttpRequest) -> dict[str, Any]:
    """Every page says so when shell steps run unsandboxed on this host."""
    from builds.steps.sandbox import mode, problem

    current = mode()
    if current == "bwrap":
        return {}
    if current == "off":
        return {"sandbox_warning": "Shell steps are not sandboxed (BUILDSITE_SANDBOX=off)."}
    return {"sandbox_warning": f"Shell steps are not sandboxed: {problem()}."}


def projects(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_projects": []}
    return {"nav_projects": projects_for(user=user)}
