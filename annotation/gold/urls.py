from django.urls import path

import annotation.url_converters  # noqa: F401 - registers <id:...>
from annotation.gold import views

urlpatterns = [
    path("batches/<id:batch_id>/quality/", views.batch_quality, name="batch_quality"),
    path(
        "batches/<id:batch_id>/quality/settings/",
        views.batch_quality_settings,
        name="batch_quality_settings",
    ),
    path("batches/<id:batch_id>/quality/gold/", views.gold_mark, name="batch_gold_mark"),
    path(
        "batches/<id:batch_id>/annotators/<id:user_id>/pause/",
        views.annotator_pause,
        name="annotator_pause",
    ),
    path(
        "batches/<id:batch_id>/annotators/<id:user_id>/resume/",
        views.annotator_resume,
        name="annotator_resume",
    ),
]
