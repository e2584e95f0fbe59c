"""URL map: pages per app, the REST API under /api/v1/, its OpenAPI schema, Django admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    # The API first: its routes are matched on every annotator request.
    path("api/v1/", include("config.api_urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("models/", include("modeling.urls")),
    path("rlhf/", include("rlhf.urls")),
    path("data/", include("annotation.export.urls")),
    path("", include("annotation.urls")),
]
