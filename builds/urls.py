from django.urls import path

from . import badges, views

urlpatterns = [
    path("", views.home, name="home"),
    path("p/<slug:slug>/", views.project_dashboard, name="project"),
    path("p/<slug:slug>/pipelines/", views.pipeline_list, name="pipelines"),
    path("p/<slug:slug>/new-pipeline/", views.new_pipeline, name="new-pipeline"),
    path("p/<slug:slug>/new-pipeline/save/", views.save_pipeline, name="create-pipeline"),
    path("p/<slug:slug>/check-pipeline/", views.check_pipeline, name="check-pipeline"),
    path("p/<slug:slug>/pipelines/<str:name>/", views.pipeline_detail, name="pipeline"),
    path("p/<slug:slug>/pipelines/<str:name>/badge.svg", badges.badge, name="pipeline-badge"),
    path("p/<slug:slug>/pipelines/<str:name>/save/", views.save_pipeline, name="save-pipeline"),
    path("p/<slug:slug>/pipelines/<str:name>/diff/", views.pipeline_diff, name="pipeline-diff"),
    path("p/<slug:slug>/pipelines/<str:name>/run/", views.run_pipeline, name="run-pipeline"),
    path("p/<slug:slug>/builds/", views.build_list, name="builds"),
    path("p/<slug:slug>/resources/", views.resources, name="resources"),
    path("builds/<int:build_id>/", views.build_detail, name="build"),
    path("builds/<int:build_id>/tasks/<str:name>/log/", views.task_log, name="task-log"),
    path("builds/<int:build_id>/cancel/", views.cancel_build, name="cancel-build"),
    path("builds/<int:build_id>/retry/", views.retry_build, name="retry-build"),
    path("builds/<int:build_id>/rerun/", views.rerun_build, name="rerun-build"),
]
