"""A step's `memory_mb` limits resident memory through a cgroup of the worker's own, where
the worker may make one (root with a memory controller, as CI runs); elsewhere it falls
back to an address-space rlimit. The real-cgroup tests skip, saying why, without one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builds.selectors import task_log
from builds.steps import cgroups, sandbox
from tasks.models import Task
from tests.factories import make_pipeline, run_build, task_states


def _errors(project, definition: str) -> tuple[dict[str, str], dict[str, str]]:
    make_pipeline(project, definition)
    build = run_build(project)
    errors = {t.name: t.error for t in Task.objects.filter(build=build)}
    logs = {name: task_log(build=build, name=name)[-300:] for name in errors}
    return task_states(build), {name: f"{errors[name]} | {logs[name]}" for name in errors}


def test_memory_is_resident_memory_not_address_space(project, sandboxed_steps, cgroup_here):
    """Reserving address space costs nothing (runtimes reserve gigabytes up front); what
    a step fills, on its heap or in its /tmp, counts. Under the address-space rlimit
    `reserves` failed and `tmpfs` passed."""
    reserve = "import mmap; m = mmap.mmap(-1, 2 * 1024 ** 3); m[:1] = b'x'; print('reserved')"
    definition = f"""
tasks:
  reserves:
    limits: {{memory_mb: 64}}
    steps: [{{run: "python3 -c \\"{reserve}\\""}}]
  heap:
    limits: {{memory_mb: 64}}
    steps: [{{run: "python3 -c \\"b = b'x' * (256 * 1024 * 1024)\\""}}]
  tmpfs:
    limits: {{memory_mb: 64}}
    steps: [{{run: "head -c 200M /dev/zero > /tmp/big"}}]
  roomy:
    limits: {{memory_mb: 512}}
    steps: [{{run: "python3 -c \\"b = b'x' * (256 * 1024 * 1024)\\""}}]
"""
    states, errors = _errors(project, definition)
    assert states == {
        "reserves": "succeeded",
        "heap": "failed",
        "tmpfs": "failed",
        "roomy": "succeeded",
    }, errors
    assert "memory_mb: 64" in errors["heap"]
    assert "memory_mb: 64" in errors["tmpfs"]


def test_without_a_cgroup_memory_is_limited_as_address_space(
    project, sandboxed_steps, fresh_cgroups, settings
):
    settings.BUILDSITE = {**settings.BUILDSITE, "STEP_CGROUP": "off"}
    assert cgroups.for_steps() is None
    assert cgroups.problem() == "BUILDSITE_STEP_CGROUP=off"
    definition = """
tasks:
  heap:
    limits: {memory_mb: 64}
    steps: [{run: "python3 -c \\"b = b'x' * (256 * 1024 * 1024)\\""}]
