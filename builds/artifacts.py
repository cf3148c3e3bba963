"""Artifacts: the files a task hands on to the tasks that need it.

A task's attempt starts in a fresh workspace holding only what it is given (the
artifacts of the tasks it directly `needs`); after its steps succeed, the files its
`artifacts:` patterns pick are stored content-addressed (SHA-256) in the artifact store,
a Django storage every host reaches (`BUILDSITE_ARTIFACTS_URL`: a directory, a shared
mount or an S3 bucket). The task row lists them (`Task.artifacts`), and so does the
cache entry of a cacheable task, so a cache hit hands on the same files.

A file record is `{"path", "sha256", "size", "mode"}`; the bytes live under
`sha256/<first two hex digits>/<digest>` in the store, once however often they occur.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.utils import timezone

from tasks import rawsql

from . import globs, trees
from .models import Blob

FileRecord = dict[str, Any]
CHUNK = 1 << 20


class ArtifactError(Exception):
    """A task's artifacts cannot be stored or restored; the message is for its log."""


# --- the store ---------------------------------------------------------------------------------
def storage_for(url: str) -> Storage:
    """The storage behind an artifact store URL: `file:///dir` or `s3://bucket[/prefix]`
    (endpoint, credentials and region from the standard AWS_* variables)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileSystemStorage(location=unquote(parts.path), file_permissions_mode=0o640)
    if parts.scheme == "s3" and parts.netloc:
        from storages.backends.s3 import S3Storage

        return S3Storage(
            bucket_name=parts.netloc,
            location=parts.path.strip("/"),
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=os.environ.get("AWS_DEFAULT_REGION") or None,
            file_overwrite=True,  # content-addressed: the same name is the same bytes
            default_acl=None,
            querystring_auth=False,
        )
    raise ImproperlyConfigured(
        f"BUILDSITE_ARTIFACTS_URL {url!r}: use file:///path or s3://bucket[/prefix]"
    )


@lru_cache(maxsize=1)
def artifact_store() -> Storage:
    return storage_for(settings.BUILDSITE["ARTIFACTS_URL"])


def blob_name(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


def open_blob(sha256: str) -> Any:
    """A readable file object of the stored bytes (streamed, never read whole)."""
    return artifact_store().open(blob_name(sha256), "rb")


# --- what a task is given ------------------------------------------------------------------
def received_files(
    needs: Iterable[str], artifacts: Mapping[str, list[FileRecord]]
) -> dict[str, FileRecord]:
    """The files a task's workspace starts with, by path: the artifacts of its needs,
    in `needs` order (a later need's file replaces an earlier one's at the same path)."""
    files: dict[str, FileRecord] = {}
    for name in needs:
        for record in artifacts.get(name, ()):
            files[record["path"]] = record
    return files


def input_hashes(patterns: list[str], files: Mapping[str, FileRecord]) -> dict[str, str]:
    """Content hash of every received file a task's `inputs:` pick; raises ArtifactError
    for a pattern that picks nothing (a typo must not silently make a key)."""
    hashes: dict[str, str] = {}
    for pattern, paths in globs.pick(patterns, files).items():
        if not paths:
            given = ", ".join(sorted(files)[:10]) or "no files"
            raise ArtifactError(f"inputs: {pattern!r} matches no file the task is given ({given})")
        hashes.update((p, files[p]["sha256"]) for p in paths)
    return hashes


def restore(workspace: Path, files: Mapping[str, FileRecord]) -> None:
    """Write the given files into a fresh workspace from the store."""
    store = artifact_store()
    local = _local_root(store)
    for path, record in sorted(files.items()):
        if globs.path_problem(path):
            raise ArtifactError(f"refusing to restore {path!r}: not a plain relative path")
        target = workspace / path
        name = blob_name(record["sha256"])
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if local is not None:
                shutil.copyfile(local / name, target)  # sendfile: no Python loop
            else:
                with store.open(name, "rb") as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
        except Exception as exc:
            raise ArtifactError(f"cannot restore {path!r} from the artifact store: {exc}") from exc
        target.chmod(record.get("mode", 0o644) & 0o777)


def _local_root(store: Storage) -> Path | None:
    return Path(store.location) if isinstance(store, FileSystemStorage) else None


# --- what a task hands on ---------------------------------------------------------------------
@dataclass(frozen=True)
class Picked:
    record: FileRecord
    staged: Path  # the copy whose bytes were hashed: what gets stored


def collect(workspace: Path, wanted: list[dict[str, Any]], *, room: int) -> list[Picked]:
    """The files the task's `artifacts:` pick, within the size limits (`room`: what the
    build may still store), each copied once out of the workspace and hashed while
    copied, so what is stored is exactly what was hashed and checked, whatever happens
    to the workspace meanwhile. Raises ArtifactError saying what is wrong."""
    limits = settings.BUILDSITE
    max_files = limits["ARTIFACT_MAX_FILES"]
    present, odd = _walk(workspace)
    chosen: list[str] = []
    for item in wanted:
        pattern = item["path"]
        strange = [p for p in odd if globs.matches(pattern, p)]
        if strange:
            raise ArtifactError(
                f"artifacts: {pattern!r} picks {strange[0]!r}, which is not a regular file "
                "(symlinks and devices are not stored)"
            )
        paths = [p for p in present if globs.matches(pattern, p)]
        if not paths and not item.get("optional"):
            raise ArtifactError(
                f"artifacts: {pattern!r} matches no file in the workspace "
                "(mark it optional: true if it may be absent)"
            )
        chosen.extend(p for p in paths if p not in chosen)
        if len(chosen) > max_files:
            raise ArtifactError(f"artifacts: more than {max_files} files")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=_staging_root()))
    try:
        picked = []
        for index, path in enumerate(chosen):
            record = _snapshot(workspace, path, staging / str(index))
            room -= record["size"]
            if room < 0:
                raise ArtifactError(
                    f"artifacts: storing {path!r} would pass the build's limit of "
                    f"{limits['ARTIFACT_MAX_BUILD_BYTES']} bytes"
                )
            picked.append(Picked(record, staging / str(index)))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return picked


def _staging_root() -> Path:
    """Where picked files are copied before they are stored: inside a local store (so
    storing is a rename), else beside the workspaces; never where a step can write."""
    local = _local_root(artifact_store())
    root = local if local is not None else Path(settings.DATA_DIR) / "run"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _walk(workspace: Path) -> tuple[list[str], list[str]]:
    """Relative paths of the regular files under `workspace`, and of anything else
    (symlinks, sockets) that a pattern must not pick; symlinks are never followed."""
    files: list[str] = []
    odd: list[str] = []
    for path, info in trees.entries(workspace):
        if not stat.S_ISDIR(info.st_mode):
            (files if stat.S_ISREG(info.st_mode) else odd).append(path)
    return sorted(files), sorted(odd)


def _snapshot(workspace: Path, path: str, copy: Path) -> FileRecord:
    """Copy one picked file (never through a symlink, at most the per-file limit),
    hashing the bytes copied."""
    limit = settings.BUILDSITE["ARTIFACT_MAX_FILE_BYTES"]
    try:
        fd = os.open(workspace / path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ArtifactError(f"artifacts: cannot read {path!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as src:
        info = os.fstat(src.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"artifacts: {path!r} is not a regular file")
        h, size = hashlib.sha256(), 0
        with copy.open("wb") as dst:
            while block := src.read(CHUNK):
                size += len(block)
                if size > limit:
                    raise ArtifactError(
                        f"artifacts: {path!r} is over the limit per file of {limit} bytes"
                    )
                h.update(block)
                dst.write(block)
    return {
        "path": path,
        "sha256": h.hexdigest(),
        "size": size,
        "mode": stat.S_IMODE(info.st_mode) & 0o777,
    }


def upload(picked: list[Picked]) -> list[FileRecord]:
    """Put the picked files' bytes in the store (each content once) and return their
    records. A blob already stored is touched instead of sent again: retention deletes
    only blobs untouched for a while, so a touched blob stays."""
    if not picked:
        return []
    try:
        stored = touch_blobs(list(dict.fromkeys(p.record["sha256"] for p in picked)))
        store = artifact_store()
        sent: dict[str, int] = {}
        for item in picked:
            digest = item.record["sha256"]
            if digest in stored or digest in sent:
                continue
            try:
                _put(store, blob_name(digest), item.staged)
            except Exception as exc:
                raise ArtifactError(f"cannot store {item.record['path']!r}: {exc}") from exc
            sent[digest] = item.record["size"]
        Blob.objects.bulk_create(
            [Blob(sha256=d, size=size, last_used_at=timezone.now()) for d, size in sent.items()],
            ignore_conflicts=True,
        )
    finally:
        shutil.rmtree(picked[0].staged.parent, ignore_errors=True)
    return [p.record for p in picked]


def touch_blobs(digests: list[str]) -> set[str]:
    """Mark the blobs among `digests` used now; returns those that are stored. One
    statement per 500 (UPDATE ... RETURNING): this runs for every task with artifacts,
    and for cache hits that restore some."""
    table, sha = rawsql.table(Blob), rawsql.col(Blob, "sha256")
    when = rawsql.to_db(Blob, "last_used_at", timezone.now())
    stored: set[str] = set()
    for i in range(0, len(digests), 500):
        chunk = digests[i : i + 500]
        rows = rawsql.fetch(
            f"UPDATE {table} SET last_used_at = %s WHERE {sha} IN ({rawsql.marks(len(chunk))}) "
            f"RETURNING {sha}",
            [when, *chunk],
        )
        stored.update(r[0] for r in rows)
    return stored


def _put(store: Storage, name: str, staged: Path) -> None:
    """Store the staged copy under exactly `name`, replacing what is there (two workers
    storing the same content at once both succeed)."""
    root = _local_root(store)
    if root is None:  # S3: a PUT replaces the object whole (file_overwrite=True)
        with staged.open("rb") as fh:
            store.save(name, File(fh, name=name))
        return
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    staged.chmod(0o640)
    os.replace(staged, target)  # same file system: atomic (FileSystemStorage.save renames)


def delete_blobs(digests: list[str]) -> None:
    store = artifact_store()
    for digest in digests:
        store.delete(blob_name(digest))
