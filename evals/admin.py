"""Read-only admin for datasets: items are written only through the services, so every
change bumps the version and is audited; the admin shows what is there."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Dataset, DatasetItem


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ItemInline(ReadOnly, admin.TabularInline):  # type: ignore[misc]  # Django is untyped
    model = DatasetItem
    fields = ["number", "added_in", "removed_in", "variables", "expect"]
    readonly_fields = fields
    extra = 0


@admin.register(Dataset)
class DatasetAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped
    list_display = ["name", "project", "version", "updated_at"]
    list_filter = ["project"]
    search_fields = ["name", "project__slug"]
    readonly_fields = ["project", "name", "description", "version", "created_at", "updated_at"]
    inlines = [ItemInline]
