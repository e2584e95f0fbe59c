"""The Data page's URLs (mounted at /data/)."""

from django.urls import path

import annotation.url_converters  # noqa: F401 - registers <id:...>
from annotation.export import views

app_name = "data"
urlpatterns = [
    path("", views.data_home, name="home"),
    path("snapshots/", views.snapshot_create, name="snapshot-create"),
    path("snapshots/<id:snapshot_id>/", views.snapshot_detail, name="snapshot"),
    path("snapshots/<id:snapshot_id>/archive.tar", views.snapshot_archive, name="snapshot-archive"),
    path("snapshots/<id:snapshot_id>/files/<str:name>", views.snapshot_file, name="snapshot-file"),
]