"""
    states, errors = _errors(project, definition)
    assert states == {"heap": "failed"}
    assert "memory_mb: 64" in errors["heap"]


def test_a_limit_can_grow_and_shrink_between_steps(cgroup_here):
    """v1 keeps memory <= memory + swap at every write, so the order of the two writes
    depends on the direction."""
    layout = cgroup_here.layout
    for memory_mb in (64, 4096, 32, 64):
        cgroup_here.limit(memory_mb)
        assert int((cgroup_here.path / layout.limit).read_text()) == memory_mb * 1024 * 1024
        swap = cgroup_here.path / layout.swap
        if layout.swap_is_total and swap.exists():
            assert int(swap.read_text()) == memory_mb * 1024 * 1024


def test_the_cgroups_of_gone_workers_are_removed(cgroup_here):
    """Only this host's (worker containers sharing a directory number pids alike), only
    of processes that are gone."""
    parent = cgroup_here.path.parent
    host = cgroups._host()
    gone = parent / f"{cgroups.PREFIX}{host}-{2**22 + 17}"  # above any pid_max
    live = parent / f"{cgroups.PREFIX}{host}-1"  # pid 1 is always there
    other_host = parent / f"{cgroups.PREFIX}elsewhere-{2**22 + 17}"
    made = [gone, live, other_host]
    for path in made:
        path.mkdir()
    try:
        again = cgroups._make(parent, os.getpid())
        assert not gone.exists()
        assert live.exists() and other_host.exists()
        assert again.path == cgroup_here.path and again.path.exists()
    finally:
        for path in made:
            if path.exists():
                path.rmdir()


def test_a_cgroup_removed_under_the_worker_is_made_again(cgroup_here):
    cgroup_here.path.rmdir()
    cgroup_here.limit(128)
    assert int((cgroup_here.path / cgroup_here.layout.limit).read_text()) == 128 * 1024 * 1024


def test_a_step_that_cannot_be_put_in_its_cgroup_never_runs(
    project, sandboxed_steps, cgroup_here, monkeypatch
):
    """The gate holds the sandbox until it is inside: when moving it fails, it is killed
    there (closing the gate alone would have let it run unlimited)."""

    def refuse(self, pid):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cgroups.StepCgroup, "add", refuse)
    states, errors = _errors(project, "tasks:\n  t: {steps: [{run: 'echo R$((1 + 1))AN'}]}\n")
    assert states == {"t": "failed"}
    assert "could not put the step in its memory cgroup" in errors["t"]
    assert "R2AN" not in errors["t"]


def test_the_gate_lets_a_failing_bwrap_say_why(project, sandboxed_steps, cgroup_here, monkeypatch):
    """bwrap failing before it starts the sandbox: its own message is the step's error,
    and no descriptor of the gate is left open."""
    real_wrap = sandbox.wrap
    monkeypatch.setattr(
        sandbox,
        "wrap",
        lambda *a, **k: [*real_wrap(*a, **k)[:1], "--no-such-option", *real_wrap(*a, **k)[1:]],
    )
    open_before = len(os.listdir("/proc/self/fd"))
    states, errors = _errors(project, "tasks:\n  t: {steps: [{run: 'true'}]}\n")
    assert states == {"t": "failed"}
    assert "no-such-option" in errors["t"] and "memory cgroup" not in errors["t"]
    assert len(os.listdir("/proc/self/fd")) <= open_before


def _proc_files(tmp_path: Path, cgroup: str, mountinfo: str) -> tuple[str, str]:
    (tmp_path / "cgroup").write_text(cgroup)
    (tmp_path / "mountinfo").write_text(mountinfo)
    return str(tmp_path / "cgroup"), str(tmp_path / "mountinfo")


V1_MOUNTS = (
    "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 25 0:29 {root} /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
)


@pytest.mark.parametrize(
    ("cgroup", "mountinfo", "expected"),
    [
        # cgroup v1, the whole hierarchy mounted (a VM, or a container sharing it)
        (
            "5:cpu:/\n4:memory:/process_api/6cbc\n0::/\n",
            V1_MOUNTS.format(root="/"),
            "/sys/fs/cgroup/memory/process_api/6cbc",
        ),
        # cgroup v1 in a container: only its own subtree is mounted
        (
            "4:memory:/docker/abc\n",
            V1_MOUNTS.format(root="/docker/abc"),
            "/sys/fs/cgroup/memory",
        ),
        # cgroup v2 only
        (
            "0::/system.slice/buildsite-worker.service\n",
            "28 24 0:25 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            "/sys/fs/cgroup/system.slice/buildsite-worker.service",
        ),
        # no memory controller at all
        ("5:cpu:/\n", V1_MOUNTS.format(root="/").splitlines()[0] + "\n", None),
    ],
)
def test_a_worker_finds_its_own_memory_cgroup(tmp_path, cgroup, mountinfo, expected):
    found = cgroups.own_memory_cgroup(*_proc_files(tmp_path, cgroup, mountinfo))
    assert found == (Path(expected) if expected else None)


def test_an_unprivileged_worker_falls_back_saying_why(fresh_cgroups, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cgroups.for_steps() is None
    assert "not root" in cgroups.problem()
