"""Admin for project secrets: writes go through the services (same checks, versions
and audit log as the API), and no value is ever shown, not even encrypted."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from buildsite.errors import DomainError
from buildsite.models import Project

from . import services
from .models import Secret
from .rules import name_problem, value_problem


class WriteOnlyTextarea(forms.Textarea):  # type: ignore[misc]  # Django is untyped (Any base)
    """A textarea that never renders a value: a form shown again after an error must
    not put the secret back into the page (a password input cannot take a key file)."""

    def format_value(self, value: Any) -> None:
        return None


class SecretForm(forms.ModelForm):  # type: ignore[misc]  # Django is untyped (Any base)
    value = forms.CharField(
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="Stored encrypted and never shown again. Leave empty to keep the value.",
    )

    class Meta:
        model = Secret
        fields = ["project", "name"]

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean()
        value = (data.get("value") or "").replace("\r\n", "\n")
        data["value"] = value
        errors: dict[str, str] = {}
        if self.instance.pk is None and (message := name_problem(data.get("name") or "")):
            errors["name"] = message
        if (value or self.instance.pk is None) and (message := value_problem(value)):
            errors["value"] = message
        if errors:
            raise ValidationError(errors)
        return data


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped (Any base)
    form = SecretForm
    list_display = ["name", "project", "version", "set_by", "set_at"]
    list_filter = ["project"]
    search_fields = ["name", "project__slug"]

    def get_readonly_fields(self, request: HttpRequest, obj: Secret | None = None) -> list[str]:
        return ["project", "name", "version", "set_by", "set_at"] if obj else []

    def save_model(self, request: HttpRequest, obj: Secret, form: Any, change: bool) -> None:
        value = form.cleaned_data.get("value") or ""
        if change and not value:
            return  # nothing to change: project and name are fixed
        project: Project = obj.project if change else form.cleaned_data["project"]
        name: str = obj.name if change else form.cleaned_data["name"]
        try:
            saved = services.set_secret(
                user=None, project=project, name=name, value=value, actor=request.user
            )
            obj.pk = saved.pk
        except DomainError as exc:
            messages.error(request, f"Not saved: {exc.message}")

    def delete_model(self, request: HttpRequest, obj: Secret) -> None:
        services.delete_secret(user=None, project=obj.project, name=obj.name, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Secret]) -> None:
        for secret in queryset.select_related("project"):
            services.delete_secret(
                user=None, project=secret.project, name=secret.name, actor=request.user
            )
