"""Prompt pages under /p/<slug>/prompts/. Special pages start with "_", which a prompt
name cannot, so no prompt can shadow them."""

from django.urls import path

from . import views

urlpatterns = [
    path("p/<slug:slug>/prompts/", views.library, name="prompts"),
    path("p/<slug:slug>/prompts/_runs/", views.runs, name="prompt-runs"),
    path("p/<slug:slug>/prompts/_runs/<int:run_id>/", views.run_detail, name="prompt-run"),
    path("p/<slug:slug>/prompts/_providers/", views.providers, name="prompt-providers"),
    path("p/<slug:slug>/prompts/<str:name>/", views.detail, name="prompt-detail"),
    path("p/<slug:slug>/prompts/<str:name>/labels/", views.set_label, name="prompt-label"),
    path("p/<slug:slug>/prompts/<str:name>/diff/", views.diff_page, name="prompt-diff"),
    path(
        "p/<slug:slug>/prompts/<str:name>/playground/", views.playground, name="prompt-playground"
    ),
]
