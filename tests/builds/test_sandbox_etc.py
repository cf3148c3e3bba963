"""A step's /etc: one mount of a copy of the allowed entries (a bind per entry cost ~3 ms
a step), which follows the host's /etc when that changes."""

from __future__ import annotations

import os
from pathlib import Path

from builds.selectors import task_log
from builds.steps import sandbox
from builds.steps.etc_copy import EtcCopy
from tests.factories import make_pipeline, run_build, task_states


def test_a_step_sees_only_the_allowed_part_of_etc(project, sandboxed_steps):
    step = (
        "cat /etc/passwd; ls /etc; "
        "test -r /etc/ld.so.cache && echo loader-ok; "
        "test -e /etc/os-release || echo os-release-hidden; "
        "test -e /etc/shadow || echo shadow-hidden; "
        "touch /etc/evil 2>/dev/null || echo read-only"
    )
    make_pipeline(project, f"tasks:\n  etc: {{steps: [{{run: {step!r}}}]}}\n")
    build = run_build(project)
    log = task_log(build=build, name="etc")
    assert task_states(build) == {"etc": "succeeded"}, log
    for word in ("loader-ok", "os-release-hidden", "shadow-hidden", "read-only"):
        assert word in log
    assert "nobody:x:65534" in log and "\nroot:x:0:0" in log
    assert "daemon:" not in log  # the host's own users stay private


def _etc(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    (etc / "ssl" / "certs").mkdir(parents=True)
    (etc / "ssl" / "certs" / "ca.pem").write_text("CERT-1")
    (etc / "ssl" / "certs" / "abcd.0").symlink_to("ca.pem")
    (etc / "ssl" / "private").mkdir(mode=0o700)
    (etc / "ssl" / "private" / "key.pem").write_text("PRIVATE")
    (etc / "ssl" / "private").chmod(0o700)
    (tmp_path / "elsewhere.types").write_text("text/plain txt")
    (etc / "mime.types").symlink_to(tmp_path / "elsewhere.types")
    (etc / "os-release").write_text("not allowed")
    for path in [etc, *etc.rglob("*"), tmp_path / "elsewhere.types"]:  # as /etc is (umask 077 here)
        if not path.is_symlink() and path.name != "private":
            path.chmod(0o755 if path.is_dir() else 0o644)
    return etc


def test_the_copy_holds_what_a_step_may_read(tmp_path, settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "WORKSPACE_DIR": tmp_path / "data" / "ws"}
    copy = EtcCopy(_etc(tmp_path)).current()
    assert (copy / "ssl" / "certs" / "ca.pem").read_text() == "CERT-1"
    assert os.readlink(copy / "ssl" / "certs" / "abcd.0") == "ca.pem"  # links inside: as they are
    assert (copy / "mime.types").read_text() == "text/plain txt"  # an allowed link: followed
    assert not (copy / "ssl" / "private").exists()  # the step user could not read it
    assert not (copy / "os-release").exists()
    assert "nobody" in (copy / "passwd").read_text()
    assert (copy / "ssl" / "certs" / "ca.pem").stat().st_mode & 0o777 == 0o644


def test_the_copy_follows_etc_and_keeps_what_a_worker_still_holds(tmp_path, settings):
    settings.BUILDSITE = {**settings.BUILDSITE, "WORKSPACE_DIR": tmp_path / "data" / "ws"}
    etc = _etc(tmp_path)
    running, other = EtcCopy(etc), EtcCopy(etc)
    first = running.current()
    assert other.current() == first  # the host's workers share a copy
    (etc / "ssl" / "certs" / "new.pem").write_text("CERT-2, a new certificate")
    (etc / "ssl" / "certs" / "new.pem").chmod(0o644)
    assert other.current() == first  # looked at again only after CHECK_SECONDS
    other.checked_at -= EtcCopy.CHECK_SECONDS
    second = other.current()
    assert (second / "ssl" / "certs" / "new.pem").read_text() == "CERT-2, a new certificate"
    # `running` is in a step (however long): the copy it holds stays.
    assert first.exists()
    (etc / "ssl" / "certs" / "new.pem").write_text("CERT-3")
    running.checked_at -= EtcCopy.CHECK_SECONDS
    third = running.current()  # between steps: it lets the first go, which goes
    assert not first.exists() and second.exists() and third.exists()


def test_etc_changing_during_the_walk_is_not_an_error(tmp_path, settings, monkeypatch):
    settings.BUILDSITE = {**settings.BUILDSITE, "WORKSPACE_DIR": tmp_path / "data" / "ws"}
    etc = _etc(tmp_path)
    real_lstat = Path.lstat

    def vanishing(path):
        if path.name == "ca.pem":
            raise FileNotFoundError(2, "removed meanwhile", str(path))
        return real_lstat(path)

    monkeypatch.setattr(Path, "lstat", vanishing)
    copy = EtcCopy(etc).current()
    assert not (copy / "ssl" / "certs" / "ca.pem").exists()
    assert (copy / "passwd").exists()


def test_the_probe_does_not_depend_on_the_etc_copy(sandbox_here, monkeypatch):
    """A failure to copy /etc fails steps saying so; it must never be remembered as "no
    sandbox here" (steps would then run unsandboxed outside production)."""
    sandbox.problem.cache_clear()

    def broken(self):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(EtcCopy, "current", broken)
    try:
        assert sandbox.problem() == ""
    finally:
        sandbox.problem.cache_clear()


def _probe_when_all_are_ready(barrier, results):
    sandbox.problem.cache_clear()
    barrier.wait()
    results.put(sandbox.problem())


def test_workers_that_start_together_all_find_the_sandbox(sandbox_here):
    """The workers of a cluster probe at the same moment. With one probe directory for
    all, one's clean-up pulled it from under another's bwrap, and that worker ran every
    step unsandboxed for its life (outside production; in production it failed them)."""
    import multiprocessing

    forked = multiprocessing.get_context("fork")
    for _ in range(3):
        barrier, results = forked.Barrier(6), forked.Queue()
        workers = [
            forked.Process(target=_probe_when_all_are_ready, args=(barrier, results))
            for _ in range(6)
        ]
        for worker in workers:
            worker.start()
        found = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
        assert found == [""] * 6
