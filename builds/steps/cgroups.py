"""A step's memory limit as resident memory: a memory cgroup of the worker's own.

Each worker process keeps one cgroup, `buildsite-step-<host>-<pid>`, under its own memory cgroup
(cgroup v1) or under the directory `BUILDSITE_STEP_CGROUP` names (a cgroup v2 directory
with the memory controller delegated, or a v1 one). Before a step runs its limit is set
there, swap included (where the kernel accounts swap; elsewhere the cgroup is told not
to swap), and the sandbox's first process is moved in before it runs a command
(`sandbox.Gate`), so everything the step starts, and the pages of its /tmp and
/dev/shm, count. When the step ends, a grown `oom_kill` count with the limit reached
meanwhile says it hit the limit.

Without a usable cgroup (not root, no memory controller, v2 without delegation) the
limit falls back to an address-space rlimit per process (`sandbox.limit_prelude`), and
`problem()` says why.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

PREFIX = "buildsite-step-"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """The file names of one cgroup version's memory controller."""

    limit: str
    swap: str  # memory plus swap (v1) or swap alone (v2); absent without swap accounting
    events: str  # holds an "oom_kill N" line (and on v2 "oom N": the limit was reached)
    swap_is_total: bool
    peak: tuple[str, ...]  # highest usage since reset (v1: `oom_control` has no "oom")


V1 = Layout(
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "memory.oom_control",
    True,
    ("memory.max_usage_in_bytes", "memory.memsw.max_usage_in_bytes"),
)
V2 = Layout("memory.max", "memory.swap.max", "memory.events", False, ())


@dataclass(frozen=True)
class MemoryEvents:
    oom_kills: int  # processes of the cgroup the kernel killed, for whatever reason
    limit_hits: int  # times the cgroup reached its own limit (v1: 1 when it did)

    def killed_at_limit(self, *, since: MemoryEvents) -> bool:
        """A process was killed, and the cgroup's own limit was reached meanwhile (the
        host running out of memory kills too, but that is not the step's limit)."""
        return self.oom_kills > since.oom_kills and self.limit_hits > since.limit_hits


