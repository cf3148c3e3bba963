"""A task's workspace starts with its build's commit (unless the task says
`checkout: false`): fetched into this host's mirror if it is not there yet (the build
may have been prepared on another host), then checked out at exactly that commit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from buildsite.crypto import SecretUnreadable
from buildsite.errors import DomainError

from . import git
from .models import Repository
from .selectors import remote_of


class CheckoutFailed(Exception):
    pass


def wants_checkout(build: Any, task_spec: dict[str, Any]) -> bool:
    return bool(build.commit_sha) and task_spec.get("checkout", True) is not False


def check_out(*, build: Any, workspace: Path, log: Callable[[str], None]) -> None:
    repository: Repository | None = (
        Repository.objects.select_related("project").filter(id=build.repository_id).first()
    )
    if repository is None:
        raise CheckoutFailed("checkout: the build's repository was deleted")
    try:
        mirror = git.fetch(repository.id, remote_of(repository), sha=build.commit_sha)
        git.check_out_commit(mirror, build.commit_sha, workspace, origin=repository.url)
    except git.GitError as exc:
        raise CheckoutFailed(f"checkout of {build.commit_sha[:12]} failed: {exc}") from None
    except DomainError as exc:
        raise CheckoutFailed(f"checkout: {exc.message}") from None
    except SecretUnreadable as exc:
        raise CheckoutFailed(f"checkout: {exc}") from None
    log(f"checkout: {repository.url} at {build.commit_sha} ({build.commit_ref})\n")
