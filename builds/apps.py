from django.apps import AppConfig


class BuildsConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "builds"
    verbose_name = "Builds: pipelines, runs, scheduling and cache"

    def ready(self) -> None:
        from . import monitor, pusher

        monitor.install()
        pusher.install()
        from .steps import StepKind, register_step
        from .steps.shell import run_step

        register_step(
            StepKind(
                name="run",
                keys=frozenset({"run", "name", "timeout", "env", "output"}),
                run=run_step,
            )
        )
