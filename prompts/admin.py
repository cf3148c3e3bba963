"""Admin for the prompt library. Versions are immutable: existing ones are read-only,
new ones are added inline and saved through the services (same validation and
numbering as the API). Keys are write-only here too."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse

from buildsite.errors import DomainError, InvalidInput

from . import selectors, services
from .models import LabelMove, PromptLabel, PromptRun, PromptTemplate, PromptVersion, ProviderConfig
from .rendering import render_messages
from .spec import FIELDS as VERSION_FIELDS
from .spec import clean_version

SAMPLE_BY_TYPE = {"number": 1.5, "integer": 1, "boolean": True, "array": [], "object": {}}


def _body_of(data: dict) -> dict:
    body = {
        k: data.get(k)
        for k in (
            "variables",
            "provider",
            "model",
            "temperature",
            "max_tokens",
            "response_format",
            "response_schema",
            "max_repairs",
        )
    }
    if data.get("messages"):
        body["messages"] = data["messages"]
    else:
        body["template"] = data.get("template") or ""
    return body


class VersionForm(forms.ModelForm):
    class Meta:
        model = PromptVersion
        fields = [*VERSION_FIELDS, "note"]

    def clean(self):
        data = super().clean()
        if self.instance.pk is None and not self.errors:
            try:
                clean_version(_body_of(data))
            except InvalidInput as exc:
                raise ValidationError([str(p) for p in exc.problems]) from exc
        return data


class VersionInline(admin.StackedInline):
    model = PromptVersion
    form = VersionForm
    extra = 0
    ordering = ["-number"]
    readonly_fields = ["number", "created_by", "created_at"]
    show_change_link = False

    def has_change_permission(self, request, obj=None):
        return False  # existing versions are immutable; new ones can still be added

    def has_delete_permission(self, request, obj=None):
        return False


class LabelInline(admin.TabularInline):
    model = PromptLabel
    extra = 0
    fields = ["name", "version", "updated_by", "updated_at"]
    readonly_fields = ["updated_by", "updated_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "version":
            prompt_id = request.resolver_match.kwargs.get("object_id")
            kwargs["queryset"] = PromptVersion.objects.filter(prompt_id=prompt_id or 0)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "created_by", "created_at"]
    list_filter = ["project"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_by", "created_at"]
    inlines = [VersionInline, LabelInline]
    actions = ["render_preview"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "project", "name"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        prompt = form.instance
        if formset.model is PromptVersion:
            for f in formset.forms:
                if f.instance.pk is None and f.has_changed() and f.cleaned_data:
                    self._save(
                        request,
                        lambda f=f: services.add_version(
                            user=None,
                            project=prompt.project,
                            name=prompt.name,
                            body=_body_of(f.cleaned_data),
                            note=f.cleaned_data.get("note") or "",
                            actor=request.user,
                        ),
                    )
            return
        if formset.model is PromptLabel:
            for f in formset.forms:
                if not f.cleaned_data:
                    continue
                if f.cleaned_data.get("DELETE") and f.instance.pk:
                    self._save(
                        request,
                        lambda f=f: services.remove_label(
                            user=None,
                            project=prompt.project,
                            name=prompt.name,
                            label=f.instance.name,
                            actor=request.user,
                        ),
                    )
                elif f.has_changed() and not f.cleaned_data.get("DELETE"):
                    self._save(
                        request,
                        lambda f=f: services.set_label(
                            user=None,
                            project=prompt.project,
                            name=prompt.name,
                            label=f.cleaned_data["name"],
                            number=f.cleaned_data["version"].number,
                            actor=request.user,
                        ),
                    )
            return
        super().save_formset(request, form, formset, change)

    def _save(self, request, action) -> None:
        try:
            action()
        except DomainError as exc:
            messages.error(request, f"Not saved: {exc.message}")

    @admin.action(description="Render preview (latest version, defaults or samples)")
    def render_preview(self, request, queryset):
        previews = []
        for prompt in queryset.select_related("project"):
            version = selectors.latest_version(prompt=prompt)
            if version is None:
                previews.append({"prompt": prompt, "error": "no versions yet"})
                continue
            values = {
                name: decl["default"]
                if "default" in decl
                else SAMPLE_BY_TYPE.get(decl["type"], f"<{name}>")
                for name, decl in version.variables.items()
            }
            try:
                rendered = render_messages(
                    template=version.template,
                    messages=version.messages or None,
                    declared=version.variables,
                    given=values,
                )
                previews.append(
                    {
                        "prompt": prompt,
                        "version": version,
                        "values": json.dumps(values),
                        "messages": rendered,
                    }
                )
            except DomainError as exc:
                previews.append({"prompt": prompt, "version": version, "error": exc.message})
        return TemplateResponse(
            request,
            "prompts/admin_preview.html",
            {
                **self.admin_site.each_context(request),
                "title": "Render preview",
                "previews": previews,
            },
        )


class ProviderForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown again. Leave empty to keep the stored key.",
    )
    clear_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = ProviderConfig
        fields = [
            "project",
            "name",
            "kind",
            "base_url",
            "model",
            "api_key_env",
            "api_key_secret",
            "price_in_per_mtok",
            "price_out_per_mtok",
            "timeout_seconds",
            "max_retries",
        ]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            data["base_url"], _ = services.check_provider(
                project=data.get("project") or self.instance.project,
                name=data.get("name") or self.instance.name,
                kind=data.get("kind") or "",
                base_url=data.get("base_url") or "",
                model=data.get("model") or "",
                api_key_env=data.get("api_key_env") or "",
                api_key=data.get("api_key") or None,
                api_key_secret=data.get("api_key_secret") or "",
                price_in=data.get("price_in_per_mtok"),
                price_out=data.get("price_out_per_mtok"),
                timeout=data.get("timeout_seconds"),
                max_retries=data.get("max_retries"),
            )
        except InvalidInput as exc:
            raise ValidationError([str(p) for p in exc.problems]) from exc
        return data


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = [
        "name",
        "project",
        "kind",
        "base_url",
        "model",
        "api_key_env",
        "api_key_secret",
        "key_stored",
    ]
    list_filter = ["kind", "project"]

    def get_readonly_fields(self, request, obj=None):
        return ["project", "name"] if obj else []

    @admin.display(boolean=True, description="stored key")
    def key_stored(self, obj):
        return obj.has_stored_key

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            saved, _ = services.save_provider(
                user=None,
                project=obj.project if change else data["project"],
                name=obj.name if change else data["name"],
                kind=data["kind"],
                base_url=data.get("base_url") or "",
                model=data.get("model") or "",
                api_key_env=data.get("api_key_env") or "",
                api_key="" if data.get("clear_key") else (data.get("api_key") or None),
                api_key_secret=data.get("api_key_secret") or "",
                price_in=data.get("price_in_per_mtok"),
                price_out=data.get("price_out_per_mtok"),
                timeout=data.get("timeout_seconds"),
                max_retries=data.get("max_retries"),
            )
            obj.pk = saved.pk
        except DomainError as exc:
            messages.error(request, f"Not saved: {exc.message}")


@admin.register(PromptRun)
class PromptRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "version",
        "project",
        "status",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "latency_ms",
        "cached",
        "created_at",
    ]
    list_filter = ["status", "cached", "project"]
    readonly_fields = [f.name for f in PromptRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LabelMove)
class LabelMoveAdmin(admin.ModelAdmin):
    list_display = ["prompt", "label", "from_number", "to_number", "moved_by", "moved_at"]
    readonly_fields = [f.name for f in LabelMove._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
