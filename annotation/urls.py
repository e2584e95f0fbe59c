"""Pages of the annotation app: home, the annotator page, batch management."""

from django.urls import include, path

import annotation.url_converters  # noqa: F401 - registers <id:...>
from annotation import views

urlpatterns = [
    path("", views.home, name="home"),
    path("annotate/", views.annotate, name="annotate"),
    path("annotate/<id:assignment_id>/label/", views.annotate_label, name="annotate_label"),
    path("annotate/<id:assignment_id>/skip/", views.annotate_skip, name="annotate_skip"),
    path("batches/", views.batch_list, name="batch_list"),
    path("batches/new/", views.batch_create, name="batch_create"),
    path("batches/<id:batch_id>/", views.batch_detail, name="batch_detail"),
    path("batches/<id:batch_id>/transition/", views.batch_transition, name="batch_transition"),
    path("batches/<id:batch_id>/import/", views.batch_import, name="batch_import"),
    path("", include("annotation.gold.urls")),
]
