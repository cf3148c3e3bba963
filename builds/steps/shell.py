"""Shell steps: one process group per step, in the sandbox (`sandbox.py`), output
streamed while it runs."""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from vault.masking import Masker

from .. import trees
from ..cluster import STEP_MARK, forget_step_group, record_step_group
from . import StepCancelled, StepContext, StepFailed, cgroups, etc_copy, sandbox
from .sandbox import Limits

TAIL_CHARS = 4000
LINGER_SECONDS = 5.0  # output held open by a child after the leader ended
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class ShellResult:
    exit_code: int | None
    output_tail: str
    timed_out: bool
    cancelled: bool
    seconds: float
    log_exceeded: bool = False
    memory_exceeded: bool = False  # the kernel killed a process of it at its memory limit


def scrubbed_env(declared: dict[str, str], home: Path, tmp: Path) -> dict[str, str]:
    """Only what the pipeline declares, on top of a minimal base: the server's own
    environment (database URLs, keys) never reaches a build."""
    base = {
        "PATH": SAFE_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(tmp),
        "PYTHONUNBUFFERED": "1",
    }
    return {**base, **declared}


def _admit(gate: sandbox.Gate, cgroup: cgroups.StepCgroup, proc: subprocess.Popen[bytes]) -> None:
    """Move the held sandbox into the step's cgroup, then let it run; if it cannot be
    moved, it dies before it runs anything (closing the gate alone would let it go)."""
    try:
        gate.admit(cgroup.add)
    except OSError as exc:
        kill_group(proc, 0)
        gate.close()
        raise StepFailed(f"could not put the step in its memory cgroup: {exc}") from exc
    gate.release()


def _memory_events(cgroup: cgroups.StepCgroup | None) -> cgroups.MemoryEvents | None:
    """What the cgroup counted so far (None without one, or when it cannot be read: the
    message then names no limit, the step's result stands)."""
    if cgroup is None:
        return None
    try:
        return cgroup.events()
    except OSError:
        return None


def _etc() -> Path:
    try:
        return etc_copy.etc_dir()
    except OSError as exc:
        raise StepFailed(f"could not prepare the sandbox's /etc: {exc}") from exc


def _step_cgroup(limits: Limits) -> cgroups.StepCgroup | None:
    """The worker's step cgroup, holding this step's memory limit (None: no cgroup here,
    memory is limited as address space)."""
    cgroup = cgroups.for_steps()
    if cgroup is not None:
        try:
            cgroup.limit(limits.memory_mb)
        except OSError as exc:
            raise StepFailed(f"could not set the step's memory limit: {exc}") from exc
    return cgroup


def kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # The leader is gone; make sure its children are too.
            os.killpg(pgid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def run_shell(
    command: str,
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    on_output: Callable[[str], None],
    should_stop: Callable[[], bool],
    grace: float = 2.0,
    limits: Limits | None = None,
    sandboxed: bool = False,
    network: bool = False,
    hidden: tuple[str, ...] = (),
) -> ShellResult:
    """`hidden`: values masked in the output tail (`on_output` gets the output as it
    comes: the task log masks what it stores itself)."""
    started = time.monotonic()
    mark = uuid.uuid4().hex
    cgroup = gate = etc = None
    argv = ["/bin/sh", "-c", command]
    if sandboxed:
        assert limits is not None
        cgroup = _step_cgroup(limits)
        etc = _etc()
    before = _memory_events(cgroup)
    gate = sandbox.Gate() if cgroup else None
    try:
        if sandboxed:
            assert limits is not None
            sandboxed_argv = sandbox.wrap(
                command,
                workspace=cwd,
                network=network,
                etc=etc,
                limits=limits,
                address_space=cgroup is None,
                gate=gate,
            )
            argv = [*sandbox.as_step_user(), *sandboxed_argv]
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, STEP_MARK: mark},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: cancel kills all of it
            pass_fds=gate.child_fds() if gate else (),
        )
    except BaseException:
        if gate:
            gate.close()
        raise
    record_step_group(proc.pid, mark)
    log_limit = limits.log_mb * 1024 * 1024 if limits else 0
    try:
        if gate and cgroup:
            _admit(gate, cgroup, proc)
        output = _Output(on_output, hidden)
        result = _follow(proc, started, timeout, output, should_stop, grace, log_limit)
        after = _memory_events(cgroup)
        result.memory_exceeded = bool(before and after and after.killed_at_limit(since=before))
        return result
    finally:
        if proc.poll() is None:  # _follow raised: the step must not outlive its attempt
            kill_group(proc, 0)
        # What the step left running in the background ends with it: nothing may touch
        # the workspace while its artifacts are collected (in the sandbox, the PID
        # namespace ends with the step's shell anyway).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        forget_step_group()
        assert proc.stdout is not None
        proc.stdout.close()


