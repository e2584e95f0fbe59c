"""The REST API: each app contributes its routes."""

from django.urls import include, path

urlpatterns = [
    path("", include("annotation.api")),
    path("data/", include("annotation.export.api")),
    path("", include("modeling.api")),
    path("", include("rlhf.api")),
]
