"""`manage.py up` keeps DJANGO_SUPERUSER_PASSWORD from every long-running process."""

import os
import sys

import pytest

from buildsite.processes import process_env


class FakeProcess:
    def __init__(self, cmd, **kwargs):
        self.cmd, self.kwargs, self.returncode = cmd, kwargs, 0

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


@pytest.fixture
def up(monkeypatch):
    """The `up` command with its process starts recorded instead of made."""
    from builds.management.commands import up as module

    started: list[FakeProcess] = []

    def popen(cmd, **kwargs):
        started.append(FakeProcess(cmd, **kwargs))
        return started[-1]

    monkeypatch.setattr(module.subprocess, "Popen", popen)
    monkeypatch.setattr(module.signal, "signal", lambda *a: None)
    command = module.Command()
    command.started = started
    return command


def test_process_env_leaves_out_the_admin_password():
    env = process_env({"PATH": "/bin", "DJANGO_SUPERUSER_PASSWORD": "s3cret", "X": "1"})
    assert env == {"PATH": "/bin", "X": "1"}


def test_up_starts_web_and_workers_without_the_admin_password(up, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret")
    up.handle(port=8123, host="127.0.0.1")
    assert len(up.started) == 2
    for proc in up.started:
        assert "DJANGO_SUPERUSER_PASSWORD" not in proc.kwargs["env"]
        assert proc.kwargs["env"]["PATH"] == os.environ["PATH"]
    assert "DJANGO_SUPERUSER_PASSWORD" not in os.environ


def test_up_from_the_command_line_restarts_itself_without_the_password(up, monkeypatch):
    """Unsetting a variable leaves it in /proc/<pid>/environ: `up` execs itself again."""
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret")
    calls = []

    class Exec(Exception):
        pass

    def execve(path, argv, env):
        calls.append((path, argv, env))
        raise Exec

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(sys, "orig_argv", ["python3", "manage.py", "up", "--port", "8123"])
    up._called_from_command_line = True
    with pytest.raises(Exec):
        up.handle(port=8123, host="127.0.0.1")
    ((path, argv, env),) = calls
    assert path == sys.executable and argv == [sys.executable, "manage.py", "up", "--port", "8123"]
    assert "DJANGO_SUPERUSER_PASSWORD" not in env and not up.started