class _Output:
    """The step's output as it comes: to the log at once, the last TAIL_CHARS kept,
    masked (kept from the masked stream, so cutting the tail cannot leave part of a
    value at its start)."""

    def __init__(self, on_output: Callable[[str], None], hidden: tuple[str, ...] = ()) -> None:
        self.on_output = on_output
        self.masker = Masker(hidden)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.tail: list[str] = []
        self.tail_len = 0
        self.bytes = 0

    def feed(self, block: bytes) -> None:
        self.bytes += len(block)
        text = self.decoder.decode(block, final=not block)
        if not text:
            return
        self.on_output(text)
        self._keep(self.masker.feed(text))

    def _keep(self, text: str) -> None:
        if not text:
            return
        self.tail.append(text)
        self.tail_len += len(text)
        while self.tail_len - len(self.tail[0]) > TAIL_CHARS and len(self.tail) > 1:
            self.tail_len -= len(self.tail.pop(0))

    def text(self) -> str:
        """The tail, once the output has ended."""
        self._keep(self.masker.flush())
        return "".join(self.tail)[-TAIL_CHARS:]


def _follow(
    proc: subprocess.Popen[bytes],
    started: float,
    timeout: float,
    output: _Output,
    should_stop: Callable[[], bool],
    grace: float,
    log_limit: int = 0,
) -> ShellResult:
    """Read the output and watch the clock and the stop flag in this thread (a reader
    thread per step cost more than a short step): every 0.1 s at least."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    readable = selectors.DefaultSelector()
    readable.register(fd, selectors.EVENT_READ)
    output_open, exited_at = True, 0.0
    timed_out = cancelled = log_exceeded = False
    while True:
        if output_open:
            for _ in readable.select(timeout=0.1):
                block = os.read(fd, 65536)
                output.feed(block)
                output_open = bool(block)
        elif proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
        if proc.poll() is not None:
            # The leader ended; a background child may still hold the output open.
            exited_at = exited_at or time.monotonic()
            if not output_open or time.monotonic() - exited_at > LINGER_SECONDS:
                break
            continue
        if should_stop():
            cancelled = True
        elif time.monotonic() - started > timeout:
            timed_out = True
        elif log_limit and output.bytes > log_limit:
            log_exceeded = True
        if cancelled or timed_out or log_exceeded:
            kill_group(proc, grace)
            _drain(readable, fd, output)
            break
    readable.close()
    return ShellResult(
        exit_code=proc.returncode,
        output_tail=output.text(),
        timed_out=timed_out,
        cancelled=cancelled,
        seconds=time.monotonic() - started,
        log_exceeded=log_exceeded,
    )


def _drain(readable: selectors.BaseSelector, fd: int, output: _Output) -> None:
    """What the killed group wrote before it died (at most a second's wait)."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if not readable.select(timeout=max(0.0, deadline - time.monotonic())):
            return
        block = os.read(fd, 65536)
        output.feed(block)
        if not block:
            return


def run_step(step: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    mode = sandbox.mode()
    if mode == "missing" and settings.BUILDSITE["PRODUCTION"]:
        raise StepFailed(
            "shell steps are not sandboxed here (bubblewrap is missing or cannot run): "
            "install bubblewrap, or set BUILDSITE_SANDBOX=off to run steps unsandboxed"
        )
    if mode == "missing":  # outside production: said where the build's people look
        ctx.log(f"warning: this step runs without a sandbox: {sandbox.problem()}\n")
    sandboxed = mode == "bwrap"
    if sandboxed and (unset := sandbox.limits_problem_here()):
        raise StepFailed(f"the sandbox cannot set the step's limits on this host: {unset}")
    spec = ctx.task_spec
    limits = Limits.of(spec.get("limits"))
    home = Path(sandbox.WORKDIR) if sandboxed else ctx.workspace
    declared = {
        **param_env(ctx.build.params),
        **ctx.env,
        **{k: str(v) for k, v in step.get("env", {}).items()},
        # Last: a declared secret is what its name means, whatever `env` says.
        **ctx.secrets,
    }
    env = scrubbed_env(declared, home, Path("/tmp") if sandboxed else ctx.workspace)
    timeout = min(float(step.get("timeout", ctx.timeout)), ctx.timeout)
    ctx.log(f"$ {step['run']}\n")
    result = run_shell(
        step["run"],
        cwd=ctx.workspace,
        env=env,
        timeout=timeout,
        on_output=ctx.log,
        should_stop=ctx.should_stop,
        grace=settings.BUILDSITE["KILL_GRACE_SECONDS"],
        limits=limits,
        sandboxed=sandboxed,
        network=bool(spec.get("network")),
        hidden=ctx.hidden,
    )
    outputs: dict[str, Any] = {"exit_code": result.exit_code, "stdout_tail": result.output_tail}
    if step.get("output"):
        outputs[step["output"]] = result.output_tail.strip()
    if result.cancelled:
        raise StepCancelled()
    if result.timed_out:
        raise StepFailed(f"timed out after {timeout:g}s", outputs)
    if result.log_exceeded:
        raise StepFailed(f"stopped: its output passed the log limit of {limits.log_mb} MB", outputs)
    used = _megabytes(ctx.workspace)
    if used > limits.workspace_mb:
        raise StepFailed(
            f"the workspace holds {used} MB, over the limit of {limits.workspace_mb} MB", outputs
        )
    if result.exit_code != 0:
        reason = _limit_hit(result, limits)
        raise StepFailed(f"exited with code {result.exit_code}{reason}", outputs)
    return outputs


def param_env(params: dict[str, Any]) -> dict[str, str]:
    """The build's params as BUILDSITE_PARAM_<NAME> variables: the safe way to use a
    value in a shell command ("$BUILDSITE_PARAM_VERSION"), where `{{ params.x }}` would
    paste it into the command's text."""
    env = {}
    for name, value in params.items():
        key = "BUILDSITE_PARAM_" + re.sub(r"[^A-Za-z0-9_]", "_", str(name)).upper()
        env[key] = value if isinstance(value, str) else json.dumps(value)
    return env


# Exit statuses of a shell whose command a limit's signal killed (128 + signal).
_SIGNALLED = {
    128 + signal.SIGXCPU: "cpu_seconds",
    128 + signal.SIGXFSZ: "workspace_mb",
    -signal.SIGXCPU: "cpu_seconds",
    -signal.SIGXFSZ: "workspace_mb",
}


def _limit_hit(result: ShellResult, limits: Limits) -> str:
    """Which limit the failure looks like, for the message (empty when none does)."""
    name = "memory_mb" if result.memory_exceeded else _SIGNALLED.get(result.exit_code or 0)
    tail = result.output_tail.lower()
    if name is None and ("memoryerror" in tail or "cannot allocate memory" in tail):
        name = "memory_mb"
    if name is None and ("cannot fork" in tail or "resource temporarily unavailable" in tail):
        name = "processes"
    if name is None:
        return ""
    return f" (it hit the task's limit {name}: {getattr(limits, name)})"


def _megabytes(path: Path) -> int:
    total = sum(info.st_size for _path, info in trees.entries(path))
    return total // (1024 * 1024)
