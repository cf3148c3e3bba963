from django.apps import AppConfig


class EvalsConfig(AppConfig):  # type: ignore[misc]  # Django is untyped (Any base)
    name = "evals"
    verbose_name = "Datasets and evaluations"

    def ready(self) -> None:
        from builds.steps import StepKind, register_step
        from prompts.gates import register_label_check
        from prompts.sections import register_prompt_section

        from .services import check_label_move
        from .steps import (
            check_assert_step,
            check_evaluate_step,
            run_assert_step,
            run_evaluate_step,
        )
        from .views import prompt_section

        # Judging an answer runs no model unless an assertion is `graded_by`, whose
        # judge call happens in the same task, under the task's claims (prompt: llm).
        register_step(
            StepKind(
                name="assert",
                keys=frozenset({"assert", "name", "expect"}),
                run=run_assert_step,
                check=check_assert_step,
            )
        )
        # A whole evaluation inside one task (evals.inline): its model calls claim the
        # `llm` pool as a prompt step's do.
        register_step(
            StepKind(
                name="evaluate",
                keys=frozenset(
                    {"evaluate", "name", "dataset", "min_pass_rate", "provider", "model", "timeout"}
                ),
                run=run_evaluate_step,
                claims={"llm": 1},
                check=check_evaluate_step,
            )
        )
        register_label_check(check_label_move)
        register_prompt_section(prompt_section)
