"""Shell steps run in bubblewrap: each escape an editor's step might try, run as a real
step, must fail; the tools a build needs must work. CI requires the sandbox
(BUILDSITE_REQUIRE_SANDBOX=1); elsewhere these tests skip, saying why, without it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from builds.selectors import task_log
from builds.steps import sandbox
from tasks.models import Task
from tests.factories import make_pipeline, run_build, task_states

SECRET = "server-secret-4f2a"


@pytest.fixture
def sandboxed(sandboxed_steps, monkeypatch):
    monkeypatch.setenv("BUILDSITE_TEST_SERVER_SECRET", SECRET)  # in the worker's environment


@pytest.fixture
def listening_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def _run(project, definition: str):
    make_pipeline(project, definition)
    build = run_build(project)
    return build, task_states(build)


def test_a_step_cannot_reach_the_server_or_other_builds(project, sandboxed):
    data_dir = settings.DATA_DIR
    database = connection.settings_dict["NAME"]
    workspaces = settings.BUILDSITE["WORKSPACE_DIR"]
    definition = f"""
tasks:
  secret_key: {{steps: [{{run: "cat {data_dir}/secret_key"}}]}}
  database: {{steps: [{{run: "cat {database} | head -c 100"}}]}}
  workspaces: {{steps: [{{run: "ls {workspaces}"}}]}}
  environments:
    steps:
      - run: cat /proc/1/environ /proc/$PPID/environ /proc/*/environ 2>/dev/null | tr '\\0' '\\n'
  writes:
    steps:
      - run: |
          for p in /usr/evil /etc/evil /evil {data_dir}/evil /proc/evil; do
            touch "$p" 2>/dev/null && echo "WROTE $p"
          done
          true
  identity: {{steps: [{{run: "id -u; test $(id -u) -ne 0"}}]}}
"""
    build, states = _run(project, definition)
    assert states["secret_key"] == "failed"
    assert states["database"] == "failed" or "SQLite" not in task_log(build=build, name="database")
    assert states["workspaces"] == "failed"
    environments = task_log(build=build, name="environments")
    assert SECRET not in environments and "DJANGO" not in environments
    assert "WROTE /" not in task_log(build=build, name="writes")
    assert states["identity"] == "succeeded"
    assert not (data_dir / "evil").exists()


def test_the_network_is_off_unless_the_task_asks(project, sandboxed, listening_port):
    connect = f"socket.create_connection(('127.0.0.1', {listening_port}), timeout=3)"
    definition = f"""
tasks:
  offline:
    steps:
      - run: python3 -c "import socket; {connect}"
  online:
    network: true
    steps:
      - run: python3 -c "import socket; {connect}"
"""
    _, states = _run(project, definition)
    assert states == {"offline": "failed", "online": "succeeded"}


def test_the_tools_a_build_needs_work(project, sandboxed):
    definition = """
tasks:
  tools:
    steps:
      - run: |
          python3 -c 'print("py ok")'
          git init -q repo && cd repo
          git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && echo git ok
          cd ..
          tar czf a.tgz repo && tar tzf a.tgz >/dev/null && echo tar ok
          sh -c 'echo sh ok' && echo "home=$HOME tmp=$TMPDIR" && touch /tmp/scratch
    artifacts: [a.tgz]
"""
    build, states = _run(project, definition)
    log = task_log(build=build, name="tools")
    assert states == {"tools": "succeeded"}, log
    for word in ("py ok", "git ok", "tar ok", "sh ok", "home=/workspace tmp=/tmp"):
        assert word in log


@pytest.mark.parametrize(
    ("limits", "command", "message"),
    [
        ("{memory_mb: 64}", "python3 -c 'b = bytearray(256 * 1024 * 1024)'", "memory_mb: 64"),
        ("{cpu_seconds: 1}", "python3 -c 'while True: pass'", "cpu_seconds: 1"),
        ("{workspace_mb: 1}", "head -c 3000000 /dev/zero > big", "workspace_mb: 1"),
        ("{log_mb: 1}", "yes | head -c 3000000", "log limit of 1 MB"),
        ("{processes: 8}", "for i in $(seq 50); do sleep 2 & done; wait", "processes: 8"),
    ],
)
def test_a_step_over_a_limit_fails_saying_which(project, sandboxed, limits, command, message):
    definition = f"tasks:\n  t:\n    limits: {limits}\n    steps:\n      - run: {command!r}\n"
    build, states = _run(project, definition)
    assert states == {"t": "failed"}
    error = Task.objects.get(build=build).error
    assert message in error, (error, task_log(build=build, name="t")[-500:])


@pytest.fixture
def no_bubblewrap(monkeypatch):
    monkeypatch.setattr(sandbox, "problem", lambda: "bubblewrap (bwrap) is not installed")


def test_every_page_says_when_steps_are_not_sandboxed(client, user, project, no_bubblewrap):
    client.force_login(user)
    page = client.get(f"/p/{project.slug}/").content.decode()
    assert "Shell steps are not sandboxed: bubblewrap (bwrap) is not installed." in page


def test_a_step_run_without_a_sandbox_says_so_in_its_log(
    project, inline_workers, fast_engine, no_bubblewrap
):
    build, states = _run(project, "tasks:\n  t: {steps: [{run: 'echo ran'}]}\n")
    assert states == {"t": "succeeded"}
    log = task_log(build=build, name="t")
    assert "warning: this step runs without a sandbox: bubblewrap (bwrap) is not installed" in log


def test_production_refuses_to_run_steps_without_a_sandbox(
    project, inline_workers, fast_engine, settings, no_bubblewrap
):
    settings.BUILDSITE = {**settings.BUILDSITE, "PRODUCTION": True}
    build, states = _run(project, "tasks:\n  t: {steps: [{run: 'echo ran'}]}\n")
    assert states == {"t": "failed"}
    assert "BUILDSITE_SANDBOX=off" in Task.objects.get(build=build).error
    assert "\nran" not in task_log(build=build, name="t")
    settings.BUILDSITE = {**settings.BUILDSITE, "SANDBOX": "off"}  # the operator's choice
    build, states = _run(project, "tasks:\n  t: {steps: [{run: 'echo ran'}]}\n")
    assert states == {"t": "succeeded"}


def test_params_reach_steps_as_variables_and_quote_keeps_them_text(project, inline_workers):
    make_pipeline(
        project,
        """
params: {v: "1.0", "release-name": "x"}
tasks:
  t:
    steps:
      - run: |
          echo "env=$BUILDSITE_PARAM_V name=$BUILDSITE_PARAM_RELEASE_NAME"
          echo {{ params.v | quote }}
""",
    )
    build = run_build(project, params={"v": "$(id)"})
    log = task_log(build=build, name="t")
    assert "env=$(id) name=x" in log
    assert log.splitlines()[-1] == "$(id)"  # printed, not run


def _sandboxed_sleeps(marker: str) -> list[int]:
    """Host pids of processes whose command line carries `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_cancel_ends_every_process_of_a_sandboxed_step(project, sandbox_here, transactional_db):
    """The step's children live in the sandbox's PID namespace: they end with it."""
    import time

    from builds.services import cancel_build, trigger_build
    from tests.cluster import Cluster, wait_for

    marker = "299.123"  # a sleep nothing else on the host runs
    make_pipeline(
        project,
        f"tasks:\n  long:\n    steps:\n      - run: sleep {marker} & sleep {marker}; wait\n",
    )
    with Cluster(extra_env={"BUILDSITE_HEARTBEAT_SECONDS": "0.3"}):
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(lambda: len(_sandboxed_sleeps(marker)) >= 2, timeout=60, message="the step")
        started = time.monotonic()
        cancel_build(user=None, build=build)
        wait_for(lambda: not _sandboxed_sleeps(marker), timeout=5, message="its processes to end")
        assert time.monotonic() - started < 5


@pytest.mark.slow
def test_concurrent_steps_do_not_share_a_process_limit(project, sandbox_here, transactional_db):
    """Each worker's steps run as a uid of its own: two steps at once, each with 9
    processes under a limit of 12, both succeed (as one shared user they held 18)."""
    from builds.services import trigger_build
    from tests.cluster import Cluster, wait_for

    if os.geteuid() != 0:
        pytest.skip("steps run as the worker's own user when the worker is not root")
    step = "for i in 1 2 3 4 5 6 7 8; do sleep 4 & done; wait"
    make_pipeline(
        project,
        "tasks:\n"
        + "".join(
            f"  {name}:\n    limits: {{processes: 12}}\n    steps:\n      - run: {step!r}\n"
            for name in ("one", "two")
        ),
    )
    with Cluster(workers=2):
        build = trigger_build(user=None, project=project, pipeline="main")
        wait_for(
            lambda: Task.objects.filter(build=build, finished_at__isnull=False).count() == 2,
            timeout=60,
            message="both steps to end",
        )
    assert task_states(build) == {"one": "succeeded", "two": "succeeded"}, [
        task_log(build=build, name=name)[-300:] for name in ("one", "two")
    ]
    one, two = Task.objects.filter(build=build).order_by("name")
    assert max(one.started_at, two.started_at) < min(one.finished_at, two.finished_at)


def test_each_worker_process_has_a_step_uid_of_its_own(settings, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    settings.BUILDSITE = {**settings.BUILDSITE, "STEP_UID": -1, "STEP_UID_BASE": 0x7000_0000}
    monkeypatch.setattr(os, "getpid", lambda: 4_194_304)  # the largest pid_max
    assert sandbox.step_uid() == 0x7000_0000 + 4_194_304 < 2**31
    monkeypatch.setattr(os, "getpid", lambda: 1234)
    assert sandbox.step_uid() == 0x7000_0000 + 1234
    settings.BUILDSITE = {**settings.BUILDSITE, "STEP_UID": 65534}
    assert sandbox.step_uid() == 65534


def test_in_a_user_namespace_without_the_uid_steps_run_as_nobody(settings, monkeypatch, tmp_path):
    """A rootless container maps 65536 uids: the worker's own one would not exist there
    (chown fails, and the sandbox would look missing)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    settings.BUILDSITE = {**settings.BUILDSITE, "STEP_UID": -1, "STEP_UID_BASE": 0x7000_0000}
    uid_map = tmp_path / "uid_map"
    uid_map.write_text("         0     100000      65536\n")
    assert not sandbox.uid_exists(0x7000_0000 + 1234, str(uid_map))
    assert sandbox.uid_exists(65534, str(uid_map))
    uid_map.write_text("         0          0 4294967295\n")
    assert sandbox.uid_exists(0x7000_0000 + 1234, str(uid_map))
    monkeypatch.setattr(sandbox, "uid_exists", lambda uid: uid < 65536)
    assert sandbox.step_uid() == 65534


def test_memory_and_namespaces_a_step_cannot_take(project, sandboxed):
    definition = """
tasks:
  tmp: {steps: [{run: "head -c 600M /dev/zero > /tmp/big"}]}
  shm: {steps: [{run: "head -c 600M /dev/zero > /dev/shm/big"}]}
  dev: {steps: [{run: "touch /dev/evil"}]}
  userns: {steps: [{run: "unshare -Ur true"}]}
"""
    _, states = _run(project, definition)
    assert states == {"tmp": "failed", "shm": "failed", "dev": "failed", "userns": "failed"}


def test_a_tree_deeper_than_pythons_recursion_does_not_break_the_worker(project, sandboxed):
    """Cleaning up and measuring such a workspace used to raise RecursionError, leaving
    the attempt unreported and every later attempt of that worker failing."""
    deep = "for i in $(seq 2500); do mkdir d && cd d; done; echo bottom > f"
    _, states = _run(project, f"tasks:\n  deep: {{steps: [{{run: '{deep}'}}]}}\n")
    assert states == {"deep": "succeeded"}
    _, states = _run(project, "tasks:\n  next: {steps: [{run: 'echo fine'}]}\n")
    assert states == {"next": "succeeded"}
    leftovers = list(Path(settings.BUILDSITE["WORKSPACE_DIR"]).glob("*/attempt-*"))
    assert leftovers == []


