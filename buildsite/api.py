"""The JSON API root: auth, error mapping, and every app's router."""

import json
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser

from .auth import BrowserSessionAuth, TokenAuth
from .errors import DomainError, InvalidInput, NotFound, Problem
from .models import slug_validator
from .roles import Role
from .selectors import get_project, projects_for
from .services import create_project

INT64 = range(-(2**63), 2**63)


def json_body_problems(data: Any) -> list[Problem]:
    """What no endpoint can take from a JSON body, each named by its field: a body that
    is not an object (every body here is one; ninja would otherwise read `[null]` or
    `123` as an empty object), text with a lone surrogate such as "\\ud800" or a NUL
    (valid JSON, but the databases refuse to store them: a 500), integers beyond 64 bits,
    and NaN or infinity."""
    if not isinstance(data, dict):
        return [Problem("The request body must be a JSON object.", where="body")]
    problems: list[Problem] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack and len(problems) < 20:
        where, value = stack.pop()
        problem: str | None = None
        if isinstance(value, str):
            problem = _text_problem(value)
        elif isinstance(value, bool):
            pass
        elif isinstance(value, int):
            if value not in INT64:
                problem = "Integers must fit in 64 bits."
        elif isinstance(value, float):
            if not math.isfinite(value):
                problem = "Numbers must be finite."
        elif isinstance(value, dict):
            for key, item in value.items():
                if key_problem := _text_problem(key, what="A key"):
                    problem = key_problem
                else:
                    stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            stack.extend((f"{where}.{i}" if where else str(i), v) for i, v in enumerate(value))
        if problem:
            problems.append(Problem(problem, where=where or "body"))
    return sorted(problems, key=lambda p: p.where or "")


def _text_problem(value: str, what: str = "Text") -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} with a lone surrogate (such as \\ud800) is not valid Unicode."
    if "\x00" in value:
        return f"{what} with a NUL character (\\u0000) cannot be stored."
    return None


class CheckedJSONParser(Parser):
    """ninja's JSON parser plus `json_body_problems`. ninja turns a parser's exception
    into a 400 with the original as its cause; `http_error` below answers with ours."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = json.loads(request.body)
        if problems := json_body_problems(data):
            raise InvalidInput(problems)
        result: dict[str, Any] = data
        return result


SLUG_PATTERN = slug_validator.regex.pattern
ERROR_RESPONSES = {
    400: "The request cannot be read.",
    401: "No valid token and no logged-in session.",
    403: "Signed in, but the role (or the token's scope) does not allow this.",
    404: "No such object, or the caller has no role in its project.",
    409: "The object's state does not allow this now.",
    413: "The request body is too large.",
    422: "The input is invalid: `detail` lists each problem with `msg`, `loc` and `line`.",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object"}},
            ]
        }
    },
}


def path_patterns() -> list[tuple[str, str, str]]:
    """(path fragment, parameter, pattern) of the names the API's paths take: the same
    rules that decide which names can exist (an unknown name is a 404 either way)."""
    from builds.definition import NAME_PATTERN as TASK_NAME
    from builds.services import NAME_RE as PIPELINE_NAME
    from prompts.refs import LABEL_PATTERN
    from prompts.refs import NAME_PATTERN as PROMPT_NAME
    from vault.rules import NAME_PATTERN as SECRET_NAME

    return [
        ("{slug}", "slug", SLUG_PATTERN),
        ("/pipelines/{name}", "name", PIPELINE_NAME),
        ("/tasks/{name}", "name", TASK_NAME),
        ("/artifacts/{task}", "task", TASK_NAME),
        ("/prompts/{name}", "name", f"^{PROMPT_NAME}$"),
        ("/labels/{label}", "label", f"^{LABEL_PATTERN}$"),
        ("/secrets/{name}", "name", SECRET_NAME),
        ("/datasets/{name}", "name", f"^{PROMPT_NAME}$"),
    ]


class BuildsiteAPI(NinjaAPI):
    """The schema declares the error responses every operation can give (the exception
    handlers below produce them) and the patterns of the names in its paths, so clients
    and schema checks know both."""

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(**kwargs)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        patterns = path_patterns()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_RESPONSES.items():
                    responses.setdefault(status, {"description": description, "content": error})
                for parameter in operation.get("parameters", []):
                    for fragment, name, pattern in patterns:
                        if (parameter["in"], parameter["name"]) == ("path", name) and (
                            fragment in path
                        ):
                            parameter["schema"]["pattern"] = pattern
        return schema


api = BuildsiteAPI(
    title="Buildsite API",
    version="1",
    description="Pipelines, builds, documentation and prompts. Authenticate with "
    "`Authorization: Bearer <token>` (see `manage.py create_token`) or a browser session.",
    auth=[TokenAuth(), BrowserSessionAuth()],
    docs_url="/docs",
    urls_namespace="api",
    parser=CheckedJSONParser(),
)


@api.exception_handler(DomainError)
def domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return api.create_response(request, exc.payload(), status=exc.status)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, DomainError):  # CheckedJSONParser refused the body
        return domain_error(request, exc.__cause__)
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)


@api.exception_handler(RequestDataTooBig)
def body_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return api.create_response(
        request, {"detail": f"The request body is over the limit of {limit} bytes."}, status=413
    )


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
    response = api.create_response(
        request, {"detail": "Authentication required: send a Bearer token or log in."}, status=401
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


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
    public_badges: bool = False


class ProjectPatch(Schema):
    public_badges: bool


@projects_router.post("", response={201: ProjectOut})
def create_project_endpoint(request: HttpRequest, body: ProjectIn) -> Status[dict[str, Any]]:
    project = create_project(
        actor=request.user, creator=request.user, slug=body.slug, name=body.name
    )
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
        "public_badges": bool((project.settings or {}).get("public_badges")),
    }


@projects_router.patch("/{slug}", response=ProjectOut)
def update_project(request: HttpRequest, slug: str, body: ProjectPatch) -> dict[str, Any]:
    from .services import set_public_badges

    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    set_public_badges(actor=request.user, project=project, public=body.public_badges)
    return project_detail(request, slug)


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


@projects_router.delete("/{slug}/members/{username}", response={204: None})
def remove_member(request: HttpRequest, slug: str, username: str) -> Status[None]:
    from .models import Membership
    from .services import remove_membership

    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    membership = (
        Membership.objects.select_related("project", "user")
        .filter(project=project, user__username=username)
        .first()
    )
    if membership is None:
        raise NotFound(f"'{username}' is not a member of '{slug}'.")
    remove_membership(actor=request.user, membership=membership)
    return Status(204, None)


api.add_router("/projects", projects_router)


def _mount_app_routers() -> None:
    from builds.api import builds_router, project_builds_router

    api.add_router("/projects", project_builds_router)
    api.add_router("/builds", builds_router)
    from repositories.api import hooks_router

    api.add_router("/hooks", hooks_router)
    for module in (
        "docs_engine.api",
        "prompts.api",
        "repositories.api",
        "vault.api",
        "schedules.api",
        "evals.api",
        "notifications.api",
        "audit.api",
    ):
        import importlib

        mod = importlib.import_module(module)
        router = getattr(mod, "router", None)
        if router is not None:
            api.add_router(getattr(mod, "PREFIX", "/projects"), router)


_mount_app_routers()
