from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from . import services
from .models import Delivery, Repository


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    """Read and remove here; registering goes through the API or the repositories page,
    which show the webhook secret once (the admin has nowhere safe to show it)."""

    list_display = ("name", "project", "url", "branch", "pipeline_path", "status_forge")
    list_filter = ("project",)
    search_fields = ("name", "url")
    exclude = ("webhook_secret_encrypted",)
    readonly_fields = (
        "project", "name", "url", "branch", "pipeline_path", "branches", "credentials_secret",
        "status_forge", "status_api_url", "status_token_secret", "created_by", "created_at",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Repository) -> None:
        services.delete_repository(user=None, repository=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for repository in queryset:
            services.delete_repository(user=None, repository=repository, actor=request.user)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    list_display = ("delivery_id", "repository", "build", "reason", "received_at")
    readonly_fields = ("repository", "delivery_id", "build", "reason", "received_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
