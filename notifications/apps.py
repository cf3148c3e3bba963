from django.apps import AppConfig


class NotificationsConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "notifications"
    verbose_name = "Notifications: webhooks, Slack and email about builds"
