from django.apps import AppConfig


class RepositoriesConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "repositories"
    verbose_name = "Repositories: sources, push webhooks and commit status"
