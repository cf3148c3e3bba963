from django.apps import AppConfig


class BuildsiteConfig(AppConfig):
    name = "buildsite"
    verbose_name = "Buildsite: projects and access"
