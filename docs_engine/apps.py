from django.apps import AppConfig


class DocsEngineConfig(AppConfig):
    name = "docs_engine"
    verbose_name = "Documentation"

    def ready(self) -> None:
        from builds.steps import register_step

        from .steps import run_document_step

        register_step("document", run_document_step)