def test_short_steps_one_after_another_keep_their_process_limit(project, sandboxed):
    """Set outside the sandbox, the limit counted the worker's step uid, where each ended
    step's PID namespace stays counted for up to a second: the 8th `true` in a row failed
    with "Can't fork". Set inside, it counts the step's own processes."""
    steps = "".join("      - run: 'true'\n" for _ in range(20))
    _, states = _run(project, f"tasks:\n  t:\n    limits: {{processes: 8}}\n    steps:\n{steps}")
    assert states == {"t": "succeeded"}


def test_a_step_cannot_raise_its_limits(project, sandboxed):
    raise_them = (
        "for limit in -t -f; do if ulimit -H $limit unlimited 2>/dev/null; "
        "then echo raised $limit; exit 1; fi; done; echo kept"
    )
    build, states = _run(project, f"tasks:\n  t: {{steps: [{{run: '{raise_them}'}}]}}\n")
    assert states == {"t": "succeeded"}
    assert "kept" in task_log(build=build, name="t")


def test_the_probe_reads_back_the_limits_the_shell_set():
    limits = sandbox.Limits(memory_mb=64, processes=12, cpu_seconds=7, log_mb=1, workspace_mb=2)
    held = (
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max cpu time              7                    12                   seconds\n"
        "Max file size             2097152              2097152              bytes\n"
        "Max core file size        0                    0                    bytes\n"
        "Max processes             12                   12                   processes\n"
        "Max address space         67108864             67108864             bytes\n"
    )
    assert sandbox.limits_problem(held, limits) == ""
    ignored = held.replace("Max processes             12", "Max processes             96365")
    assert sandbox.limits_problem(ignored, limits) == "the shell did not set Max processes"
    assert "Max cpu time" in sandbox.limits_problem("", limits)


