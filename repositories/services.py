"""Writes of repositories: registering one, its webhook secret, builds of a commit and
push webhooks."""

from __future__ import annotations

import fnmatch
import re
import secrets
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from audit.services import record_action
from builds.models import Build, Pipeline
from builds.services import NAME_RE, trigger_detail
from builds.signals import send_build_state_changed
from buildsite import crypto
from buildsite.errors import Conflict, InvalidInput, NotFound, Problem
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from prompts import netguard
from prompts.services import private_urls_allowed
from tasks.models import Event
from tasks.services import record_event
from tasks.states import BuildState
from vault.rules import name_problem as secret_name_problem

from . import webhooks
from .git import SHA_RE, is_ssh
from .jobs import enqueue_preparation
from .models import Delivery, Repository

# `\Z`, not `$`: `$` also matches before a trailing newline.
REF_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/@+-]{1,255}\Z")
# The host (and port) of an ssh URL, as git and ssh read it: an allowlist, so that no
# other parser can see another host in the same text (`ssh://a.example#@10.0.0.1/`).
SSH_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?", re.ASCII)
FORGES = ("", "github", "gitlab", "gitea")


def url_problems(url: str) -> list[Problem]:
    """Which repository URLs the server fetches: http(s) and ssh, `file://` only when
    the operator allows local repositories; never credentials in the URL."""
    if (
        not url
        or len(url) > 500
        or url.startswith("-")
        or any(c.isspace() for c in url)
        or not url.isprintable()
    ):
        return [Problem("give the repository's clone URL (https://, http:// or ssh)", where="url")]
    if url.startswith("file://"):
        if not settings.BUILDSITE["ALLOW_LOCAL_REPOS"]:
            return [
                Problem(
                    "file:// repositories read the server's disk; the operator must set "
                    "BUILDSITE_ALLOW_LOCAL_REPOS=1",
                    where="url",
                )
            ]
        return []
    if is_ssh(url):
        return _ssh_problems(url)
    if not url.startswith(("https://", "http://")):
        return [Problem("use an https://, http:// or ssh URL", where="url")]
    if "@" in url.split("/", 3)[2]:
        return [
            Problem(
                "put credentials in a project secret (credentials_secret), not in the URL",
                where="url",
            )
        ]
    try:
        netguard.check_url(url, allow_private=private_urls_allowed(), where="url")
    except InvalidInput as exc:
        return list(exc.problems)
    return []


def _ssh_problems(url: str) -> list[Problem]:
    """An ssh URL's host gets the same address check as an http(s) one (private and
    cloud metadata addresses); a user may be given, a password may not."""
    if url.startswith("ssh://"):
        authority = url[len("ssh://") :].split("/", 1)[0]
    else:  # scp-like user@host:path
        authority = url.split(":", 1)[0]
    user, _, hostport = authority.rpartition("@")
    if ":" in user:
        return [
            Problem(
                "put credentials in a project secret (credentials_secret), not in the URL",
                where="url",
            )
        ]
    if not SSH_HOST_RE.fullmatch(hostport) or hostport.startswith("-"):
        return [Problem("the ssh URL does not name a valid host", where="url")]
    try:
        netguard.check(
            f"https://{hostport}/",
            allow_private=private_urls_allowed(),
            where="url",
        )
    except InvalidInput as exc:
        return list(exc.problems)
    return []


