"""Shell steps: one process group per step, output streamed while it runs."""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from ..cluster import STEP_MARK, die_with_parent, forget_step_group, record_step_group
from . import StepCancelled, StepContext, StepFailed

TAIL_CHARS = 4000
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
        preexec_fn=die_with_parent,  # and it dies with its worker
    )
    record = record_step_group(proc.pid, mark)
    try:
        return _follow(proc, started, timeout, on_output, should_stop, grace)
    finally:
        forget_step_group(record)


def _follow(
    proc: subprocess.Popen[bytes],
    started: float,
    timeout: float,
    on_output: Callable[[str], None],
    should_stop: Callable[[], bool],
    grace: float,
) -> ShellResult:
    tail: list[str] = []
    tail_len = 0

    def pump() -> None:
        nonlocal tail_len
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            block = os.read(fd, 65536)
            text = decoder.decode(block, final=not block)
            if text:
                on_output(text)
                tail.append(text)
                tail_len += len(text)
                while tail_len - len(tail[0]) > TAIL_CHARS and len(tail) > 1:
                    tail_len -= len(tail.pop(0))
            if not block:
                return

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = cancelled = False
    while True:
        try:
            proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if should_stop():
            cancelled = True
        elif time.monotonic() - started > timeout:
            timed_out = True
        if cancelled or timed_out:
            kill_group(proc, grace)
            break
    reader.join(timeout=5)
    return ShellResult(
        exit_code=proc.returncode,
        output_tail="".join(tail)[-TAIL_CHARS:],
        timed_out=timed_out,
        cancelled=cancelled,
        seconds=time.monotonic() - started,
    )


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
