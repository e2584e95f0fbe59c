"""The reviewer's pages (mounted at /review/)."""

from django.urls import path

import annotation.url_converters  # noqa: F401 - registers <id:...>
from annotation.review import views

app_name = "review"
urlpatterns = [
    path("", views.review_index, name="index"),
    path("batches/<id:batch_id>/", views.review_batch, name="batch"),
    path("batches/<id:batch_id>/checks/", views.review_checks_run, name="checks"),
    path("comparisons/<id:comparison_id>/", views.review_item, name="item"),
    path("comparisons/<id:comparison_id>/verdict/", views.review_verdict, name="verdict"),
]
