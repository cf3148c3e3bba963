"""A repository build's first step, on a worker: fetch the commit, read the pipeline
file at it, pin the build to that text as a pipeline version, create its tasks. Or
fail the build at once, saying why (with the file's lines)."""

from __future__ import annotations

import logging

from django.db import close_old_connections, transaction

from builds.definition import merge_params
from builds.models import Build
from builds.resolution import forget_versions, version_spec
from builds.services import (
    check_claims,
    fail_unstarted_build,
    lock_build,
    start_tasks,
    version_of_text,
)
from buildsite.crypto import SecretUnreadable
from buildsite.errors import DomainError, InvalidInput
from tasks.states import BuildState

from . import git
from .models import Repository
from .selectors import remote_of

log = logging.getLogger(__name__)


def prepare_build_or_fail(*, build_id: int) -> str:
    """The job's entry: a bug or a lost database connection while preparing must end
    the build with a message, not leave it queued for ever. (A host that dies while
    preparing is covered by the job lease: another cluster runs the job again.)"""
    try:
        return prepare_build(build_id=build_id)
    except Exception as exc:
        log.exception("preparing build %s failed inside Buildsite", build_id)
        build = Build.objects.filter(id=build_id).first()
        if build is not None:
            _fail(build, f"could not prepare the build: internal error {type(exc).__name__}", {})
        return "failed"


def prepare_build(*, build_id: int) -> str:
    close_old_connections()
    build: Build | None = (
        Build.objects.select_related("project", "pipeline", "repository")
        .filter(id=build_id, state=BuildState.QUEUED, pipeline_version__isnull=True)
        .first()
    )
    if build is None:
        return "skipped: not waiting for its pipeline"
    repository: Repository | None = build.repository
    if repository is None:
        _fail(build, "its repository was deleted", {})
        return "failed"
    try:
        mirror = git.fetch(repository.id, remote_of(repository), sha=build.commit_sha)
        sha = build.commit_sha or git.resolve(mirror, build.commit_ref)
        commit = git.commit(mirror, sha)
        text = git.read_file(mirror, sha, repository.pipeline_path)
    except (git.GitError, DomainError, SecretUnreadable) as exc:
        message = exc.message if isinstance(exc, DomainError) else str(exc)
        _fail(build, f"could not read the pipeline: {message}", {})
        return "failed"
    with transaction.atomic():
        lock_build(build)
        if not Build.objects.filter(
            id=build.id, state=BuildState.QUEUED, pipeline_version__isnull=True
        ).exists():
            return "skipped: prepared or cancelled meanwhile"
        _set_commit(build, sha, commit)  # shown even when the pipeline is refused
        where = f"{repository.pipeline_path} at {sha[:12]}"
        try:
            with transaction.atomic():
                version = version_of_text(pipeline=build.pipeline, definition=text)
                spec = version_spec(version.id)
                params = merge_params(spec, build.params)
                check_claims(build.project, spec)
        except DomainError as exc:
            forget_versions()  # a version made in the savepoint is gone; SQLite reuses its id
            problems = exc.problems if isinstance(exc, InvalidInput) else []
            data = {"problems": [p.as_dict() for p in problems]} if problems else {}
            fail_unstarted_build(build=build, error=f"{where}: {exc.message}", data=data)
            return "failed"
        build.pipeline_version, build.params = version, params
        Build.objects.filter(id=build.id).update(pipeline_version=version, params=params)
        start_tasks(build=build, spec=spec)
    return "prepared"


def _set_commit(build: Build, sha: str, commit: git.Commit) -> None:
    build.commit_sha, build.commit_author, build.commit_message = sha, commit.author, commit.message
    Build.objects.filter(id=build.id).update(
        commit_sha=sha, commit_author=commit.author, commit_message=commit.message
    )


def _fail(build: Build, error: str, data: dict[str, object]) -> None:
    with transaction.atomic():
        fail_unstarted_build(build=build, error=error, data=data)
