"""The sandbox a shell step runs in: bubblewrap (`bwrap`), as an unprivileged user.

Inside, a step sees its workspace (read-write, at /workspace), a private /tmp, the
system's programs read-only (/usr and the /bin, /lib links, a few files of /etc), a
/proc of its own PID namespace and nothing else: not the data dir, the database, other
workspaces, the worker's environment or its processes. The network is off unless the
task says `network: true`. Limits are rlimits set before bwrap starts (memory as
address space, processes of the step user, CPU seconds, file size); the log and
workspace limits are checked by the worker (`shell.py`).

When the worker runs as root, the step runs as BUILDSITE_STEP_UID (nobody by default):
outside the sandbox too, so the process limit counts and no escape lands as root.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

WORKDIR = "/workspace"
# What of /etc a step may read: enough for tools to find users, certificates, the
# dynamic loader's cache and Debian's alternatives; not the host's own configuration.
ETC = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "nsswitch.conf",
    "mime.types",
    "gitconfig",
    "python3",
)
NETWORK_ETC = ("resolv.conf", "hosts", "gai.conf")
PASSWD = "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/workspace:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    processes: int
    cpu_seconds: int
    log_mb: int
    workspace_mb: int

    @classmethod
    def of(cls, task_limits: dict[str, int] | None) -> Limits:
        defaults = settings.BUILDSITE["STEP_LIMITS"]
        return cls(**{**defaults, **(task_limits or {})})


def mode() -> str:
    """The sandbox steps get here: "bwrap"; "off" when the operator turned it off;
    "missing" when it cannot run here (`problem()` says why)."""
    if settings.BUILDSITE["SANDBOX"] == "off":
        return "off"
    return "missing" if problem() else "bwrap"


@lru_cache(maxsize=1)
def problem() -> str:
    """Why bubblewrap cannot sandbox steps on this host ("" when it can): one probe per
    process that binds a workspace as a step would."""
    if not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed"
    probe_dir = Path(settings.BUILDSITE["WORKSPACE_DIR"]) / ".probe"
    try:
        open_workspace_root()
        probe_dir.mkdir(exist_ok=True)
        prepare_workspace(probe_dir)
        probe = subprocess.run(
            wrap("true", workspace=probe_dir, network=False),
            capture_output=True,
            timeout=10,
            preexec_fn=_as_step_user,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not run: {exc}"
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    if probe.returncode != 0:
        return f"bubblewrap could not run: {probe.stderr.decode(errors='replace').strip()}"
    return ""


def open_workspace_root() -> None:
    """The step user must reach its workspace: the data dir and the workspaces dir are
    searchable (0711) but not listable by others; everything in them stays private."""
    root = Path(settings.BUILDSITE["WORKSPACE_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    for path in (root.parent, root):
        if path.stat().st_mode & 0o711 != 0o711:
            path.chmod(path.stat().st_mode | 0o711)


def _bwrap_base(*, network: bool) -> list[str]:
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    argv += ["--uid", "65534", "--gid", "65534", "--hostname", "buildsite-step"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), f"/{top}"]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), f"/{top}"]
    for name in ETC + (NETWORK_ETC if network else ()):
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if network:
        argv += ["--share-net"]
    return argv


def wrap(command: str, *, workspace: Path, network: bool) -> list[str]:
    """The argv that runs `command` with `/bin/sh -c` in the sandbox."""
    etc = _identity_files()
    argv = _bwrap_base(network=network)
    argv += ["--ro-bind", str(etc / "passwd"), "/etc/passwd"]
    argv += ["--ro-bind", str(etc / "group"), "/etc/group"]
    argv += ["--bind", str(workspace), WORKDIR, "--chdir", WORKDIR]
    # The root bwrap builds is a scratch tmpfs: read-only, so /workspace and /tmp are
    # the only places a step writes.
    argv += ["--remount-ro", "/"]
    return [*argv, "/bin/sh", "-c", command]


@lru_cache(maxsize=1)
def _identity_files() -> Path:
    """A passwd and group naming only root and nobody (the host's users stay private)."""
    directory = Path(settings.BUILDSITE["WORKSPACE_DIR"]).parent / "run" / "sandbox-etc"
    directory.mkdir(parents=True, exist_ok=True)
    directory.parent.chmod(0o711)
    directory.chmod(0o755)
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        path = directory / name
        path.write_text(text)
        path.chmod(0o644)
    return directory


def step_uid() -> int | None:
    """The host uid steps run as, when the worker is root (else None: the worker's own)."""
    return int(settings.BUILDSITE["STEP_UID"]) if os.geteuid() == 0 else None


def prepare_workspace(workspace: Path) -> None:
    """Hand the workspace to the step user (the worker keeps reading it as root)."""
    uid = step_uid()
    if uid is None:
        return
    for root, dirs, files in os.walk(workspace):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, uid, uid)


def _as_step_user() -> None:
    uid = step_uid()
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def preexec(limits: Limits) -> Callable[[], Any]:
    """Runs in the child between fork and exec: its own session (cancel kills the whole
    group), the limits, then the step user."""

    def apply() -> None:
        os.setsid()
        mib = 1024 * 1024
        for which, value in (
            (resource.RLIMIT_AS, limits.memory_mb * mib),
            (resource.RLIMIT_FSIZE, limits.workspace_mb * mib),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(which, (value, value))
        # SIGXCPU at the limit (the message can name it), SIGKILL a little later.
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        _as_step_user()
        # After the uid change: the process count is the step user's.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))

    return apply
