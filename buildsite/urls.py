from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from .api import api
from .metrics_http import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    # Prometheus: no slash, as scrape configs write it (docs/metrics.md).
    path("metrics", metrics_view, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("prompts.urls")),
    path("", include("vault.urls")),
    path("", include("evals.urls")),
    path("", include("repositories.urls")),
    path("", include("notifications.urls")),
    path("", include("docs_engine.urls")),
    path("", include("builds.urls")),
    path("", include("audit.urls")),
]

handler404 = "buildsite.views.not_found"
