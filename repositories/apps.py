from django.apps import AppConfig


class RepositoriesConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "repositories"
    verbose_name = "Repositories: sources, push webhooks and commit status"

    def ready(self) -> None:
        from builds.signals import build_state_changed

        from .status import on_build_state_changed

        build_state_changed.connect(on_build_state_changed, dispatch_uid="repository-status")
