from django.urls import path

from . import views

urlpatterns = [
    path("p/<slug:slug>/datasets/", views.datasets, name="datasets"),
    path("p/<slug:slug>/datasets/<str:name>/", views.dataset, name="dataset"),
    path(
        "p/<slug:slug>/prompts/<str:name>/evaluations/",
        views.start_evaluation,
        name="start-evaluation",
    ),
    path(
        "p/<slug:slug>/prompts/<str:name>/evaluations/compare/",
        views.compare_evaluations,
        name="compare-evaluations",
    ),
    path(
        "p/<slug:slug>/prompts/<str:name>/evaluations/<int:evaluation_id>/",
        views.evaluation,
        name="evaluation",
    ),
]
