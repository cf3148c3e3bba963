"""Commit status reports back to the forge: pending when a repository build starts,
success / failure / error when it ends, with a link to the build.

Sent by a job on the workers (never in the request or the settling transaction), with
the token a project secret holds, to the forge's own API:

- GitHub: POST {api}/repos/{owner}/{repo}/statuses/{sha}, JSON, `Authorization: Bearer`
  ({api} defaults to https://api.github.com)
- GitLab: POST {api}/api/v4/projects/{path}/statuses/{sha}, form, `PRIVATE-TOKEN`
- Gitea / Forgejo: POST {api}/api/v1/repos/{owner}/{repo}/statuses/{sha}, JSON,
  `Authorization: token`
({api} defaults to the repository URL's scheme and host for GitLab and Gitea.)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings
from django.urls import reverse
from django_q.tasks import async_task

from prompts import netguard
from prompts.services import private_urls_allowed
from tasks.states import BuildState

from .models import Repository

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0

# Our build states in each forge's words.
STATES = {
    "github": {"queued": "pending", "running": "pending", "succeeded": "success",
               "failed": "failure", "cancelled": "error"},
    "gitea": {"queued": "pending", "running": "pending", "succeeded": "success",
              "failed": "failure", "cancelled": "error"},
    "gitlab": {"queued": "pending", "running": "running", "succeeded": "success",
               "failed": "failed", "cancelled": "canceled"},
}  # fmt: skip
DESCRIPTIONS = {
    "queued": "Build queued",
    "running": "Build running",
    "succeeded": "Build succeeded",
    "failed": "Build failed",
    "cancelled": "Build cancelled",
}


@dataclass(frozen=True)
class Report:
    url: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    data: dict[str, str] | None = None


def repo_path(url: str) -> str:
    """owner/name of a clone URL (https://host/owner/name.git or git@host:owner/name)."""
    path = url.split(":", 1)[1] if re.match(r"^[\w.-]+@[\w.-]+:", url) else urlsplit(url).path
    return path.strip("/").removesuffix(".git")


def default_api(forge: str, url: str) -> str:
    if forge == "github":
        return "https://api.github.com"
    if re.match(r"^[\w.-]+@[\w.-]+:", url):
        return "https://" + url.split("@", 1)[1].split(":", 1)[0]
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    if parts.scheme == "ssh":  # the forge's API is on https, not on the ssh port
        return f"https://{host}"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def report_for(
    *, forge: str, api: str, repo_url: str, sha: str, state: str, token: str, target: str,
    context: str,
) -> Report:  # fmt: skip
    """The request that tells the forge a build's state: pure."""
    api = (api or default_api(forge, repo_url)).rstrip("/")
    path = repo_path(repo_url)
    forge_state = STATES[forge][state]
    description = DESCRIPTIONS[state]
    if forge == "gitlab":
        return Report(
            url=f"{api}/api/v4/projects/{quote(path, safe='')}/statuses/{sha}",
            headers={"PRIVATE-TOKEN": token},
            data={
                "state": forge_state,
                "target_url": target,
                "description": description,
                "name": context,
            },
        )
    body = {
        "state": forge_state,
        "target_url": target,
        "description": description,
        "context": context,
    }
    if forge == "github":
        return Report(
            url=f"{api}/repos/{path}/statuses/{sha}",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
            json=body,
        )
    return Report(
        url=f"{api}/api/v1/repos/{path}/statuses/{sha}",
        headers={"Authorization": f"token {token}"},
        json=body,
    )


def on_build_state_changed(*, build: Any, old: str, new: str, **_: Any) -> None:
    """Receiver of builds.signals.build_state_changed: queue a report for builds of
    repositories that report their status."""
    if not build.repository_id or new == BuildState.QUEUED:
        return  # queued builds report "pending" once they know their commit: at start
    reports = Repository.objects.filter(id=build.repository_id).exclude(status_forge="")
    if not reports.exists():
        return
    if new == BuildState.FAILED and old == BuildState.QUEUED and not build.commit_sha:
        return  # failed before it knew its commit: nothing to report on
    # Already after the commit (the signal is sent on commit): queue it now.
    async_task("repositories.jobs.report_status", build.id, str(new), save=False)


def send_report(*, build_id: int, state: str) -> str:
    from builds.models import Build
    from vault.selectors import secret_value

    build = (
        Build.objects.select_related("repository__project", "pipeline").filter(id=build_id).first()
    )
    if build is None or build.repository is None or not build.commit_sha:
        return "skipped"
    repository: Repository = build.repository
    if not repository.status_forge:
        return "skipped"
    try:
        token = secret_value(project=repository.project, name=repository.status_token_secret)
        report = report_for(
            forge=repository.status_forge,
            api=repository.status_api_url,
            repo_url=repository.url,
            sha=build.commit_sha,
            state=state,
            token=token,
            target=settings.BUILDSITE["BASE_URL"] + reverse("build", args=[build.id]),
            context=f"buildsite/{build.pipeline.name}",
        )
        netguard.check_url(report.url, allow_private=private_urls_allowed(), where="status")
        response = httpx.post(
            report.url,
            headers=report.headers,
            json=report.json,
            data=report.data,
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )
    except Exception as exc:  # a forge that is down must not fail anything else
        log.warning("status report for build %s failed: %s", build_id, type(exc).__name__)
        return f"failed: {type(exc).__name__}"
    if response.status_code >= 300:
        log.warning(
            "status report for build %s: the forge answered %s", build_id, response.status_code
        )
        return f"refused: {response.status_code}"
    return "sent"
