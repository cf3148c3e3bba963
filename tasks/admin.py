from django.contrib import admin
from django.http import HttpRequest

from .models import Event, Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    """Read-only: task states change only through the state machine."""

    list_display = ["id", "build", "name", "state", "attempts", "started_at", "finished_at"]
    list_filter = ["state"]
    search_fields = ["name"]
    readonly_fields = [f.name for f in Task._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = ["id", "type", "build", "task_name", "old_state", "new_state", "created_at"]
    list_filter = ["type"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False
