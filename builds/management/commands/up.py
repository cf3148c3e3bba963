"""Start the whole embedded deployment: daphne (web) and the django-q2 cluster."""

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from buildsite.processes import SETUP_ONLY_VARIABLES, process_commands, process_env


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped (Any base)
    help = "Start web (daphne) and workers (qcluster); Ctrl-C stops them all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))

    def handle(self, *args: Any, port: int, host: str, **options: Any) -> None:
        self._drop_setup_only_variables()
        commands = process_commands(host=host, port=port)
        procs = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, env=process_env())
            for name, cmd in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(f"Buildsite is up: http://{host}:{port}/  (Ctrl-C stops)")
        )
        self.stdout.flush()
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping")
                        stopping = True
                time.sleep(0.3)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 9  # qcluster stops within 8 s of SIGTERM
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            self.stdout.write("Stopped.")

    def _drop_setup_only_variables(self) -> None:
        """`make run` hands DJANGO_SUPERUSER_PASSWORD to ensure_admin and then to us as
        well: neither this process nor web and workers keep it. Unsetting a variable
        leaves it in /proc/<pid>/environ, so from the command line `up` starts itself
        again without it (same pid, same arguments)."""
        found = [name for name in SETUP_ONLY_VARIABLES if name in os.environ]
        if not found:
            return
        for name in found:
            os.environ.pop(name)
        if getattr(self, "_called_from_command_line", False):
            self.stderr.write(f"{', '.join(found)}: only for ensure_admin; restarting without it")
            self.stderr.flush()
            self.stdout.flush()
            os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], process_env())
