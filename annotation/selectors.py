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


def preference_pairs_frozen(*, batch_ids: list[int]):
    """Every label of the given FROZEN batches as a ``domain.PreferencePair`` (chosen =
    the preferred response), in label order; raises ``ValueError`` naming any batch that is
    not frozen. Strength stays blank ("") for unrated imported labels."""
    from annotation.domain import Category, PreferencePair, SafetyBin, Turn

    batches = list(Batch.objects.filter(pk__in=batch_ids).values_list("id", "name", "status"))
    missing = set(batch_ids) - {b[0] for b in batches}
    if missing:
        raise ValueError(f"no batch with id(s) {sorted(missing)}")
    not_frozen = [name for _, name, status in batches if status != Batch.Status.FROZEN]
    if not_frozen:
        raise ValueError(f"only frozen batches train models; not frozen: {', '.join(not_frozen)}")
    rows = (
        Label.objects.filter(comparison__batch_id__in=batch_ids)
        .order_by("id")
        .values_list(
            "preferred", "strength", "safety_bin", "comparison__category", "comparison__source",
            "comparison__prompt__turns", "comparison__response_a__text", "comparison__response_b__text",
        )
    )
    pairs = []
    for preferred, strength, bin_, category, source, turns, text_a, text_b in rows.iterator(chunk_size=2000):
        chosen, rejected = (text_a, text_b) if preferred == "A" else (text_b, text_a)
        pairs.append(
            PreferencePair(
                context=tuple(Turn(t["role"], t["content"]) for t in turns),
                chosen=chosen,
                rejected=rejected,
                strength=strength,  # type: ignore[arg-type]  # "" = unrated
                category=Category(category),
                safety_bin=SafetyBin(bin_) if bin_ else None,
                source=source,
            )
        )
    return pairs
