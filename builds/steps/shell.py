"""Shell steps: one process group per step, output streamed while it runs."""

from __future__ import annotations

import codecs
import contextlib
import os
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

from ..cluster import STEP_MARK, forget_step_group, record_step_group
from . import StepCancelled, StepContext, StepFailed

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


def scrubbed_env(declared: dict[str, str], workspace: Path) -> dict[str, str]:
    """Only what the pipeline declares, on top of a minimal base: the server's own
    environment (database URLs, keys) never reaches a build."""
    base = {
        "PATH": SAFE_PATH,
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(workspace),
        "PYTHONUNBUFFERED": "1",
    }
    return {**base, **declared}


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
) -> ShellResult:
    started = time.monotonic()
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env={**env, STEP_MARK: mark},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: cancel kills all of it
    )
    record_step_group(proc.pid, mark)
    try:
        return _follow(proc, started, timeout, on_output, should_stop, grace)
    finally:
        if proc.poll() is None:  # _follow raised: the step must not outlive its attempt
            kill_group(proc, 0)
        forget_step_group()
        assert proc.stdout is not None
        proc.stdout.close()


class _Output:
    """The step's output as it comes: to the log at once, the last TAIL_CHARS kept."""

    def __init__(self, on_output: Callable[[str], None]) -> None:
        self.on_output = on_output
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.tail: list[str] = []
        self.tail_len = 0

    def feed(self, block: bytes) -> None:
        text = self.decoder.decode(block, final=not block)
        if not text:
            return
        self.on_output(text)
        self.tail.append(text)
        self.tail_len += len(text)
        while self.tail_len - len(self.tail[0]) > TAIL_CHARS and len(self.tail) > 1:
            self.tail_len -= len(self.tail.pop(0))

    def text(self) -> str:
        return "".join(self.tail)[-TAIL_CHARS:]


def _follow(
    proc: subprocess.Popen[bytes],
    started: float,
    timeout: float,
    on_output: Callable[[str], None],
    should_stop: Callable[[], bool],
    grace: float,
) -> ShellResult:
    """Read the output and watch the clock and the stop flag in this thread (a reader
    thread per step cost more than a short step): every 0.1 s at least."""
    assert proc.stdout is not None
    output = _Output(on_output)
    fd = proc.stdout.fileno()
    readable = selectors.DefaultSelector()
    readable.register(fd, selectors.EVENT_READ)
    output_open, exited_at = True, 0.0
    timed_out = cancelled = False
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
        if cancelled or timed_out:
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
    env = scrubbed_env(
        {**ctx.env, **{k: str(v) for k, v in step.get("env", {}).items()}}, ctx.workspace
    )
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
    )
    outputs: dict[str, Any] = {"exit_code": result.exit_code, "stdout_tail": result.output_tail}
    if step.get("output"):
        outputs[step["output"]] = result.output_tail.strip()
    if result.cancelled:
        raise StepCancelled()
    if result.timed_out:
        raise StepFailed(f"timed out after {timeout:g}s", outputs)
    if result.exit_code != 0:
        raise StepFailed(f"exited with code {result.exit_code}", outputs)
    return outputs
