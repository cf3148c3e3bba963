from django.apps import AppConfig


class BuildsiteConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "buildsite"
    verbose_name = "Buildsite: projects and access"
