"""Django admin for the model registry. Actions call services."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from modeling import selectors, services
from modeling.models import ModelVersion, ScoreJob, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "status", "is_judge", "parent", "created_at"]
    list_filter = ["kind", "status", "is_judge"]
    search_fields = ["name"]
    readonly_fields = [
        "status",
        "path",
        "tokenizer_path",
        "metrics",
        "trained_on_hashes",
        "is_judge",
        "created_at",
        "updated_at",
    ]
    actions = ["create_base_model", "train_reward_models", "mark_judge", "unmark_judge"]

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and request.user.has_perm(
            "modeling.launch_training"
        )

    @admin.action(description="Mark as judge (scores new policies it was not optimised against)")
    def mark_judge(self, request, queryset):
        self._set_judge(request, queryset, True)

    @admin.action(description="Unmark as judge")
    def unmark_judge(self, request, queryset):
        self._set_judge(request, queryset, False)

    def _set_judge(self, request, queryset, is_judge: bool) -> None:
        for model in queryset:
            try:
                services.model_version_set_judge(model=model, is_judge=is_judge)
                self.message_user(request, f"{model.name}: judge {'on' if is_judge else 'off'}.")
            except ValidationError as exc:
                self.message_user(request, "; ".join(exc.messages), messages.ERROR)

    @admin.action(description="Create a new default base model (selection ignored)")
    def create_base_model(self, request, queryset):
        try:
            run = services.base_model_launch(created_by=request.user)
            self.message_user(request, f"Queued run {run.pk}: {run.result_name}.")
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)

    @admin.action(
        description="Train helpfulness and safety RMs from the selected base model on all frozen batches"
    )
    def train_reward_models(self, request, queryset):
        batch_ids = list(selectors.batches_frozen().values_list("id", flat=True))
        for base in queryset:
            for kind in ("helpfulness", "safety"):
                try:
                    run = services.reward_model_launch(
                        kind=kind, base_model=base, batch_ids=batch_ids, created_by=request.user
                    )
                    self.message_user(request, f"Queued run {run.pk}: {run.result_name}.")
                except ValidationError as exc:
                    self.message_user(
                        request, f"{base.name} ({kind}): {'; '.join(exc.messages)}", messages.ERROR
                    )


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "result_name",
        "status",
        "step",
        "total_steps",
        "accuracy",
        "created_at",
    ]
    list_filter = ["kind", "status"]
    readonly_fields = [f.name for f in TrainingRun._meta.fields] + ["batches"]

    def has_add_permission(self, request):
        return False


@admin.register(ScoreJob)
class ScoreJobAdmin(admin.ModelAdmin):
    """Read-only: jobs come from the API and are filled in by a worker."""

    list_display = ["id", "model", "status", "single", "created_by", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in ScoreJob._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
