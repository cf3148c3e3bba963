from django.urls import path

from . import views

urlpatterns = [
    path("p/<slug:slug>/repositories/", views.repositories, name="repositories"),
]
