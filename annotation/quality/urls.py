"""The Quality page (mounted at /quality/)."""

from django.urls import path

from annotation.quality import views

app_name = "quality"
urlpatterns = [path("", views.quality, name="index")]
