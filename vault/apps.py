from django.apps import AppConfig


class VaultConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "vault"
    verbose_name = "Project secrets"
