from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from buildsite.errors import InvalidInput

from .models import Schedule
from .services import check_schedule, create_schedule, delete_schedule, set_paused

WHAT_BUILDS = ["project", "pipeline", "repository", "cron", "timezone", "params", "ref"]


class ScheduleForm(forms.ModelForm):  # type: ignore[misc]  # Django is untyped (Any base)
    class Meta:
        model = Schedule
        fields = [*WHAT_BUILDS, "paused"]

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean()
        if self.instance.pk or self.errors:
            return data  # a saved schedule changes only `paused`
        project, pipeline, repository = data["project"], data["pipeline"], data["repository"]
        for chosen, field in ((pipeline, "pipeline"), (repository, "repository")):
            if chosen is not None and chosen.project_id != project.id:
                self.add_error(field, f"This {field} belongs to another project.")
        if self.errors:
            return data
        try:
            check_schedule(
                project=project,
                pipeline=pipeline.name if pipeline else None,
                repository=repository.name if repository else None,
                cron=data["cron"],
                timezone=data["timezone"],
                params=data["params"],
                ref=data["ref"],
            )
        except InvalidInput as exc:
            for problem in exc.problems:
                where = problem.where if problem.where in self.fields else None
                self.add_error(where, problem.message)
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    """Writes through the services the API uses: the same checks, and `next_run`
    computed the one way."""

    form = ScheduleForm
    list_display = ["id", "project", "target", "cron", "timezone", "paused", "next_run", "last_run"]
    list_filter = ["project", "paused"]
    readonly_fields = ["next_run", "last_run", "last_build", "last_error", "created_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> list[str]:
        return [*WHAT_BUILDS, *self.readonly_fields] if obj else self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: Schedule, form: ScheduleForm, change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            set_paused(user=None, schedule=Schedule.objects.get(pk=obj.pk), paused=data["paused"])
            return
        saved = create_schedule(
            user=None,
            project=data["project"],
            pipeline=data["pipeline"].name if data["pipeline"] else None,
            repository=data["repository"].name if data["repository"] else None,
            cron=data["cron"],
            timezone=data["timezone"],
            params=data["params"],
            ref=data["ref"],
        )
        if data["paused"]:
            saved = set_paused(user=None, schedule=saved, paused=True)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        delete_schedule(user=None, schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            delete_schedule(user=None, schedule=schedule)
