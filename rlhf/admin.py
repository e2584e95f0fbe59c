"""Read-mostly admin for iterations; launching and resuming go through the pipeline page
and ``manage.py pairwise_iteration`` (services), not through admin saves."""

from django.contrib import admin

from rlhf.models import Iteration, IterationStage, LiveSession, LiveTurn, PolicyEvaluation


class StageInline(admin.TabularInline):
    model = IterationStage
    extra = 0
    can_delete = False
    fields = ("order", "name", "status", "progress", "message", "attempts", "error")
    readonly_fields = fields


@admin.register(Iteration)
class IterationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "method", "status", "start_policy_name", "policy_path", "created_at")
    list_filter = ("status", "method")
    readonly_fields = (
        "number",
        "status",
        "method",
        "config",
        "start_policy_name",
        "start_policy_path",
        "reward_helpfulness_path",
        "reward_safety_path",
        "policy_name",
        "policy_path",
        "next_batch",
        "error",
        "created_by",
        "finished_at",
    )
    inlines = [StageInline]


@admin.register(PolicyEvaluation)
class PolicyEvaluationAdmin(admin.ModelAdmin):
    list_display = (
        "candidate_name",
        "baseline_name",
        "win_rate",
        "ci_low",
        "ci_high",
        "candidate_unsafe_share",
        "accepted",
    )


admin.site.register(LiveSession)
admin.site.register(LiveTurn)
