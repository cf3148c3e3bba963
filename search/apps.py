from django.apps import AppConfig


class SearchConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "search"
    verbose_name = "Search: documents, task logs, prompts and prompt runs"

    def ready(self) -> None:
        # Logs are indexed by upkeep (one cluster at a time, every tick) reading the
        # event outbox, so nothing is added to the path that runs and settles tasks.
        from builds.maintenance import register_upkeep

        from . import receivers
        from .indexing import run_upkeep

        register_upkeep("search", run_upkeep)
        receivers.connect()
