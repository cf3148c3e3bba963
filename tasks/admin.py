from django.contrib import admin

from .models import Event, Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Read-only: task states change only through the state machine."""

    list_display = ["id", "build", "name", "state", "attempts", "started_at", "finished_at"]
    list_filter = ["state"]
    search_fields = ["name"]
    readonly_fields = [f.name for f in Task._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "build", "task_name", "old_state", "new_state", "created_at"]
    list_filter = ["type"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
