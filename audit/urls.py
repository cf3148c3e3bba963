from django.urls import path

from . import views

urlpatterns = [
    path("p/<slug:slug>/audit/", views.audit_log, name="audit"),
]
