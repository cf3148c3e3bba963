"""Admin: documents, read-only revisions, validation settings, snapshots, link reports.

Revisions are history: the admin shows them and never changes them. Writes that matter
(saving a document) go through the API or the pages, where validation runs.
"""

from django import forms
from django.contrib import admin

from buildsite.errors import InvalidInput

from .models import (
    DocSettings,
    Document,
    LinkReport,
    Redirect,
    Revision,
    Snapshot,
    SnapshotEntry,
)
from .validation import check_schema


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("path", "project", "title", "current_revision", "published_revision",
                    "updated_at", "deleted_at")  # fmt: skip
    list_filter = ("project", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("path", "title")
    readonly_fields = ("project", "path", "title", "tags", "anchors", "current_revision",
                       "published_revision", "created_at", "updated_at", "updated_by",
                       "deleted_at")  # fmt: skip

    def has_add_permission(self, request):
        return False  # documents are created through validation (pages, API, builds)


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdmin):
    list_display = ("document", "number", "title", "author", "message", "created_at")
    list_filter = ("document__project",)
    search_fields = ("document__path", "title", "message")
    readonly_fields = ("document", "number", "parent", "title", "body", "front_matter", "tags",
                       "author", "message", "created_at", "warnings")  # fmt: skip
    exclude = ("html", "html_version")


class DocSettingsForm(forms.ModelForm):
    class Meta:
        model = DocSettings
        fields = ("project", "require_approval", "front_matter_schema", "max_body_bytes")

    def clean_front_matter_schema(self):
        schema = self.cleaned_data.get("front_matter_schema")
        if schema is not None:
            try:
                check_schema(schema)
            except InvalidInput as exc:
                raise forms.ValidationError(exc.message) from exc
        return schema


@admin.register(DocSettings)
class DocSettingsAdmin(admin.ModelAdmin):
    form = DocSettingsForm
    list_display = ("project", "require_approval", "max_body_bytes")


class SnapshotEntryInline(admin.TabularInline):
    model = SnapshotEntry
    readonly_fields = ("path", "revision")
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "created_by", "created_at")
    readonly_fields = ("project", "name", "created_by", "created_at")
    inlines = [SnapshotEntryInline]


@admin.register(Redirect)
class RedirectAdmin(admin.ModelAdmin):
    list_display = ("old_path", "document", "project", "created_at")


@admin.register(LinkReport)
class LinkReportAdmin(ReadOnlyAdmin):
    list_display = ("project", "reason", "created_at")
