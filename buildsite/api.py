"""The JSON API root: auth, error mapping, and every app's router."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError

from .auth import api_auth
from .errors import DomainError
from .selectors import get_project, projects_for
from .services import create_project

api = NinjaAPI(
    title="Buildsite API",
    version="1",
    description="Pipelines, builds, documentation and prompts. Authenticate with "
    "`Authorization: Bearer <token>` (see `manage.py create_token`) or a browser session.",
    auth=api_auth,
    docs_url="/docs",
    urls_namespace="api",
)


@api.exception_handler(DomainError)
def domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return api.create_response(request, exc.payload(), status=exc.status)


@api.exception_handler(NinjaValidationError)
def request_validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    detail = [
        {
            "msg": e.get("msg", "invalid"),
            "loc": ".".join(str(p) for p in e.get("loc", []) if p != "body"),
        }
        for e in exc.errors
    ]
    return api.create_response(request, {"detail": detail}, status=422)


@api.exception_handler(AuthenticationError)
def auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request, {"detail": "Authentication required: send a Bearer token or log in."}, status=401
    )


class HealthOut(Schema):
    status: str


@api.get("/health", auth=None, response=HealthOut, tags=["meta"])
def health(request: HttpRequest) -> dict[str, str]:
    return {"status": "ok"}


projects_router = Router(tags=["projects"])


class ProjectIn(Schema):
    slug: str
    name: str


class ProjectOut(Schema):
    slug: str
    name: str
    role: str | None = None


@projects_router.post("", response={201: ProjectOut})
def create_project_endpoint(request: HttpRequest, body: ProjectIn) -> Status[dict[str, Any]]:
    project = create_project(creator=request.user, slug=body.slug, name=body.name)
    return Status(201, {"slug": project.slug, "name": project.name, "role": "maintainer"})


@projects_router.get("", response=list[ProjectOut])
def list_projects(request: HttpRequest) -> list[dict[str, Any]]:
    from .selectors import role_of

    return [
        {"slug": p.slug, "name": p.name, "role": role_of(user=request.user, project=p)}
        for p in projects_for(user=request.user)
    ]


@projects_router.get("/{slug}", response=ProjectOut)
def project_detail(request: HttpRequest, slug: str) -> dict[str, Any]:
    from .selectors import role_of

    project = get_project(user=request.user, slug=slug)
    return {
        "slug": project.slug,
        "name": project.name,
        "role": role_of(user=request.user, project=project),
    }


class MemberIn(Schema):
    username: str
    role: str


@projects_router.put("/{slug}/members", response=MemberIn)
def set_member(request: HttpRequest, slug: str, body: MemberIn) -> dict[str, Any]:
    from .services import set_membership

    project = get_project(user=request.user, slug=slug)
    membership = set_membership(
        actor=request.user, project=project, username=body.username, role=body.role
    )
    return {"username": membership.user.username, "role": membership.role}


api.add_router("/projects", projects_router)


def _mount_app_routers() -> None:
    from builds.api import builds_router, project_builds_router

    api.add_router("/projects", project_builds_router)
    api.add_router("/builds", builds_router)
    for module in ("docs_engine.api", "prompts.api"):
        import importlib

        mod = importlib.import_module(module)
        router = getattr(mod, "router", None)
        if router is not None:
            api.add_router(getattr(mod, "PREFIX", "/projects"), router)


_mount_app_routers()
