import sys
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from builds import selectors, services
from builds.models import Build
from buildsite.errors import DomainError
from buildsite.models import Project
from tasks.states import TERMINAL


def parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--param takes key=value, got '{pair}'")
        params[key] = value
    return params


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped (Any base)
    help = "Trigger a build of PIPELINE in PROJECT; --follow shows live progress until it ends."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project")
        parser.add_argument("pipeline")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--pipeline-version", type=int, dest="pipeline_version")
        parser.add_argument("--follow", action="store_true", help="wait and show progress")
        parser.add_argument("--user", default="admin", help="who the build runs as (default admin)")

    def handle(
        self,
        *args: Any,
        project: str,
        pipeline: str,
        param: list[str],
        pipeline_version: int | None = None,
        follow: bool = False,
        user: str = "admin",
        **opts: Any,
    ) -> None:
        actor = get_user_model().objects.filter(username=user).first()
        if actor is None:
            raise CommandError(f"No user '{user}'.")
        proj = Project.objects.filter(slug=project).first()
        if proj is None:
            raise CommandError(f"No project '{project}'.")
        try:
            build = services.trigger_build(
                user=actor,
                project=proj,
                pipeline=pipeline,
                params=parse_params(param),
                version=pipeline_version,
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"build #{build.id} {build.state}")
        if not follow:
            return
        state = self._follow(build.id)
        if state != "succeeded":
            raise CommandError(f"build #{build.id} {state}")

    def _follow(self, build_id: int) -> str:
        tty = sys.stdout.isatty()
        last = ""
        while True:
            build = Build.objects.get(id=build_id)
            counts = selectors.state_counts(build=build)
            total = sum(counts.values())
            done = sum(n for s, n in counts.items() if s in TERMINAL)
            parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            line = f"build #{build_id} {build.state}: {done}/{total} done ({parts})"
            if line != last:
                self.stdout.write(
                    ("\r" + line.ljust(100)) if tty else line, ending="" if tty else "\n"
                )
                self.stdout.flush()
                last = line
            if build.finished_at is not None:
                if tty:
                    self.stdout.write("")
                for task in selectors.build_tasks(build=build):
                    if task.error:
                        self.stdout.write(f"  {task.name}: {task.state}: {task.error}")
                state: str = build.state
                return state
            time.sleep(0.3)