def _check(fields: dict[str, Any]) -> None:
    problems = []
    if not re.fullmatch(NAME_RE, fields["name"] or ""):
        problems.append(Problem("use lower-case letters, digits, _ and -", where="name"))
    problems += url_problems(fields["url"])
    if not REF_RE.match(fields["branch"] or ""):
        problems.append(Problem("not a branch name", where="branch"))
    path = fields["pipeline_path"] or ""
    if (
        not path
        or path.startswith("/")
        or ".." in path.split("/")
        or len(path) > 255
        or not path.isprintable()
    ):
        problems.append(Problem("a path inside the repository", where="pipeline_path"))
    branches = fields["branches"]
    if not isinstance(branches, list) or not all(
        isinstance(b, str) and 0 < len(b) <= 255 and b.isprintable() for b in branches
    ):
        problems.append(Problem("a list of branch names or patterns", where="branches"))
    for key in ("credentials_secret", "status_token_secret"):
        if fields[key] and (message := secret_name_problem(fields[key])):
            problems.append(Problem(message, where=key))
    if fields["status_forge"] not in FORGES:
        problems.append(Problem("one of github, gitlab, gitea (or empty)", where="status_forge"))
    elif fields["status_forge"] and not fields["status_token_secret"]:
        problems.append(
            Problem(
                "reporting commit statuses needs the secret holding the forge token",
                where="status_token_secret",
            )
        )
    if api := fields["status_api_url"]:
        if not api.isprintable():
            problems.append(Problem("an http(s) URL", where="status_api_url"))
        else:
            try:
                netguard.check_url(
                    api,
                    allow_private=private_urls_allowed(),
                    where="status_api_url",
                )
            except InvalidInput as exc:
                problems += exc.problems
    if problems:
        raise InvalidInput(problems)


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def create_repository(
    *,
    user: Any,
    project: Project,
    name: str,
    url: str,
    branch: str = "main",
    pipeline_path: str = ".buildsite.yml",
    branches: list[str] | None = None,
    credentials_secret: str = "",
    status_forge: str = "",
    status_api_url: str = "",
    status_token_secret: str = "",
) -> tuple[Repository, str]:
    """The repository and its webhook secret (in clear: shown to the caller once)."""
    if user is not None:
        require_role(user=user, project=project, role=Role.MAINTAINER)
    fields = {
        "name": name,
        "url": url.strip(),
        "branch": branch,
        "pipeline_path": pipeline_path,
        "branches": branches or [],
        "credentials_secret": credentials_secret,
        "status_forge": status_forge,
        "status_api_url": status_api_url.rstrip("/"),
        "status_token_secret": status_token_secret,
    }
    _check(fields)
    # Its builds are the builds of a pipeline of the same name, whose versions are
    # the texts read from the repository.
    pipeline, created = Pipeline.objects.get_or_create(project=project, name=name)
    if not created and (pipeline.versions.exists() or pipeline.builds.exists()):
        raise Conflict(f"the project already has a pipeline named '{name}'; choose another name")
    secret = secrets.token_hex(32)
    try:
        with transaction.atomic():
            repository: Repository = Repository.objects.create(
                project=project,
                webhook_secret_encrypted=crypto.encrypt(secret),
                created_by=user if user is not None and user.is_authenticated else None,
                **fields,
            )
    except IntegrityError:
        raise Conflict(f"the project already has a repository named '{name}'") from None
    record_action(
        actor=user,
        project=project,
        action="repository.create",
        target=f"repository {name}",
        detail=f"{fields['url']} ({branch})",  # _check refused credentials in the URL
    )
    return repository, secret


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def rotate_webhook_secret(*, user: Any, repository: Repository) -> str:
    if user is not None:
        require_role(user=user, project=repository.project, role=Role.MAINTAINER)
    secret = secrets.token_hex(32)
    Repository.objects.filter(id=repository.id).update(
        webhook_secret_encrypted=crypto.encrypt(secret)
    )
    record_action(
        actor=user,
        project=repository.project,
        action="repository.rotate_secret",
        target=f"repository {repository.name}",
    )
    return secret


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def delete_repository(*, user: Any, repository: Repository, actor: Any = None) -> None:
    """Its builds stay (they record the commit they ran); its webhook stops (404).
    user=None is the server, with no role to check (the admin passes who acts as `actor`)."""
    if user is not None:
        require_role(user=user, project=repository.project, role=Role.MAINTAINER)
    record_action(
        actor=user if user is not None else actor,
        project=repository.project,
        action="repository.delete",
        target=f"repository {repository.name}",
        detail=repository.url,
    )
    repository.delete()


