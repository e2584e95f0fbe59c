"""Django admin for preference data. Actions call services; nothing here writes models itself."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from annotation import services
from annotation.gold import services as gold_services
from annotation.models import (
    AnnotatorBatchCount,
    AnnotatorPauseEvent,
    Assignment,
    Batch,
    Comparison,
    Demonstration,
    GoldComparison,
    Guideline,
    Label,
    Prompt,
    Response,
    ReviewFlag,
    ReviewVerdict,
)


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
        # Status moves only through the actions (services enforce the lifecycle); quality
        # settings through the batch's quality page (gold.services.batch_quality_update).
        fixed = ["status", "opened_at", "closed_at", "frozen_at", "freeze_hash", "created_by"]
        fixed += [*QUALITY_FIELDS, "priorities_computed_at", "priorities_source"]
        if obj is not None and obj.is_frozen:
            return [f.name for f in Batch._meta.fields]
        return fixed


QUALITY_FIELDS = [
    "gold_rate",
    "gold_min_accuracy",
    "gold_min_items",
    "labels_per_comparison_max",
    "queue_order",
]


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


@admin.action(
    description="Mark as gold, expecting the answer on record (review or unanimous labels)"
)
def mark_gold_on_record(modeladmin, request, queryset):
    for comparison in queryset:
        answer = gold_services.answer_on_record(comparison)
        if answer is None:
            modeladmin.message_user(
                request,
                f"Comparison {comparison.pk}: no review verdict and no unanimous labels;"
                " mark it on the batch's quality page with the expected answer.",
                messages.ERROR,
            )
            continue
        try:
            gold_services.gold_mark(comparison=comparison, preferred=answer[0], by=request.user)
            modeladmin.message_user(request, f"Comparison {comparison.pk}: gold ({answer[0]}).")
        except ValidationError as exc:
            modeladmin.message_user(
                request, f"Comparison {comparison.pk}: {'; '.join(exc.messages)}", messages.ERROR
            )


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdmin):
    list_display = ["id", "batch", "category", "source", "claims", "is_gold", "created_at"]
    list_filter = ["category", "is_gold", "batch__status", "batch"]
    raw_id_fields = ["prompt", "response_a", "response_b"]
    actions = [mark_gold_on_record]


@admin.register(Demonstration)
class DemonstrationAdmin(ReadOnlyAdmin):
    list_display = ["id", "batch", "source", "written_by", "created_at"]
    list_filter = ["batch__status", "batch"]
    raw_id_fields = ["prompt"]


@admin.register(GoldComparison)
class GoldComparisonAdmin(ReadOnlyAdmin):
    list_display = ["id", "comparison", "preferred", "min_strength", "is_active", "created_by"]
    list_filter = ["is_active", "preferred"]


@admin.register(AnnotatorBatchCount)
class AnnotatorBatchCountAdmin(ReadOnlyAdmin):
    list_display = [
        "annotator",
        "batch",
        "done",
        "skipped",
        "gold_labels",
        "gold_correct",
        "paused",
    ]
    list_filter = ["paused", "batch"]


@admin.register(AnnotatorPauseEvent)
class AnnotatorPauseEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "annotator", "batch", "paused", "by", "reason"]
    list_filter = ["paused", "batch"]


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


@admin.register(ReviewVerdict)
class ReviewVerdictAdmin(ReadOnlyAdmin):
    """The review's audit trail: append-only, written by ``review.services`` alone."""

    list_display = [
        "id",
        "comparison",
        "reviewer",
        "decision",
        "preferred",
        "strength",
        "created_at",
    ]
    list_filter = ["decision"]


@admin.register(ReviewFlag)
class ReviewFlagAdmin(ReadOnlyAdmin):
    list_display = ["id", "batch", "comparison", "label", "reason", "source", "created_at"]
    list_filter = ["reason"]
