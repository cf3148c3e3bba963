from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("p/<slug:slug>/", views.project_dashboard, name="project"),
    path("p/<slug:slug>/pipelines/", views.pipeline_list, name="pipelines"),
    path("p/<slug:slug>/pipelines/<str:name>/run/", views.run_pipeline, name="run-pipeline"),
    path("p/<slug:slug>/builds/", views.build_list, name="builds"),
    path("builds/<int:build_id>/", views.build_detail, name="build"),
    path("builds/<int:build_id>/cancel/", views.cancel_build, name="cancel-build"),
    path("builds/<int:build_id>/retry/", views.retry_build, name="retry-build"),
]
