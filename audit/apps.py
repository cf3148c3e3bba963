from django.apps import AppConfig


class AuditConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "audit"
    verbose_name = "Audit log: who changed what"