def test_no_process_of_a_step_is_without_its_limits(project, sandboxed):
    """PID 1 of the step's namespace is its shell, which set the limits: bwrap's own
    reaper there had none, and a step could ptrace it (same uid) to fork past them."""
    check = 'grep -E "^Max processes +9 +9 " /proc/1/limits && echo pid1 limited'
    definition = f"tasks:\n  t:\n    limits: {{processes: 9}}\n    steps:\n      - run: '{check}'\n"
    build, states = _run(project, definition)
    assert states == {"t": "succeeded"}, task_log(build=build, name="t")[-500:]
    assert "pid1 limited" in task_log(build=build, name="t")


def test_shell_control_variables_never_reach_the_sandboxed_shell(project, sandboxed):
    """bash started as sh acts on SHELLOPTS and PS4 before the first command, so before
    the limits; they are dropped (dash, Debian's sh, ignores them anyway)."""
    definition = (
        "tasks:\n  t:\n    env: {SHELLOPTS: xtrace, PS4: '$(echo early)', KEPT: kept}\n"
        "    steps:\n      - run: 'echo \"[${SHELLOPTS-unset}][${PS4-unset}][$KEPT]\"'\n"
    )
    build, states = _run(project, definition)
    assert states == {"t": "succeeded"}
    assert "[unset][+ ][kept]" in task_log(build=build, name="t")  # dash's own PS4