class StepCgroup:
    """The memory cgroup this worker process's steps run in, one step at a time."""

    def __init__(self, path: Path, layout: Layout) -> None:
        self.path = path
        self.layout = layout

    def limit(self, memory_mb: int) -> None:
        """Set the next step's limit: `memory_mb` of memory, no swap beyond it."""
        try:
            self._limit(memory_mb)
        except FileNotFoundError:
            # Removed under us (by hand, or a worker elsewhere that took it for stale).
            self.path.mkdir(mode=0o755, exist_ok=True)
            self.avoid_swap()
            self._limit(memory_mb)

    def _limit(self, memory_mb: int) -> None:
        limit = str(memory_mb * 1024 * 1024)
        swap = limit if self.layout.swap_is_total else "0"
        has_swap = (self.path / self.layout.swap).exists()
        # v1 keeps memory <= memory+swap at every write: which goes first depends on
        # whether the limit grows or shrinks, so try one order, then the other.
        orders = [[(self.layout.limit, limit)]]
        if has_swap:
            orders = [
                [(self.layout.limit, limit), (self.layout.swap, swap)],
                [(self.layout.swap, swap), (self.layout.limit, limit)],
            ]
        last: OSError | None = None
        for attempt in range(2):
            for order in orders:
                try:
                    for name, value in order:
                        (self.path / name).write_text(value)
                    for name in self._peaks():  # the step's own peak, not the last one's
                        (self.path / name).write_text("0")
                    return
                except OSError as exc:
                    last = exc
            # Pages a step left charged here (page cache of a removed workspace) can
            # keep a smaller limit from fitting: reclaim them, then try once more.
            if attempt == 0:
                self._reclaim()
        assert last is not None
        raise last

    def avoid_swap(self) -> None:
        """Without swap accounting (no memsw / swap.max file) the limit caps memory only:
        then tell the kernel not to swap this cgroup's pages out (v1 `swappiness`)."""
        if not (self.path / self.layout.swap).exists():
            with contextlib.suppress(OSError):
                (self.path / "memory.swappiness").write_text("0")

    def _reclaim(self) -> None:
        for name, value in (("memory.force_empty", "0"), ("memory.reclaim", "1G")):
            with contextlib.suppress(OSError):
                (self.path / name).write_text(value)

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def events(self) -> MemoryEvents:
        """The counters of the step so far (`limit` starts a step's: v1 peaks reset)."""
        events = self.path / self.layout.events
        if not self.layout.peak:
            return MemoryEvents(_counter(events, "oom_kill"), _counter(events, "oom"))
        # v1 counts no "limit reached" (its failcnt stays 0 on an OOM kill): a peak at
        # the limit, less the kernel's charging batch, says it.
        limit = _number(self.path / self.layout.limit)
        peak = max(_number(self.path / name) for name in self._peaks())
        return MemoryEvents(_counter(events, "oom_kill"), int(peak >= limit - limit // 32))

    def _peaks(self) -> list[str]:
        return [name for name in self.layout.peak if (self.path / name).exists()]


def _counter(path: Path, key: str) -> int:
    """The value of a "key N" line of a cgroup file (0 when the kernel has no such line)."""
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _number(path: Path) -> int:
    return int(path.read_text().strip() or 0)


def for_steps() -> StepCgroup | None:
    """This worker process's step cgroup, or None when memory falls back to rlimits."""
    return _for_pid(os.getpid())[0]


def problem() -> str:
    """Why steps' memory is limited as address space here ("" when a cgroup limits it)."""
    return _for_pid(os.getpid())[1]


@lru_cache(maxsize=4)
def _for_pid(pid: int) -> tuple[StepCgroup | None, str]:
    # Keyed by pid: a worker forked from a process that had one makes its own.
    cgroup, why = _find(pid)
    if why:
        logger.warning("steps' memory is limited as address space: %s", why)
    return cgroup, why


def _find(pid: int) -> tuple[StepCgroup | None, str]:
    choice = str(settings.BUILDSITE["STEP_CGROUP"])
    if choice == "off":
        return None, "BUILDSITE_STEP_CGROUP=off"
    if os.geteuid() != 0:
        return None, "workers are not root, so they cannot manage memory cgroups"
    parent = Path(choice) if choice != "auto" else own_memory_cgroup()
    if parent is None:
        return None, "no memory cgroup controller is mounted here"
    try:
        cgroup = _make(parent, pid)
        cgroup.limit(int(settings.BUILDSITE["STEP_LIMITS"]["memory_mb"]))
        cgroup.avoid_swap()
        cgroup.events()
    except OSError as exc:
        return None, f"cannot use the memory cgroup {parent}: {exc.strerror or exc}"
    return cgroup, ""


def _make(parent: Path, pid: int) -> StepCgroup:
    if (parent / V1.limit).exists():
        layout = V1
    elif (parent / "cgroup.controllers").exists():
        layout = V2
        _delegate_memory(parent)
    else:
        raise OSError(errno.ENOENT, "not a memory cgroup directory")
    _remove_stale(parent)
    path = parent / f"{PREFIX}{_host()}-{pid}"
    path.mkdir(mode=0o755, exist_ok=True)
    return StepCgroup(path, layout)


def _delegate_memory(parent: Path) -> None:
    """cgroup v2 creates a child's memory files only when the parent hands the memory
    controller down (refused while the parent itself holds processes)."""
    if "memory" in (parent / "cgroup.subtree_control").read_text().split():
        return
    (parent / "cgroup.subtree_control").write_text("+memory")


def _host() -> str:
    """This host's name as a cgroup name part: worker containers sharing one cgroup
    directory number their pids alike, and must neither share a cgroup nor take each
    other's for stale."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "host"


def _remove_stale(parent: Path) -> None:
    """Cgroups of this host's workers that are gone (a kill -9 leaves its own behind)."""
    for child in parent.glob(f"{PREFIX}{_host()}-*"):
        pid = child.name.rpartition("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                child.rmdir()  # refused while a process is still inside


def own_memory_cgroup(
    cgroup_file: str = "/proc/self/cgroup", mountinfo: str = "/proc/self/mountinfo"
) -> Path | None:
    """The directory of this process's memory cgroup: the v1 memory hierarchy's, else the
    v2 one's."""
    try:
        memberships = Path(cgroup_file).read_text().splitlines()
        mounts = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None
    paths = {}
    for line in memberships:
        _id, controllers, path = line.split(":", 2)
        paths["v2" if controllers == "" else controllers] = path
    v1 = next((p for c, p in paths.items() if "memory" in c.split(",")), None)
    for line in mounts:
        fields = line.split()
        separator = fields.index("-")
        root, mount_point = fields[3], fields[4]
        fstype, super_options = fields[separator + 1], fields[separator + 3].split(",")
        if v1 is not None and fstype == "cgroup" and "memory" in super_options:
            return _join(mount_point, root, v1)
        if v1 is None and fstype == "cgroup2" and "v2" in paths:
            return _join(mount_point, root, paths["v2"])
    return None


def _join(mount_point: str, root: str, path: str) -> Path:
    # A container's mount shows only its own subtree: the path is relative to its root.
    relative = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    return Path(mount_point) / ("" if relative == "." else relative)
