from django.contrib import admin
from django.http import HttpRequest

from .models import ApiToken, Membership, Project


class MembershipInline(admin.TabularInline):  # type: ignore[misc]  # Django is untyped (Any base)
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = ["project", "user", "role"]
    list_filter = ["role", "project"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    """Tokens are created with `manage.py create_token`; the admin can only revoke."""

    list_display = ["prefix", "user", "project", "name", "created_at", "last_used_at"]
    readonly_fields = ["user", "project", "name", "prefix", "created_at", "last_used_at"]
    exclude = ["digest"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
