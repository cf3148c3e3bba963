from django.apps import AppConfig


class TasksConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "tasks"
    verbose_name = "Tasks: state machine and events"
