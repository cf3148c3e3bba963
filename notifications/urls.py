from django.urls import path

from . import views

urlpatterns = [
    path("p/<slug:slug>/notifications/", views.notifications, name="notifications"),
]