# --- builds of a commit -----------------------------------------------------------------
@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def trigger_repository_build(
    *,
    user: Any,
    repository: Repository,
    ref: str | None = None,
    sha: str = "",
    params: dict[str, Any] | None = None,
    trigger: str = "manual",
    author: str = "",
    message: str = "",
    via: str = "",
) -> Build:
    """A build of the repository at `ref` (branch, tag or commit id; default its
    branch) or at exactly `sha`. It starts QUEUED without a pipeline version: a worker
    fetches the commit, reads the pipeline file at it and creates the tasks
    (`repositories/preparation.py`), or fails the build with the file's problems.
    `via` says, for the audit log, what started a build no person started."""
    project = repository.project
    if user is not None:
        require_role(user=user, project=project, role=Role.EDITOR)
    ref = ref or repository.branch
    if not REF_RE.match(ref):
        raise InvalidInput([Problem("not a branch, tag or commit id", where="ref")])
    if sha and not SHA_RE.fullmatch(sha):
        raise InvalidInput([Problem("not a full commit id", where="sha")])
    if params is not None and not isinstance(params, dict):
        raise InvalidInput([Problem("an object of param values", where="params")])
    pipeline, _ = Pipeline.objects.get_or_create(project=project, name=repository.name)
    build: Build = Build.objects.create(
        project=project,
        pipeline=pipeline,
        pipeline_version=None,
        params=params or {},
        trigger=trigger,
        repository=repository,
        commit_ref=ref,
        commit_sha=sha,
        commit_author=author,
        commit_message=message,
        triggered_by=user if user is not None and user.is_authenticated else None,
    )
    record_event(
        project_id=project.id,
        build_id=build.id,
        type=Event.Type.BUILD_STATE,
        new_state=BuildState.QUEUED,
        data={"pipeline": repository.name, "repository": repository.name, "ref": ref},
    )
    send_build_state_changed(build=build, old="", new=BuildState.QUEUED)
    at = f"{ref} ({sha[:12]})" if sha else ref
    record_action(
        actor=user,
        project=project,
        action="build.trigger",
        target=f"build {build.id}",
        detail=trigger_detail(
            via=via, source=f"repository {repository.name} at {at}", params=params
        ),
    )
    enqueue_preparation(build.id)
    return build


# --- push webhooks ----------------------------------------------------------------------
def branch_builds(repository: Repository, branch: str) -> bool:
    patterns = repository.branches or [repository.branch]
    return any(fnmatch.fnmatchcase(branch, p) for p in patterns)


def receive_webhook(*, repository_id: int, headers: Any, body: bytes) -> tuple[Build | None, str]:
    """The build a push starts (or, for a delivery seen before, the build it started),
    or None and why not. Raises NotFound, webhooks.BadSignature, webhooks.BadPayload."""
    repository: Repository | None = (
        Repository.objects.select_related("project").filter(id=repository_id).first()
    )
    if repository is None:
        raise NotFound(f"No repository #{repository_id}.")
    try:
        secret = crypto.decrypt(repository.webhook_secret_encrypted)
    except crypto.SecretUnreadable:
        raise Conflict(
            "the webhook secret can no longer be read (the encryption key changed): "
            "a maintainer must rotate it and give the forge the new one"
        ) from None
    hook = webhooks.verify(headers, body, secret)
    if not webhooks.is_push(hook):
        return None, f"{hook.event} events do not start builds; push events do"
    push = webhooks.read_push(body)
    with transaction.atomic():
        if hook.delivery:
            seen = Delivery.objects.select_related("build").filter(
                repository=repository, delivery_id=hook.delivery[:200]
            )
            first = seen.first()
            if first is not None:
                return first.build, first.reason or "this delivery was received before"
        if isinstance(push, str):
            build, reason = None, push
        elif not REF_RE.match(push.branch):
            build = None
            reason = f"branch {push.branch[:100]!r}: Buildsite does not build branches so named"
        elif not branch_builds(repository, push.branch):
            build = None
            reason = f"branch {push.branch} does not match the repository's branches"
        else:
            build = trigger_repository_build(
                user=None,
                repository=repository,
                ref=push.branch,
                sha=push.after,
                trigger="push",
                author=push.author,
                message=push.message,
                via=f"push webhook from {hook.forge or 'a forge'}",
            )
            reason = ""
        if hook.delivery:
            try:
                with transaction.atomic():
                    Delivery.objects.create(
                        repository=repository,
                        delivery_id=hook.delivery[:200],
                        build=build,
                        reason=reason[:300],
                    )
            except IntegrityError:
                # The same delivery, at the same moment, in another request: that one
                # started the build; this one's must not exist.
                first = (
                    Delivery.objects.select_related("build")
                    .filter(repository=repository, delivery_id=hook.delivery[:200])
                    .first()
                )  # with its build: no query may follow set_rollback
                transaction.set_rollback(True)
                return (first.build if first else None), "this delivery was received before"
    return build, reason
