from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "builds"
    verbose_name = "Builds: pipelines, runs, scheduling and cache"

    def ready(self) -> None:
        from .monitor import install

        install()
        from .steps import register_step
        from .steps.shell import run_step

        register_step("run", run_step)
