from django.urls import path

from . import views

urlpatterns = [
    path("p/<slug:slug>/datasets/", views.datasets, name="datasets"),
    path("p/<slug:slug>/datasets/<str:name>/", views.dataset, name="dataset"),
]
