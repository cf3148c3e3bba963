from django.apps import AppConfig


class PromptsConfig(AppConfig):
    name = "prompts"
    verbose_name = "Prompt library"

    def ready(self) -> None:
        from builds.sections import register_build_section
        from builds.steps import StepKind, register_step

        from .build_page import build_section
        from .steps import check_prompt_step, run_prompt_step

        register_step(
            StepKind(
                name="prompt",
                keys=frozenset(
                    {"prompt", "name", "vars", "output", "cache", "timeout", "provider", "model"}
                ),
                run=run_prompt_step,
                # Model calls claim the `llm` pool, so a pool can cap concurrent calls.
                claims={"llm": 1},
                check=check_prompt_step,
            )
        )
        register_build_section(build_section)
