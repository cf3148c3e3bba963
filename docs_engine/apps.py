from django.apps import AppConfig


class DocsEngineConfig(AppConfig):
    name = "docs_engine"
    verbose_name = "Documentation"

    def ready(self) -> None:
        from builds.sections import register_build_section
        from builds.steps import StepKind, register_step

        from .build_page import build_section
        from .steps import run_document_step

        register_step(
            StepKind(
                name="document",
                keys=frozenset(
                    {"document", "name", "body", "title", "message", "publish", "tags", "snapshot"}
                ),
                run=run_document_step,
            )
        )
        register_build_section(build_section)
