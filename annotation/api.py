"""REST API of the annotation app (DRF)."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
