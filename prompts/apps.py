from django.apps import AppConfig


class PromptsConfig(AppConfig):
    name = "prompts"
    verbose_name = "Prompt library"

    def ready(self) -> None:
        from builds.steps import register_step

        from .steps import run_prompt_step

        register_step("prompt", run_prompt_step)