def test_a_host_whose_shell_cannot_set_the_limits_fails_steps_and_keeps_the_sandbox(
    project, sandboxed, monkeypatch
):
    monkeypatch.setattr(
        sandbox, "limits_problem_here", lambda: "the shell did not set Max processes"
    )
    build, states = _run(project, "tasks:\n  t: {steps: [{run: 'echo ran'}]}\n")
    assert states == {"t": "failed"}
    assert "cannot set the step's limits" in Task.objects.get(build=build).error
    assert "ran" not in task_log(build=build, name="t").replace("echo ran", "")
    assert sandbox.mode() == "bwrap"


def test_the_probe_names_a_parent_directory_that_keeps_the_step_user_out():
    """A data dir under a private directory (mktemp -d makes 0700 ones) left every step
    unsandboxed with only bwrap's "Can't find source path … Permission denied"."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp())  # under /tmp, whose parents others can search
    try:
        root.chmod(0o755)
        closed = root / "closed"
        inner = closed / "data" / "workspaces"
        inner.mkdir(parents=True)
        inner.parent.chmod(0o711)  # the data dir, as `open_workspace_root` leaves it
        closed.chmod(0o700)
        assert sandbox.closed_ancestor(inner) == closed
        closed.chmod(0o711)
        assert sandbox.closed_ancestor(inner) is None
    finally:
        shutil.rmtree(root)
