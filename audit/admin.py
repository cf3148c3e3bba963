"""The audit log in the admin: read-only. Entries are written only by
`services.record_action`, in the transaction of the change they record; an entry that
could be edited or removed here would prove nothing."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = ["time", "project", "actor_name", "action", "target", "detail"]
    list_filter = ["action", "project"]
    search_fields = ["actor_name", "target"]
    list_select_related = ["project"]
    date_hierarchy = "time"
    readonly_fields = ["time", "project", "actor", "actor_name", "action", "target", "detail"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
