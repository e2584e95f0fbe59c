"""The REST API: each app contributes its routes."""

from django.urls import include, path

from config.auth import TokenObtainApi

urlpatterns = [
    path("auth/token/", TokenObtainApi.as_view(), name="api-token"),
    path("", include("annotation.api")),
    path("", include("annotation.gold.api")),
    path("data/", include("annotation.export.api")),
    path("", include("modeling.api")),
    path("", include("rlhf.api")),
]
