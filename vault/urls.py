from django.urls import path

from . import views

urlpatterns = [
    path("p/<slug:slug>/secrets/", views.secrets, name="secrets"),
]
