from typing import Any

from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from .models import ApiToken, Membership, Project
from .services import remove_membership, revoke_token, set_membership


class MembershipInline(admin.TabularInline):  # type: ignore[misc]  # Django is untyped (Any base)
    """Shown, not edited: roles change on the Membership page, through the service that
    records them in the audit log."""

    model = Membership
    extra = 0
    fields = readonly_fields = ["user", "role"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = ["project", "user", "role"]
    list_filter = ["role", "project"]
    autocomplete_fields = ["user"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Only the role of an existing membership changes; another person or project is
        # a new membership.
        return ["project", "user"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        saved = set_membership(
            actor=request.user,
            project=obj.project,
            username=obj.user.username,
            role=obj.role,
            in_admin=True,
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        remove_membership(actor=request.user, membership=obj, in_admin=True)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():
            for membership in queryset.select_related("project", "user"):
                remove_membership(actor=request.user, membership=membership, in_admin=True)


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
