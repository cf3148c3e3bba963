"""The life of a worker cluster on one host: stopping in time, and no step outliving it.

Stopping: `manage.py qcluster` (builds/management/commands/qcluster.py) sets
`stopping` when it gets SIGTERM or SIGINT, before django-q2's own stop begins. A worker
that takes a job after that hands it back unstarted (`RELEASED`: the monitor makes the
job available again at once instead of acknowledging it), and a running shell step is
killed and its attempt returned for retry (`execution.py`). So the cluster is down in a
few seconds, not when its longest step ends.

Workspaces: each attempt runs in a new directory under its worker's own,
`$WORKSPACE_DIR/<host>-<pid>/attempt-*`, removed after the attempt; the same sweep
removes the directories of workers that are gone.

Orphans: a step runs in a process group of its own (so cancel can kill all of it), so
it would survive a worker killed with SIGKILL. Each worker records the group of the
step it runs, and the upkeep thread of every cluster on the host kills, every tick, the
recorded groups of workers that are gone (`kill_orphans`): the whole group, not only
its leader. (PR_SET_PDEATHSIG would kill only the leader, and setting it costs an
extra exec or a full fork of the worker per step: a third of a short step's cost.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import tempfile
from pathlib import Path

from django.conf import settings

from . import trees

RELEASED = "released: the cluster is stopping"
STEP_MARK = "BUILDSITE_STEP_GROUP"
_stopping = None


def prepare_stopping() -> None:
    """Create the flag in the cluster's main process, before it forks its workers."""
    global _stopping
    _stopping = multiprocessing.get_context("fork").Event()


def set_stopping() -> None:
    if _stopping is not None:
        _stopping.set()


def stopping() -> bool:
    return _stopping is not None and _stopping.is_set()


# --- orphans -----------------------------------------------------------------------------
def _groups_dir() -> Path:
    return Path(settings.DATA_DIR) / "run" / "steps"


_record_fd: tuple[int, int] | None = None  # (pid it belongs to, fd)


def _record_prefix() -> str:
    # Host name too: containers sharing a data dir may reuse each other's pids.
    return f"{socket.gethostname()}-"


def _record() -> int:
    """This worker's record file: `<host>-<worker pid>`, holding "<pgid> <mark>" while a
    step runs and nothing otherwise; opened once per worker process."""
    global _record_fd
    if _record_fd is None or _record_fd[0] != os.getpid():
        directory = _groups_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{_record_prefix()}{os.getpid()}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        _record_fd = (os.getpid(), fd)
    return _record_fd[1]


def record_step_group(pgid: int, mark: str) -> None:
    """Note that this worker runs step group `pgid`, whose processes carry `mark` in
    their environment as STEP_MARK (until `forget_step_group`)."""
    fd, text = _record(), f"{pgid} {mark}".encode()
    os.pwrite(fd, text, 0)
    os.ftruncate(fd, len(text))


def forget_step_group() -> None:
    os.ftruncate(_record(), 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _members(pgid: int, mark: str) -> list[int]:
    """Live processes of group `pgid` that carry the step's mark (so a group id reused
    by some other program is never touched)."""
    wanted = f"{STEP_MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _of_dead_workers(directory: Path) -> list[Path]:
    """The entries of `directory` named `<this host>-<pid>` whose worker is gone (not
    another host's, not a live worker's)."""
    if not directory.is_dir():
        return []
    prefix = _record_prefix()
    found = []
    for path in directory.iterdir():
        worker = path.name.removeprefix(prefix)
        if worker != path.name and worker.isdigit() and not _alive(int(worker)):
            found.append(path)
    return found


def kill_orphans() -> int:
    """Kill the step groups recorded by workers of this host that are gone."""
    killed = 0
    for record in _of_dead_workers(_groups_dir()):
        with contextlib.suppress(OSError, ValueError):
            pgid, _, mark = record.read_text().partition(" ")
            if pgid:
                for pid in _members(int(pgid), mark.strip()):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed += 1
            record.unlink(missing_ok=True)
    return killed


# --- workspaces ----------------------------------------------------------------------------
def _workspaces() -> Path:
    return Path(settings.BUILDSITE["WORKSPACE_DIR"])


def own_directory() -> Path:
    """This process's directory under the workspaces: `<host>-<pid>`, searchable by the
    step user, removed by `sweep_workspaces` once the process is gone."""
    mine = _workspaces() / f"{_record_prefix()}{os.getpid()}"
    mine.mkdir(parents=True, exist_ok=True)
    mine.chmod(0o711)
    return mine


def fresh_workspace() -> Path:
    """A new, empty directory for one attempt, under this worker's own directory: an
    attempt starts with nothing it was not given, whatever an earlier one left behind
    (what could not be removed then is tried again here, never reused)."""
    mine = own_directory()
    for old in mine.iterdir():
        remove_workspace(old)
    return Path(tempfile.mkdtemp(prefix="attempt-", dir=mine))  # 0700


def remove_workspace(path: Path) -> None:
    """Remove a workspace whatever the step made of it (depth, modes): `trees.remove`."""
    trees.remove(path)


def sweep_workspaces() -> int:
    """Remove the workspaces of this host's workers that are gone (killed mid-attempt)."""
    dead = _of_dead_workers(_workspaces())
    for path in dead:
        remove_workspace(path)
    return len(dead)
