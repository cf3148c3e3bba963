"""Fixtures for tests that run real sandboxed steps. Without bubblewrap (or a memory
cgroup) they skip, saying why; CI sets BUILDSITE_REQUIRE_SANDBOX=1 and
BUILDSITE_REQUIRE_CGROUP=1, and there they fail instead."""

from __future__ import annotations

import os

import pytest

from builds.steps import cgroups, sandbox


def missing(reason: str, required_by: str) -> None:
    if os.environ.get(required_by) == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def sandbox_here():
    sandbox.problem.cache_clear()
    if sandbox.mode() != "bwrap":
        missing(f"steps are not sandboxed here: {sandbox.problem()}", "BUILDSITE_REQUIRE_SANDBOX")


@pytest.fixture
def sandboxed_steps(sandbox_here, inline_workers, fast_engine):
    """Builds run inline, their shell steps in bubblewrap."""


@pytest.fixture
def fresh_cgroups():
    cgroups._for_pid.cache_clear()
    yield
    cgroups._for_pid.cache_clear()


@pytest.fixture
def cgroup_here(fresh_cgroups):
    if cgroups.for_steps() is None:
        missing(f"no memory cgroup for steps here: {cgroups.problem()}", "BUILDSITE_REQUIRE_CGROUP")
    return cgroups.for_steps()
