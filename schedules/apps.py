from django.apps import AppConfig


class SchedulesConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "schedules"
    verbose_name = "Schedules: builds started by the clock"

    def ready(self) -> None:
        # The engine names no app: it calls what apps register with its upkeep.
        from builds.maintenance import register_upkeep

        from .services import fire_due_schedules

        register_upkeep("schedules", fire_due_schedules)
