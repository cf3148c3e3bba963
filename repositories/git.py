"""The `git` command line, as the server uses it: a bare mirror per repository on each
host (a cache: any host can rebuild its own), and checkouts of one exact commit.

Credentials never touch a command line, a URL or the mirror's config: an HTTPS token
goes in an `http.extraHeader` passed through git's GIT_CONFIG_* environment variables,
an SSH key in a 0600 file that lives for one command. Whatever git prints is masked
before it reaches a message (`GitError`). Only http(s), ssh and, when the operator
allows it, local repositories are reachable (GIT_ALLOW_PROTOCOL: no `ext::`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
MAX_PIPELINE_BYTES = 2 * 1024 * 1024  # as a pipeline saved through the API
MAX_COMMIT_BYTES = 1024 * 1024  # a commit object larger than this is not read into memory
OUTPUT_CHARS = 2000  # of git's error output, in a message


class GitError(Exception):
    """A git command failed; the message is safe to show (credentials masked)."""


@dataclass(frozen=True)
class Remote:
    """Where to fetch from and with what: `credential` is an HTTPS token (or
    `user:token`) for http(s) URLs, a private key for ssh ones."""

    url: str
    credential: str = ""


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    message: str


def mirror_dir(repository_id: int) -> Path:
    return Path(settings.BUILDSITE["MIRROR_DIR"]) / f"{repository_id}.git"


def is_ssh(url: str) -> bool:
    return url.startswith("ssh://") or bool(re.match(r"^[\w.-]+@[\w.-]+:", url))


def fetch(repository_id: int, remote: Remote, *, sha: str = "") -> Path:
    """Bring this host's mirror up to date with the remote's branches and tags (and
    `sha`, if no branch has it any more, e.g. after a force push); returns the mirror."""
    mirror = mirror_dir(repository_id)
    with _locked(mirror):
        if not (mirror / "HEAD").exists():
            mirror.mkdir(parents=True, exist_ok=True)
            _git(["init", "--quiet", "--bare", str(mirror)])
            # Checkouts fetch one commit by its id from the mirror.
            _git(["-C", str(mirror), "config", "uploadpack.allowAnySHA1InWant", "true"])
        if sha and has_commit(mirror, sha):
            return mirror
        refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
        _fetch(mirror, remote, refspecs)
        if sha and not has_commit(mirror, sha):
            _fetch(mirror, remote, [sha])  # servers that allow fetching by id
            if not has_commit(mirror, sha):
                raise GitError(f"commit {sha} is not in the repository")
    return mirror


def has_commit(mirror: Path, sha: str) -> bool:
    done = _run(["git", "-C", str(mirror), "cat-file", "-e", f"{sha}^{{commit}}"], timeout=30)
    return done.returncode == 0


def resolve(mirror: Path, ref: str) -> str:
    """The full id of the commit a branch, tag or (abbreviated) commit id names."""
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        done = _run(
            [
                "git",
                "-C",
                str(mirror),
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                f"{candidate}^{{commit}}",
            ],
            timeout=30,
        )
        if done.returncode == 0:
            return done.stdout.decode("ascii", "replace").strip()
    raise GitError(f"no branch, tag or commit named {ref!r}")


def commit(mirror: Path, sha: str) -> Commit:
    # A hostile repository's commit can be any size: it is not read whole to show it.
    size = _run(["git", "-C", str(mirror), "cat-file", "-s", f"{sha}^{{commit}}"], timeout=30)
    if size.returncode == 0 and int(size.stdout.strip() or 0) > MAX_COMMIT_BYTES:
        return Commit(sha=sha, author="", message="(commit too large to show)")
    out = _git(
        ["-C", str(mirror), "log", "-1", "--format=%an <%ae>%x00%B", "--end-of-options", sha, "--"]
    )
    author, _, message = out.partition("\0")
    return Commit(sha=sha, author=author.strip()[:300], message=message.strip()[:10_000])


def read_file(mirror: Path, sha: str, path: str) -> str:
    """A text file at a commit, bounded in size."""
    spec = f"{sha}:{path}"
    size = _run(["git", "-C", str(mirror), "cat-file", "-s", spec], timeout=30)
    if size.returncode != 0:
        raise GitError(f"there is no {path} at commit {sha[:12]}")
    if int(size.stdout.strip() or 0) > MAX_PIPELINE_BYTES:
        raise GitError(f"{path} at commit {sha[:12]} is larger than {MAX_PIPELINE_BYTES} bytes")
    blob = _run(["git", "-C", str(mirror), "cat-file", "blob", spec], timeout=30)
    if blob.returncode != 0:
        raise GitError(f"{path} at commit {sha[:12]} is not a file")
    try:
        return blob.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise GitError(f"{path} at commit {sha[:12]} is not UTF-8 text") from None


def check_out_commit(mirror: Path, sha: str, workspace: Path, *, origin: str) -> None:
    """The files of one commit, with a one-commit history, into an empty workspace:
    `git describe`, `git log -1` and `git rev-parse HEAD` work; nothing else of the
    mirror comes along."""
    _git(["init", "--quiet", str(workspace)], protocols="file")
    _git(
        [
            "-C",
            str(workspace),
            "fetch",
            "--quiet",
            "--depth=1",
            "--no-tags",
            "--end-of-options",
            mirror.as_uri(),
            sha,
        ],
        protocols="file",
    )
    _git(["-C", str(workspace), "checkout", "--quiet", "--detach", "FETCH_HEAD"], protocols="file")
    _git(["-C", str(workspace), "remote", "add", "--end-of-options", "origin", origin])


# --- internals --------------------------------------------------------------------------
def _fetch(mirror: Path, remote: Remote, refspecs: list[str]) -> None:
    with _credentials(remote) as extra:
        _git(
            [
                "-C",
                str(mirror),
                "fetch",
                "--quiet",
                "--prune",
                "--end-of-options",
                remote.url,
                *refspecs,
            ],
            extra=extra,
            secrets=[remote.credential],
            timeout=settings.BUILDSITE["GIT_TIMEOUT_SECONDS"],
        )


def _ssh_command(key: Path | None) -> str:
    """ssh as git runs it: with the repository's key and nothing else of the host's.
    ssh reads the account's ~/.ssh (config and default keys) from the password
    database, not $HOME: `-F /dev/null` and `IdentityFile=none` keep the server's own
    keys and settings away from repositories anyone registers. Never prompts; a silent
    server is dropped after about a minute."""
    known_hosts = Path(settings.BUILDSITE["MIRROR_DIR"]) / "known_hosts"
    identity = f"-i {shlex.quote(str(key))}" if key else "-o IdentityFile=none"
    return (
        f"ssh -F /dev/null {identity} -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o StrictHostKeyChecking=accept-new "
        f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))} "
        "-o ConnectTimeout=30 -o ServerAliveInterval=15 -o ServerAliveCountMax=4"
    )


@contextmanager
def _credentials(remote: Remote) -> Iterator[dict[str, str]]:
    if is_ssh(remote.url):
        if not remote.credential:
            yield {"GIT_SSH_COMMAND": _ssh_command(None)}
            return
        with tempfile.TemporaryDirectory(prefix="buildsite-key-") as tmp:
            key = Path(tmp) / "key"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(remote.credential.strip() + "\n")
            yield {"GIT_SSH_COMMAND": _ssh_command(key)}
        return
    if not remote.credential:
        yield {}
        return
    user_token = (
        remote.credential if ":" in remote.credential else (f"x-access-token:{remote.credential}")
    )
    basic = base64.b64encode(user_token.encode()).decode()
    yield {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }


def _env(protocols: str = "") -> dict[str, str]:
    allowed = protocols or "http:https:ssh" + (
        ":file" if settings.BUILDSITE["ALLOW_LOCAL_REPOS"] else ""
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(settings.BUILDSITE["MIRROR_DIR"]),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": allowed,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        # A stalled server must not hold a worker: under 1 KB/s for 60 s ends the fetch.
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": "60",
    }


def _git(
    args: list[str],
    *,
    extra: dict[str, str] | None = None,
    secrets: list[str] | None = None,
    protocols: str = "",
    timeout: float = 120,
) -> str:
    done = _run(["git", *args], env={**_env(protocols), **(extra or {})}, timeout=timeout)
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")
        raise GitError(_masked(stderr.strip()[-OUTPUT_CHARS:], secrets or []))
    return done.stdout.decode("utf-8", "replace")


def _run(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """git in a process group of its own. On timeout the whole group is killed: the
    transfer runs in git's children (git-remote-https, ssh), which outlive a killed
    git and would stay connected to a stalled server for ever."""
    with subprocess.Popen(
        argv,
        env=env if env is not None else _env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            step = argv[1] if argv[1] != "-C" else argv[3]
            raise GitError(f"git {step} took over {timeout:g}s") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _masked(text: str, secrets: list[str]) -> str:
    for secret in filter(None, secrets):
        for line in secret.strip().splitlines():
            if len(line.strip()) >= 6:
                text = text.replace(line.strip(), "***")
    return text or "git failed"


@contextmanager
def _locked(mirror: Path) -> Iterator[None]:
    """One fetch per mirror at a time on this host (workers are processes)."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(mirror.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
