from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from .api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("prompts.urls")),
    path("", include("vault.urls")),
    path("", include("repositories.urls")),
    path("", include("docs_engine.urls")),
    path("", include("builds.urls")),
]

handler404 = "buildsite.views.not_found"
