"""Reads of preference data. Each returns querysets or plain values; no writes."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, Q, QuerySet

from annotation.models import Assignment, Batch, Comparison, Guideline, Label


def batch_list() -> QuerySet[Batch]:
    return Batch.objects.annotate(
        n_comparisons=Count("comparisons", distinct=True),
    ).order_by("-created_at")


@dataclass(frozen=True)
class BatchProgress:
    comparisons: int
    labels_wanted: int
    labels: int
    in_progress: int
    skipped: int
    helpfulness: int
    safety: int
    annotators: int

    @property
    def percent(self) -> int:
        return int(100 * self.labels / self.labels_wanted) if self.labels_wanted else 0

    @property
    def remaining(self) -> int:
        return max(self.labels_wanted - self.labels, 0)


def batch_progress(batch: Batch) -> BatchProgress:
    counts = Comparison.objects.filter(batch=batch).aggregate(
        total=Count("id"),
        helpfulness=Count("id", filter=Q(category="helpfulness")),
        safety=Count("id", filter=Q(category="safety")),
    )
    labels = Label.objects.filter(comparison__batch=batch)
    assignments = Assignment.objects.filter(comparison__batch=batch)
    return BatchProgress(
        comparisons=counts["total"],
        labels_wanted=counts["total"] * batch.labels_per_comparison,
        labels=labels.count(),
        in_progress=assignments.filter(status=Assignment.Status.ASSIGNED).count(),
        skipped=assignments.filter(status=Assignment.Status.SKIPPED).count(),
        helpfulness=counts["helpfulness"],
        safety=counts["safety"],
        annotators=labels.exclude(annotator=None).values("annotator").distinct().count(),
    )


def guideline_active(category: str) -> Guideline | None:
    return Guideline.objects.filter(category=category, is_active=True).order_by("-version").first()


def assignment_get(*, assignment_id: int, annotator) -> Assignment | None:
    """An annotator's own assignment; other annotators' assignments do not exist for them."""
    return (
        Assignment.objects.select_related(
            "comparison__prompt", "comparison__response_a", "comparison__response_b", "comparison__batch"
        )
        .filter(pk=assignment_id, annotator=annotator)
        .first()
    )


@dataclass(frozen=True)
class AnnotatorCounts:
    done: int
    remaining: int
    skipped: int


def annotator_counts(annotator) -> AnnotatorCounts:
    """Done (labelled by this annotator in open batches) and remaining (open slots they may take)."""
    done = Label.objects.filter(annotator=annotator, comparison__batch__status=Batch.Status.OPEN).count()
    skipped = Assignment.objects.filter(
        annotator=annotator, status=Assignment.Status.SKIPPED, comparison__batch__status=Batch.Status.OPEN
    ).count()
    open_for_me = Comparison.objects.filter(batch__status=Batch.Status.OPEN).exclude(
        assignments__annotator=annotator, assignments__status__in=[Assignment.Status.LABELLED, Assignment.Status.SKIPPED]
    )
    remaining = open_for_me.filter(
        Q(claims__lt=F("batch__labels_per_comparison")) | Q(assignments__annotator=annotator, assignments__status=Assignment.Status.ASSIGNED)
    ).distinct().count()
    return AnnotatorCounts(done=done, remaining=remaining, skipped=skipped)


def label_list_for(annotator) -> QuerySet[Label]:
    """An annotator's own labels, newest first. Never other annotators' labels."""
    return (
        Label.objects.filter(annotator=annotator)
        .select_related("comparison__batch", "comparison__prompt")
        .order_by("-created_at")
    )


def assignment_exists(assignment_id: int) -> bool:
    """Whether a task with this id exists at all (for anyone): tells "not yours" from "gone"."""
    return Assignment.objects.filter(pk=assignment_id).exists()


def comparison_list_for_batch(batch: Batch) -> QuerySet[Comparison]:
    """A batch's comparisons for the admin page, with their prompt, responses and label count."""
    return (
        Comparison.objects.filter(batch=batch)
        .select_related("prompt", "response_a", "response_b")
        .annotate(n_labels=Count("labels"))
        .order_by("id")
    )
