"""The sandbox a shell step runs in: bubblewrap (`bwrap`), as an unprivileged user.

Inside, a step sees its workspace (read-write, at /workspace), a private /tmp and
/dev/shm (512 MB each), the system's programs read-only (/usr and the /bin, /lib
links, a few files of /etc), a /proc of its own PID namespace and nothing else: not
the data dir, the database, other workspaces, the worker's environment or processes.
The network is off unless the task says `network: true`. Memory is limited by a cgroup
of the worker's (`cgroups.py`: resident memory, /tmp and /dev/shm included), or where
none can be used, as address space per process; the other limits are rlimits that the
step's shell sets inside the sandbox before it runs the step's command (`limit_prelude`:
processes, CPU seconds, file size); the log and workspace limits are checked by the
worker (`shell.py`).

When the worker runs as root, the step runs as a uid of the worker's own (`step_uid`),
outside the sandbox too, so no escape lands as root. (The process limit counts the
step's own processes whatever the uid: the shell sets it inside the user namespace.)
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from .. import cluster, trees
from .etc_copy import NETWORK_ETC

WORKDIR = "/workspace"
NOBODY = 65534
TMP_BYTES = 512 * 1024 * 1024  # each of /tmp and /dev/shm
SHELL_CONTROL = ("SHELLOPTS", "BASHOPTS", "PS4", "ENV", "BASH_ENV")


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
    try:
        probe = _probe("true")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not run: {exc}"
    if probe.returncode != 0:
        why = probe.stderr.decode(errors="replace").strip()
        closed = closed_ancestor(Path(settings.BUILDSITE["WORKSPACE_DIR"]))
        if closed is not None:
            why += (
                f" ({closed} is not searchable by other users, so the step user cannot"
                " reach its workspace: chmod o+x it)"
            )
        return f"bubblewrap could not run: {why}"
    return ""


def closed_ancestor(path: Path) -> Path | None:
    """The first directory above `path` that other users cannot search (no o+x), which
    keeps the step user from its workspace; None when every one can be."""
    for parent in reversed(path.resolve().parents):
        try:
            if not parent.stat().st_mode & 0o001:
                return parent
        except OSError:
            return parent
    return None


@lru_cache(maxsize=1)
def limits_problem_here() -> str:
    """What of a step's limits this host's sandboxed /bin/sh does not set ("" when it
    sets them all), read back from /proc/self/limits in a sandbox: steps then fail
    saying so (never run without the sandbox for it). Asked once per process."""
    try:
        probe = _probe("cat /proc/self/limits")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the probe could not run: {exc}"
    output = (probe.stdout + probe.stderr).decode(errors="replace")
    if probe.returncode != 0:
        return f"the probe failed: {output.strip()[-300:]}"
    return limits_problem(output, Limits.of(None))


def _probe(command: str) -> subprocess.CompletedProcess[bytes]:
    probe_dir: Path | None = None
    try:
        open_workspace_root()
        # In this process's own directory: the workers of a cluster start together, and
        # with one shared directory one worker's clean-up removed it, or took it back
        # from the step user, under another's probe, which then found "no sandbox" and,
        # outside production, ran every step of its life unsandboxed. (Left behind by
        # a process killed meanwhile, it goes with that directory: `sweep_workspaces`.)
        probe_dir = Path(tempfile.mkdtemp(prefix="probe-", dir=cluster.own_directory()))
        prepare_workspace(probe_dir)
        # Without the /etc copy: this asks whether bwrap runs here, and a passing failure
        # to copy /etc must not be remembered as "no sandbox" (`etc_dir` fails the step).
        argv = wrap(command, workspace=probe_dir, network=False, etc=None, limits=Limits.of(None))
        return subprocess.run([*as_step_user(), *argv], capture_output=True, timeout=10)
    finally:
        if probe_dir is not None:
            shutil.rmtree(probe_dir, ignore_errors=True)


def open_workspace_root() -> None:
    """The step user must reach its workspace: the data dir and the workspaces dir are
    searchable (0711) but not listable by others; everything in them stays private."""
    root = Path(settings.BUILDSITE["WORKSPACE_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    for path in (root.parent, root):
        if path.stat().st_mode & 0o711 != 0o711:
            path.chmod(path.stat().st_mode | 0o711)


def _bwrap_base(*, network: bool, etc: Path | None) -> list[str]:
    # No user namespaces inside: they are kernel attack surface a build does not need.
    argv = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns"]
    # The step's shell is the namespace's PID 1: with bwrap's own reaper there, a step
    # could ptrace that process (same uid, no rlimits: they are set by the shell) and
    # make it fork past every limit.
    argv += ["--die-with-parent", "--new-session", "--as-pid-1"]
    # Variables a POSIX shell or bash-as-sh acts on before the first command (bash runs
    # SHELLOPTS=xtrace with PS4's command substitutions): the limits come first.
    for name in SHELL_CONTROL:
        argv += ["--unsetenv", name]
    argv += ["--uid", "65534", "--gid", "65534", "--hostname", "buildsite-step"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), f"/{top}"]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), f"/{top}"]
    # What of /etc a step may read, as one mount of a copy (a bind per file cost ~3 ms
    # a step); what the network needs is bound live, as it changes (DHCP, VPNs).
    if etc is not None:
        argv += ["--ro-bind", str(etc), "/etc"]
        for name in NETWORK_ETC if network else ():
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    # /tmp and /dev/shm are memory: sized, or a step could fill the host's RAM there
    # (tmpfs pages are not in its address-space limit), and /dev itself read-only.
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(TMP_BYTES), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    argv += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    if network:
        argv += ["--share-net"]
    return argv


def wrap(
    command: str,
    *,
    workspace: Path,
    network: bool,
    etc: Path | None,
    limits: Limits,
    address_space: bool = True,
    gate: Gate | None = None,
) -> list[str]:
    """The argv that runs `command` with `/bin/sh -c` in the sandbox, under `limits`
    (`limit_prelude`), with `etc` (from `etc_dir`) as its /etc."""
    argv = _bwrap_base(network=network, etc=etc) + (gate.argv() if gate else [])
    argv += ["--bind", str(workspace), WORKDIR, "--chdir", WORKDIR]
    # The root bwrap builds is a scratch tmpfs: read-only, so /workspace and /tmp are
    # the only places a step writes.
    argv += ["--remount-ro", "/"]
    prelude = limit_prelude(limits, address_space=address_space)
    return [*argv, "/bin/sh", "-c", prelude + command]


def step_uid() -> int | None:
    """The host uid steps run as, when the worker is root (else None: the worker's own).

    A uid of this worker process's own, `STEP_UID_BASE` + its pid: a worker runs one
    attempt at a time and no two live processes share a pid, so no other step and no
    other program on the host runs as it: a step that got out of its namespaces could
    signal or read no other step's processes, and no daemon's (with one shared `nobody`
    it could). The base (0x70000000) lies above the ranges systems give to users and containers;
    pid_max is at most 2**22, so every uid stays below 2**31. `BUILDSITE_STEP_UID`
    sets one uid for every step instead. (Worker containers on one host number their
    pids alike: give each a `BUILDSITE_STEP_UID_BASE` of its own.)"""
    if os.geteuid() != 0:
        return None
    fixed = int(settings.BUILDSITE["STEP_UID"])
    if fixed >= 0:
        return fixed
    own = int(settings.BUILDSITE["STEP_UID_BASE"]) + os.getpid()
    # In a user namespace (rootless containers, userns-remap) only a range of uids exists,
    # usually 65536 of them: there every step runs as nobody, as before.
    return own if uid_exists(own) else NOBODY


def uid_exists(uid: int, uid_map: str = "/proc/self/uid_map") -> bool:
    """Whether `uid` is mapped in this process's user namespace."""
    try:
        lines = Path(uid_map).read_text().splitlines()
    except OSError:
        return True  # no user namespaces on this kernel: every uid exists
    for line in lines:
        inside, _outside, count = (int(n) for n in line.split())
        if inside <= uid < inside + count:
            return True
    return False


def prepare_workspace(workspace: Path) -> None:
    """Hand the workspace to the step user (the worker keeps reading it as root)."""
    uid = step_uid()
    if uid is None:
        return
    os.lchown(workspace, uid, uid)
    for path, _info in trees.entries(workspace):
        os.lchown(workspace / path, uid, uid)


def as_step_user() -> list[str]:
    """The argv prefix that runs what follows as the step user (nothing when the worker
    is not root)."""
    uid = step_uid()
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def limit_prelude(limits: Limits, *, address_space: bool = True) -> str:
    """Shell builtins that set the step's rlimits, put before its command in the sandbox
    (memory as address space only when no cgroup limits it: `address_space`). Set
    there rather than by `prlimit` before bwrap: one process start fewer a step (0.7 ms),
    and the process limit counts the processes of the step's own user namespace. Set
    outside, it counted its host uid's, where each earlier step's PID namespace stays
    counted for up to a second after it ended: a worker that had just run a few short
    steps failed the next one at `processes: 8` with "Can't fork". Without
    CAP_SYS_RESOURCE (which bwrap drops) a step cannot raise them again."""
    cpu = limits.cpu_seconds
    settings_ = [
        f"-S -t {cpu}",  # SIGXCPU at the limit (the message can name it)
        f"-H -t {cpu + 5}",  # and SIGKILL a little later
        f"-f {limits.workspace_mb * 2048}",  # 512-byte blocks
        "-c 0",
        f"{processes_flag()} {limits.processes}",
    ]
    if address_space:
        settings_.append(f"-v {limits.memory_mb * 1024}")  # KiB
    # On the command's first line, so the shell's line numbers in errors stay the user's.
    failed = "{ echo 'buildsite: the sandbox could not set the step limits' >&2; exit 126; }"
    return " && ".join(f"ulimit {one}" for one in settings_) + f" || {failed}; "


@lru_cache(maxsize=1)
def processes_flag() -> str:
    """The process-count option of the host's /bin/sh (the sandbox's too): `-u` in
    bash and BusyBox, `-p` in dash (Debian's sh), which rejects `-u`."""
    known = subprocess.run(["/bin/sh", "-c", "ulimit -u"], capture_output=True, timeout=10)
    return "-u" if known.returncode == 0 else "-p"


def limits_problem(proc_limits: str, limits: Limits) -> str:
    """What of `limits` a sandboxed shell's /proc/self/limits (`proc_limits`) does not
    hold ("" when all of it does)."""
    wanted = {
        "Max cpu time": (str(limits.cpu_seconds), str(limits.cpu_seconds + 5)),
        "Max file size": (str(limits.workspace_mb * 1024 * 1024),) * 2,
        "Max core file size": ("0", "0"),
        "Max processes": (str(limits.processes),) * 2,
        "Max address space": (str(limits.memory_mb * 1024 * 1024),) * 2,
    }
    found = {}
    for line in proc_limits.splitlines():
        for name in wanted:
            if line.startswith(name + " "):
                found[name] = tuple(line[len(name) :].split()[:2])
    wrong = [name for name, values in wanted.items() if found.get(name) != values]
    return f"the shell did not set {', '.join(wrong)}" if wrong else ""


class Gate:
    """Holds a sandboxed step before it runs its command, until the worker has moved the
    sandbox's first process into the step's cgroup: bwrap tells that process's pid on
    `--info-fd` and waits on `--block-fd`. (Moving the started process from outside
    would race with its first fork; moving the worker around the start cost ~2 ms.)
    After `admit`, either `release` lets the step go on, or the caller kills it and
    `close`s (closing alone would release it too: bwrap reads end of file as go)."""

    INFO_WAIT_SECONDS = 10.0

    def __init__(self) -> None:
        self.info_read, self.info_write = os.pipe()
        self.block_read, self.block_write = os.pipe()
        self.open_fds = {self.info_read, self.info_write, self.block_read, self.block_write}

    def argv(self) -> list[str]:
        return ["--info-fd", str(self.info_write), "--block-fd", str(self.block_read)]

    def child_fds(self) -> tuple[int, int]:
        return self.info_write, self.block_read

    def admit(self, move: Callable[[int], None]) -> bool:
        """Once bwrap started: `move(pid)` its first process. False when bwrap ended
        before it started one (its output says why); OSError when it does not say."""
        self._close(self.info_write, self.block_read)  # the child's ends
        pid = self._child_pid()
        if pid is None:
            return False
        move(pid)
        return True

    def release(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # bwrap has ended already
            os.write(self.block_write, b"x")
        self.close()

    def close(self) -> None:
        self._close(*list(self.open_fds))

    def _close(self, *fds: int) -> None:
        for fd in fds:
            if fd in self.open_fds:
                self.open_fds.discard(fd)
                os.close(fd)

    def _child_pid(self) -> int | None:
        text, ended = b"", False
        with selectors.DefaultSelector() as readable:
            readable.register(self.info_read, selectors.EVENT_READ)
            while readable.select(timeout=self.INFO_WAIT_SECONDS):
                block = os.read(self.info_read, 4096)
                text += block
                ended = not block
                if ended or text.rstrip().endswith(b"}"):
                    break
        if ended and not text:
            return None
        try:
            return int(json.loads(text)["child-pid"])
        except (ValueError, KeyError, TypeError) as exc:
            raise OSError(f"the sandbox did not say its pid in time: {text[:200]!r}") from exc
