"""URL map: pages per app, the REST API under /api/v1/, its OpenAPI schema, Django admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.auth import RateLimitedLoginView

urlpatterns = [
    # The API first: its routes are matched on every annotator request.
    path("api/v1/", include("config.api_urls")),
    path("accounts/login/", RateLimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # One door to sign in, rate-limited: the admin's own login form would be a second.
    path(
        "admin/login/",
        login_not_required(RedirectView.as_view(pattern_name="login", query_string=True)),
    ),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("models/", include("modeling.urls")),
    path("rlhf/", include("rlhf.urls")),
    path("data/", include("annotation.export.urls")),
    path("quality/", include("annotation.quality.urls")),
    path("review/", include("annotation.review.urls")),
    path("", include("annotation.urls")),
]

# Under /api/ these answer the API's JSON error body; elsewhere the site's HTML pages.
handler400 = "config.api_errors.api_bad_request"
handler403 = "config.api_errors.api_permission_denied"
handler404 = "config.api_errors.api_page_not_found"
handler500 = "config.api_errors.api_server_error"
