from typing import Any

from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from .models import ApiToken, Membership, Project
from .services import revoke_token


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
    """Tokens are created with `manage.py create_token`; the admin can only revoke, and
    revokes (one, or the "delete selected" action) through `revoke_token`, which records
    who revoked which token in the audit log."""

    list_display = ["prefix", "user", "project", "scopes", "name", "created_at", "last_used_at"]
    # Scopes too: clearing them would turn a scrape token into a full API token.
    readonly_fields = [
        "user",
        "project",
        "scopes",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
    ]
    exclude = ["digest"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        revoke_token(actor=request.user, token=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():  # the selection is revoked entirely or not at all
            for token in queryset.select_related("user", "project"):
                revoke_token(actor=request.user, token=token)
