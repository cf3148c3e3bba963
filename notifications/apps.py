from django.apps import AppConfig


class NotificationsConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "notifications"
    verbose_name = "Notifications: webhooks, Slack and email about builds"

    def ready(self) -> None:
        # The engine names no app: upkeep (one cluster at a time, every tick) reads the
        # outbox for us, so nothing is added to the path that settles builds.
        from builds.maintenance import register_upkeep

        from .outbox import run_upkeep

        register_upkeep("notifications", run_upkeep)
