from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from buildsite.errors import DomainError
from tasks.states import BuildState

from .models import Build, CacheEntry, Pipeline, PipelineVersion, ResourcePool
from .services import cancel_build, check_pool, purge_cache_entries, set_pool


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class VersionInline(ReadOnlyMixin, admin.TabularInline):  # type: ignore[misc]  # Django is untyped (Any base)
    model = PipelineVersion
    extra = 0
    fields = ["number", "created_by", "created_at", "definition"]
    readonly_fields = fields
    show_change_link = True


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = ["name", "project", "created_at"]
    list_filter = ["project"]
    inlines = [VersionInline]


@admin.register(PipelineVersion)
class PipelineVersionAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    """Versions are immutable: saved through the API or UI, never edited here."""

    list_display = ["pipeline", "number", "created_by", "created_at"]
    readonly_fields = ["pipeline", "number", "definition", "spec", "created_by", "created_at"]


@admin.register(Build)
class BuildAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = [
        "id",
        "project",
        "pipeline_version",
        "state",
        "triggered_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["state", "project"]
    readonly_fields = [f.name for f in Build._meta.fields]
    actions = ["cancel_selected"]

    @admin.action(description="Cancel selected builds")  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Build]) -> None:
        done = 0
        for build in queryset.filter(state__in=[BuildState.QUEUED, BuildState.RUNNING]):
            cancel_build(user=request.user, build=build)
            done += 1
        self.message_user(request, f"Cancelled {done} build(s).", messages.SUCCESS)


class PoolForm(forms.ModelForm):  # type: ignore[misc]  # Django is untyped (Any base)
    class Meta:
        model = ResourcePool
        fields = ["project", "name", "capacity"]

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean()
        if not self.errors:
            pool = self.instance
            try:
                check_pool(
                    project=pool.project if pool.pk else data["project"],
                    name=pool.name if pool.pk else data["name"],
                    capacity=data["capacity"],
                )
            except DomainError as exc:
                raise ValidationError(exc.message) from exc
        return data


@admin.register(ResourcePool)
class ResourcePoolAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    """Writes through `set_pool`, the service the API uses (name rule, shrink check)."""

    form = PoolForm
    list_display = ["name", "project", "capacity", "busy_seconds"]
    list_filter = ["project"]
    readonly_fields = ["busy_seconds"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: ResourcePool | None = None
    ) -> list[str]:
        # A pool is known by its name: renaming would change every claim's meaning.
        return [*self.readonly_fields, "project", "name"] if obj else self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: ResourcePool, form: PoolForm, change: bool
    ) -> None:
        data = form.cleaned_data
        saved = set_pool(
            user=None,
            project=obj.project if change else data["project"],
            name=obj.name if change else data["name"],
            capacity=data["capacity"],
            actor=request.user,
        )
        obj.pk = saved.pk


@admin.register(CacheEntry)
class CacheEntryAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = [
        "task_name",
        "project",
        "key",
        "size_bytes",
        "hits",
        "created_at",
        "last_used_at",
    ]
    list_filter = ["project"]
    search_fields = ["task_name", "key"]
    actions = ["purge_selected"]

    @admin.action(description="Purge selected cache entries")  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
    def purge_selected(self, request: HttpRequest, queryset: QuerySet[CacheEntry]) -> None:
        count = self.delete_queryset(request, queryset)
        self.message_user(request, f"Purged {count} cache entr(y/ies).", messages.SUCCESS)

    # The admin's own delete goes the same way, so every purge is in the audit log.
    def delete_model(self, request: HttpRequest, obj: CacheEntry) -> None:
        self.delete_queryset(request, CacheEntry.objects.filter(id=obj.id))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CacheEntry]) -> int:
        by_project: dict[Any, list[str]] = {}
        for entry in queryset.select_related("project"):
            by_project.setdefault(entry.project, []).append(entry.key)
        with transaction.atomic():
            return sum(
                purge_cache_entries(actor=request.user, project=project, keys=keys)
                for project, keys in by_project.items()
            )

    def has_delete_permission(self, request: HttpRequest, obj: CacheEntry | None = None) -> bool:
        return True
