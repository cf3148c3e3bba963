from typing import Any

from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from audit.services import record_action

from . import services
from .models import Delivery, NotificationTarget


@admin.register(NotificationTarget)
class NotificationTargetAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    """Read, enable/disable and remove here; adding and editing go through the API or the
    notifications page, which check the URL and keep the secret encrypted."""

    list_display = ("name", "project", "kind", "enabled", "created_at")
    list_filter = ("kind", "enabled", "project")
    search_fields = ("name",)
    exclude = ("secret_encrypted", "url")
    readonly_fields = (
        "project", "name", "kind", "shown_url", "emails", "events", "pipelines", "branches",
        "created_by", "created_at",
    )  # fmt: skip

    @admin.display(description="URL")  # type: ignore[untyped-decorator]  # Django is untyped
    def shown_url(self, obj: NotificationTarget) -> str:
        return services.display_url(obj.kind, obj.url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # Enabling, disabling and removing here are in the audit log, as on the page and API.
    def save_model(
        self, request: HttpRequest, obj: NotificationTarget, form: Any, change: bool
    ) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            self._record(request, obj, "notification.update")

    def delete_model(self, request: HttpRequest, obj: NotificationTarget) -> None:
        with transaction.atomic():
            self._record(request, obj, "notification.delete")
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():
            for target in queryset.select_related("project"):
                self._record(request, target, "notification.delete")
            super().delete_queryset(request, queryset)

    def _record(self, request: HttpRequest, target: NotificationTarget, action: str) -> None:
        record_action(
            actor=request.user,
            project=target.project,
            action=action,
            target=target.name,
            detail=services._audit_detail(target),
        )


@admin.register(Delivery)
class NotificationDeliveryAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    """The delivery log, read-only."""

    list_display = (
        "uid", "target", "event_name", "state", "attempts", "response_code", "created_at",
    )  # fmt: skip
    list_filter = ("state", "event_name")
    search_fields = ("uid",)
    readonly_fields = tuple(
        f.name for f in Delivery._meta.get_fields() if getattr(f, "concrete", False)
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
