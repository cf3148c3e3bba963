"""The /etc a sandboxed step sees: one read-only mount of a copy of what it may read."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import time
from pathlib import Path

from django.conf import settings

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


class EtcCopy:
    """The /etc steps see: a copy of the allowed entries (`ETC`) that every user may
    read, plus a passwd and group naming only root and nobody (the host's users stay
    private). One directory per content (`sandbox-etc-<digest>` in the data dir's run/),
    made once and shared by the host's workers; whether /etc changed (a package
    installed, new certificates) is looked at every `CHECK_SECONDS`.

    Each worker process holds a shared lock on the copy it uses (for as long as it uses
    it, steps included); a copy is removed only under an exclusive lock, so never while
    a step may have it mounted, however long that step runs."""

    CHECK_SECONDS = 30.0

    def __init__(self, source: Path = Path("/etc")) -> None:
        self.source = source
        self.checked_at = 0.0
        self.path: Path | None = None
        self.lock: int | None = None  # fd of `path`, holding its shared lock

    def current(self) -> Path:
        run = Path(settings.BUILDSITE["WORKSPACE_DIR"]).parent / "run"
        now = time.monotonic()
        fresh = self.path is not None and self.path.parent == run
        if fresh and now - self.checked_at < self.CHECK_SECONDS:
            assert self.path is not None
            return self.path
        for attempt in range(3):
            try:
                made = self._make(run, self._signature())
                if made != self.path:
                    self._hold(made)
                    _remove_unused(run, keep=made)
                break
            except OSError:
                # /etc changing under the walk (a package being installed), or the copy
                # removed between making and locking it: look again; at worst go on
                # with the copy in use.
                if attempt == 2 and not fresh:
                    raise
        self.checked_at = now
        assert self.path is not None
        return self.path

    def _hold(self, path: Path) -> None:
        if path == self.path:
            return
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if not (path / "passwd").exists():  # removed while we waited for the lock
                raise FileNotFoundError(errno.ENOENT, "the copy was removed", str(path))
        except BaseException:
            os.close(fd)
            raise
        if self.lock is not None:
            os.close(self.lock)  # between steps: no step of ours still uses the old one
        self.path, self.lock = path, fd

    def _signature(self) -> str:
        seen = hashlib.sha256(PASSWD.encode() + GROUP.encode())
        for name, _source, info in self._walk():
            seen.update(
                f"{name}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\0"
                f"{info.st_ctime_ns}\0{info.st_ino}\0".encode()
            )
        return seen.hexdigest()[:16]

    def _walk(self) -> list[tuple[str, Path, os.stat_result]]:
        """(name inside /etc, source, its stat) of every entry under the allowed names, in a
        fixed order; entries that vanish meanwhile are left out. An allowed name that is
        a link is followed, as a bind of it was (the sandbox may not hold its target);
        links further down are kept as links."""
        found: list[tuple[str, Path, os.stat_result]] = []
        todo: list[tuple[str, Path, os.stat_result]] = []
        for name in ETC:
            with contextlib.suppress(FileNotFoundError):
                source = (self.source / name).resolve(strict=True)
                todo.append((name, source, source.lstat()))
        todo.reverse()
        while todo:
            name, path, info = todo.pop()
            found.append((name, path, info))
            if stat.S_ISDIR(info.st_mode) and _readable_by_all(info):
                with contextlib.suppress(FileNotFoundError):
                    for child in sorted(path.iterdir(), reverse=True):
                        with contextlib.suppress(FileNotFoundError):
                            todo.append((f"{name}/{child.name}", child, child.lstat()))
        return found

    def _make(self, run: Path, signature: str) -> Path:
        final = run / f"sandbox-etc-{signature}"
        if final.is_dir():
            return final
        run.mkdir(parents=True, exist_ok=True)
        run.chmod(0o711)
        building = run / f".sandbox-etc-{signature}.{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(mode=0o755)
        building.chmod(0o755)
        for name, path, info in self._walk():
            target = building / name
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(path), target)
            elif not _readable_by_all(info):
                continue  # what the step user could not read before either (ssl/private)
            elif stat.S_ISDIR(info.st_mode):
                target.mkdir(mode=0o755)
                target.chmod(0o755)
            elif stat.S_ISREG(info.st_mode):
                _copy_public_file(path, target)
        # Empty files where a task with network binds the host's own (a read-only /etc
        # cannot have its mount points made at start).
        placeholders = [(name, "") for name in NETWORK_ETC]
        for name, text in (("passwd", PASSWD), ("group", GROUP), *placeholders):
            (building / name).write_text(text)
            (building / name).chmod(0o644)
        try:
            building.rename(final)
        except OSError:  # another worker made the same copy first
            shutil.rmtree(building, ignore_errors=True)
        return final


def _copy_public_file(source: Path, target: Path) -> None:
    """Copy a file every user may read, as 0644; not through a link put in its place
    since it was looked at."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as reading:
            info = os.fstat(reading.fileno())
            if not stat.S_ISREG(info.st_mode) or not _readable_by_all(info):
                return
            with target.open("wb") as writing:
                shutil.copyfileobj(reading, writing)
        target.chmod(0o644)


def _remove_unused(run: Path, *, keep: Path) -> None:
    """Copies no worker holds (a running step's worker holds its own), half-made copies
    of workers that died, and the single copy of earlier releases."""
    for path in run.glob("sandbox-etc-*"):
        if path == keep:
            continue
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: in use
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
    for path in run.glob(".sandbox-etc-*.*"):
        pid = path.suffix.lstrip(".")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(run / "sandbox-etc", ignore_errors=True)


def _readable_by_all(info: os.stat_result) -> bool:
    wanted = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(info.st_mode) else 0)
    return info.st_mode & wanted == wanted


_ETC = EtcCopy()


def etc_dir() -> Path:
    """The directory to bind as a step's /etc (this worker holds it while it uses it)."""
    return _ETC.current()
