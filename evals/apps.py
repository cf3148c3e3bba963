from django.apps import AppConfig


class EvalsConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "evals"
    verbose_name = "Datasets and evaluations"
