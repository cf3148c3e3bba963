from django.apps import AppConfig


class DocsEngineConfig(AppConfig):
    name = "docs_engine"
    verbose_name = "Documentation"
