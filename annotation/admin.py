"""Django admin for preference data. Actions call services; nothing here writes models itself."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from annotation import services
from annotation.models import Assignment, Batch, Comparison, Guideline, Label, Prompt, Response


def _transition_action(to: str, verb: str):
    def action(modeladmin, request, queryset):
        for batch in queryset:
            try:
                services.batch_transition(batch=batch, to=to, by=request.user)
                modeladmin.message_user(request, f"{batch.name}: {verb}.")
            except ValidationError as exc:
                modeladmin.message_user(
                    request, f"{batch.name}: {'; '.join(exc.messages)}", messages.ERROR
                )

    action.short_description = f"{verb.capitalize()} selected batches"
    action.__name__ = f"batch_{to}"
    return action


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "iteration",
        "status",
        "labels_per_comparison",
        "created_at",
        "freeze_hash",
    ]
    list_filter = ["status", "iteration"]
    search_fields = ["name"]
    actions = [
        _transition_action(Batch.Status.OPEN, "open"),
        _transition_action(Batch.Status.CLOSED, "close"),
        _transition_action(Batch.Status.FROZEN, "freeze"),
    ]

    def get_readonly_fields(self, request, obj=None):
        # Status moves only through the actions (services enforce the lifecycle).
        fixed = ["status", "opened_at", "closed_at", "frozen_at", "freeze_hash", "created_by"]
        if obj is not None and obj.is_frozen:
            return [f.name for f in Batch._meta.fields]
        return fixed


@admin.register(Guideline)
class GuidelineAdmin(admin.ModelAdmin):
    list_display = ["category", "version", "title", "is_active", "created_at"]
    list_filter = ["category", "is_active"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Data rows are written by services (imports, the queue); the admin only inspects them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ["id", "__str__", "source", "created_at"]
    search_fields = ["content_hash"]


@admin.register(Response)
class ResponseAdmin(ReadOnlyAdmin):
    list_display = ["id", "model_version", "generated_at", "created_at"]
    list_filter = ["model_version"]


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdmin):
    list_display = ["id", "batch", "category", "source", "claims", "created_at"]
    list_filter = ["category", "batch__status", "batch"]
    raw_id_fields = ["prompt", "response_a", "response_b"]


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "comparison",
        "annotator",
        "source_annotator",
        "preferred",
        "strength",
        "safety_bin",
        "created_at",
    ]
    list_filter = ["strength", "safety_bin", "comparison__category"]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "comparison", "annotator", "status", "left", "assigned_at", "finished_at"]
    list_filter = ["status"]
