from django.urls import path

import annotation.url_converters  # noqa: F401 - registers <id:...>
from modeling import views

app_name = "modeling"
urlpatterns = [
    path("", views.model_list, name="list"),
    path("<id:model_id>/", views.model_detail, name="detail"),
    path("runs/<id:run_id>/", views.run_detail, name="run"),
    path("base/", views.base_model_create, name="create_base"),
    path("register/", views.model_register, name="register"),
    path("train/", views.reward_model_train, name="train_rm"),
    path("label-checks/<id:batch_id>/", views.label_check_request, name="label_check"),
]
