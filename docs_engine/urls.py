from django.urls import path

from . import views

P = "p/<slug:slug>/docs/"

urlpatterns = [
    path(P, views.tree, name="docs-tree"),
    path(P + "-/search/", views.search, name="docs-search"),
    path(P + "-/new/", views.new_document, name="docs-new"),
    path(P + "-/snapshots/", views.snapshot_list, name="docs-snapshots"),
    path(P + "-/snapshots/<str:name>/", views.snapshot_detail, name="docs-snapshot"),
    path(
        P + "-/snapshots/<str:name>/<path:path>", views.snapshot_document, name="docs-snapshot-doc"
    ),
    path(P + "-/settings/", views.settings_page, name="docs-settings"),
    path(P + "<path:path>/-/edit/", views.edit, name="docs-edit"),
    path(P + "<path:path>/-/history/", views.history, name="docs-history"),
    path(P + "<path:path>/-/diff/", views.diff, name="docs-diff"),
    path(P + "<path:path>/-/restore/", views.restore, name="docs-restore"),
    path(P + "<path:path>/-/move/", views.move, name="docs-move"),
    path(P + "<path:path>/-/delete/", views.delete, name="docs-delete"),
    path(P + "<path:path>/-/publish/", views.publish, name="docs-publish"),
    path(P + "<path:path>/-/approve/", views.approve, name="docs-approve"),
    path(P + "<path:path>", views.reader, name="docs-reader"),
]
