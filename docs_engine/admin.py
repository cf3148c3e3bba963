"""Admin: documents, read-only revisions, validation settings, snapshots, link reports.

Revisions are history: the admin shows them and never changes them. Writes that matter
(saving a document) go through the API or the pages, where validation runs; what the
admin does write (settings, deleting a document) goes through the same services.
"""

from django import forms
from django.contrib import admin

from buildsite.errors import DomainError

from . import services
from .models import (
    DocSettings,
    Document,
    LinkReport,
    Redirect,
    Revision,
    Snapshot,
    SnapshotEntry,
)


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

    def get_deleted_objects(self, objs, request):
        # A soft delete removes no related rows: confirm the documents alone.
        documents = list(objs)
        return [str(d) for d in documents], {"documents": len(documents)}, set(), []

    def delete_model(self, request, obj):
        # The service's soft delete: revisions stay for snapshots, search forgets it.
        services.delete_document(user=request.user, project=obj.project, path=obj.path)

    def delete_queryset(self, request, queryset):
        for document in queryset.filter(deleted_at__isnull=True).select_related("project"):
            self.delete_model(request, document)


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

    def clean(self):
        data = super().clean()
        if not self.errors:
            try:
                services.check_doc_settings(
                    front_matter_schema=data.get("front_matter_schema"),
                    max_body_bytes=data["max_body_bytes"],
                )
            except DomainError as exc:
                raise forms.ValidationError(exc.message) from exc
        return data


@admin.register(DocSettings)
class DocSettingsAdmin(admin.ModelAdmin):
    """Writes through `update_doc_settings`, the service the API and pages use."""

    form = DocSettingsForm
    list_display = ("project", "require_approval", "max_body_bytes")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = services.update_doc_settings(
            user=request.user,
            project=data["project"],
            require_approval=data["require_approval"],
            front_matter_schema=data.get("front_matter_schema"),
            max_body_bytes=data["max_body_bytes"],
        )
        obj.pk = saved.pk


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
