"""The Data page's URLs (mounted at /data/)."""

from django.urls import path

from annotation.export import views

app_name = "data"
urlpatterns = [
    path("", views.data_home, name="home"),
    path("snapshots/", views.snapshot_create, name="snapshot-create"),
    path("snapshots/<int:snapshot_id>/", views.snapshot_detail, name="snapshot"),
    path(
        "snapshots/<int:snapshot_id>/archive.tar", views.snapshot_archive, name="snapshot-archive"
    ),
    path("snapshots/<int:snapshot_id>/files/<str:name>", views.snapshot_file, name="snapshot-file"),
]
