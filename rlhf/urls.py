from django.urls import path

import annotation.url_converters  # noqa: F401 - registers <id:...>
from rlhf import views

app_name = "rlhf"
urlpatterns = [
    path("", views.pipeline, name="pipeline"),
    path("iterations/launch/", views.iteration_launch, name="launch"),
    path("iterations/<id:iteration_id>/", views.iteration_detail, name="iteration"),
    path("iterations/<id:iteration_id>/stages/", views.iteration_stages, name="stages"),
    path("iterations/<id:iteration_id>/resume/", views.iteration_resume, name="resume"),
    path("lineage/", views.lineage, name="lineage"),
    path("evaluations/", views.human_evaluations, name="human_evaluations"),
    path("evaluations/create/", views.human_evaluation_create, name="human_evaluation_create"),
    path("evaluations/<id:evaluation_id>/", views.human_evaluation_detail, name="human_evaluation"),
    path("live/", views.live_page, name="live"),
    path("live/start/", views.live_prompt, name="live_start"),
    path("live/<id:session_id>/", views.live_page, name="live_session"),
    path("live/<id:session_id>/prompt/", views.live_prompt, name="live_prompt"),
    path("live/<id:session_id>/turn/", views.live_turn_partial, name="live_turn"),
    path("live/<id:session_id>/choose/", views.live_choose, name="live_choose"),
    path("live/<id:session_id>/demonstrate/", views.live_demonstrate, name="live_demonstrate"),
]
