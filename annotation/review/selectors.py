"""Reads of the review: what needs a reviewer, one comparison under review, counts per batch.

A comparison **needs review** when its labels disagree (some prefer A, some B), when one
of its labels is flagged (``ReviewFlag``: the rule checks or a reward model), or when a
label failed its gold answer; it stays in the queue until a reviewer records a verdict.
Reviewers see annotators by pseudonym (one per batch), never by username.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from django.db.models import Count, Exists, F, Max, OuterRef, Prefetch, Q, QuerySet

from annotation.domain import STRENGTH_ORDER
from annotation.models import Batch, Comparison, Label, ReviewFlag, ReviewVerdict

QueueStatus = Literal["pending", "reviewed", "all"]
DISAGREEMENT = "disagreement"
FAILED_GOLD = "failed_gold"
QUEUE_REASONS = (DISAGREEMENT, FAILED_GOLD, *ReviewFlag.Reason.values)
REASON_LABELS = {
    DISAGREEMENT: "Labels disagree",
    FAILED_GOLD: "Failed gold",
    **dict(ReviewFlag.Reason.choices),
}
LABEL_REASONS = (ReviewFlag.Reason.FAST, ReviewFlag.Reason.REWARD_MODEL)
ANNOTATOR_REASONS = (ReviewFlag.Reason.SIDE_BIAS, ReviewFlag.Reason.STRENGTH_SKEW)


def _disagreement() -> Q:
    """Labels on both sides. (A lone *Negligibly better / Unsure* is not a dispute to
    settle; on a gold check a wrong side is a failed gold, not a dispute.)"""
    on = Label.objects.filter(comparison=OuterRef("pk"))
    return (
        Q(is_gold=False) & Q(Exists(on.filter(preferred="A"))) & Q(Exists(on.filter(preferred="B")))
    )


def gold_failed_q() -> Q:
    """Labels (of gold checks) that miss their gold answer: the other side, or weaker than
    the gold's minimum strength (an unrated label is weaker than any)."""
    weaker = Q()
    for i, minimum in enumerate(STRENGTH_ORDER):
        weaker |= Q(comparison__gold__min_strength=minimum) & Q(
            strength__in=[s.value for s in STRENGTH_ORDER[i + 1 :]] + [""]
        )
    return Q(comparison__is_gold=True) & (~Q(preferred=F("comparison__gold__preferred")) | weaker)


def _failed_gold() -> Exists:
    return Exists(Label.objects.filter(gold_failed_q(), comparison=OuterRef("pk")))


def _flagged() -> Exists:
    return Exists(ReviewFlag.objects.filter(comparison=OuterRef("pk"), label__isnull=False))


def _reviewed() -> Exists:
    return Exists(ReviewVerdict.objects.filter(comparison=OuterRef("pk")))


# The queue's badges: short names, the full reason in the tooltip.
REASON_SHORT = {
    DISAGREEMENT: "Labels disagree",
    FAILED_GOLD: "Failed gold",
    ReviewFlag.Reason.FAST: "Fast label",
    ReviewFlag.Reason.REWARD_MODEL: "Reward model disagrees",
    ReviewFlag.Reason.SIDE_BIAS: "Side bias",
    ReviewFlag.Reason.STRENGTH_SKEW: "Strength skew",
}


@dataclass(frozen=True)
class Badge:
    reason: str
    name: str
    title: str
    count: int = 1


def queue_badges(comparison: Comparison) -> list[Badge]:
    """Why a comparison of ``review_queue`` is there, one badge per reason."""
    badges = []
    if getattr(comparison, "disagreement", False):
        badges.append(Badge(DISAGREEMENT, REASON_SHORT[DISAGREEMENT], REASON_LABELS[DISAGREEMENT]))
    if getattr(comparison, "failed_gold", False):
        badges.append(Badge(FAILED_GOLD, REASON_SHORT[FAILED_GOLD], REASON_LABELS[FAILED_GOLD]))
    by_reason: dict[str, list[ReviewFlag]] = defaultdict(list)
    for flag in comparison.review_flags.all():  # prefetched by review_queue
        by_reason[flag.reason].append(flag)
    for reason, flags in sorted(by_reason.items()):
        title = f"{REASON_LABELS[reason]}: {flags[0].detail}"
        badges.append(Badge(reason, REASON_SHORT[reason], title, len(flags)))
    return badges


def review_annotated(qs: QuerySet[Comparison]) -> QuerySet[Comparison]:
    """``qs`` with booleans ``disagreement``, ``failed_gold``, ``flagged``, ``reviewed``
    and ``needs_review``."""
    return qs.annotate(
        disagreement=_disagreement(),
        failed_gold=_failed_gold(),
        flagged=_flagged(),
        reviewed=_reviewed(),
    ).annotate(needs_review=Q(disagreement=True) | Q(failed_gold=True) | Q(flagged=True))


@dataclass(frozen=True)
class ReviewCounts:
    """One batch's review, counted in comparisons (annotator flags in annotators)."""

    disagreements: int = 0
    failed_gold: int = 0  # gold checks with at least one label that missed the answer
    flagged: int = 0  # comparisons with at least one flagged label
    needs_review: int = 0  # any of the three
    reviewed: int = 0  # comparisons with a verdict
    pending: int = 0  # needs review, no verdict yet
    flagged_annotators: int = 0


def review_counts_by_batch(*, batch_ids: Iterable[int] | None = None) -> dict[int, ReviewCounts]:
    """Review counts per batch id (every batch with comparisons, or those of ``batch_ids``).

    Two grouped queries, whatever the number of batches. The Quality page and the review
    index read these.
    """
    comparisons = Comparison.objects.all()
    flags = ReviewFlag.objects.filter(label__isnull=True)
    if batch_ids is not None:
        batch_ids = list(batch_ids)
        comparisons = comparisons.filter(batch_id__in=batch_ids)
        flags = flags.filter(batch_id__in=batch_ids)
    rows = (
        review_annotated(comparisons)
        .order_by()
        .values("batch_id")
        .annotate(
            n_disagreements=Count("pk", filter=Q(disagreement=True)),
            n_failed_gold=Count("pk", filter=Q(failed_gold=True)),
            n_flagged=Count("pk", filter=Q(flagged=True)),
            n_needs=Count("pk", filter=Q(needs_review=True)),
            n_reviewed=Count("pk", filter=Q(reviewed=True)),
            n_pending=Count("pk", filter=Q(needs_review=True, reviewed=False)),
        )
    )
    annotators = dict(
        flags.order_by()
        .values("batch_id")
        .annotate(n=Count("annotator_id", distinct=True))
        .values_list("batch_id", "n")
    )
    return {
        row["batch_id"]: ReviewCounts(
            disagreements=row["n_disagreements"],
            failed_gold=row["n_failed_gold"],
            flagged=row["n_flagged"],
            needs_review=row["n_needs"],
            reviewed=row["n_reviewed"],
            pending=row["n_pending"],
            flagged_annotators=annotators.get(row["batch_id"], 0),
        )
        for row in rows
    }


def review_batch_list() -> list[tuple[Batch, ReviewCounts]]:
    """Batches that have labels, newest first, with their review counts."""
    batches = list(
        Batch.objects.filter(
            Exists(Label.objects.filter(comparison__batch=OuterRef("pk")))
        ).order_by("-created_at")
    )
    counts = review_counts_by_batch(batch_ids=[b.pk for b in batches])
    return [(b, counts.get(b.pk, ReviewCounts())) for b in batches]


def review_queue(
    *, batch: Batch, reason: str | None = None, status: QueueStatus = "pending"
) -> QuerySet[Comparison]:
    """The batch's comparisons that need review (``status="pending"``, the default), were
    reviewed, or either (``"all"``), narrowed to one ``reason`` (``QUEUE_REASONS``), in id
    order, with their label count and flags prefetched."""
    qs = review_annotated(Comparison.objects.filter(batch=batch)).select_related("prompt")
    # Q(...) on the annotations: the django-stubs plugin knows only the model's fields.
    if status == "pending":
        qs = qs.filter(Q(needs_review=True) & Q(reviewed=False))
    elif status == "reviewed":
        qs = qs.filter(Q(reviewed=True))
    else:
        qs = qs.filter(Q(needs_review=True) | Q(reviewed=True))
    if reason == DISAGREEMENT:
        qs = qs.filter(Q(disagreement=True))
    elif reason == FAILED_GOLD:
        qs = qs.filter(Q(failed_gold=True))
    elif reason in ReviewFlag.Reason.values:
        qs = qs.filter(Exists(ReviewFlag.objects.filter(comparison=OuterRef("pk"), reason=reason)))
    elif reason is not None:
        raise ValueError(f"unknown reason {reason!r}; one of {QUEUE_REASONS}")
    return (
        qs.annotate(n_labels=Count("labels", distinct=True))
        .prefetch_related(
            Prefetch("review_flags", queryset=ReviewFlag.objects.order_by("reason", "id"))
        )
        .order_by("id")
    )


# --- one comparison ----------------------------------------------------------------------


def annotator_pseudonyms(batch: Batch) -> Callable[[int | None, str], str]:
    """The names reviewers see for the batch's annotators: stable within the batch, never
    the username, and unlike any snapshot's (a different key)."""
    from annotation.export.services import Pseudonyms

    return Pseudonyms(f"review:batch:{batch.pk}")


@dataclass(frozen=True)
class FlagView:
    reason: str
    reason_label: str
    detail: str


@dataclass(frozen=True)
class LabelView:
    """One label as the reviewer sees it."""

    id: int
    annotator: str  # pseudonym
    preferred: str
    strength: str
    strength_label: str
    safety_a: str
    safety_b: str
    safety_bin: str
    left: str
    seconds: float | None
    comment: str
    created_at: object
    flags: list[FlagView] = field(default_factory=list)


@dataclass(frozen=True)
class ReviewItem:
    comparison: Comparison
    gold_answer: str  # "" unless the comparison is a gold check: "A, at least Better"
    labels: list[LabelView]
    annotator_flags: dict[str, list[FlagView]]  # pseudonym → the annotator's batch flags
    verdicts: list[ReviewVerdict]  # newest first: the first one stands
    disagreement: bool

    @property
    def verdict(self) -> ReviewVerdict | None:
        return self.verdicts[0] if self.verdicts else None


def _flag_view(flag: ReviewFlag) -> FlagView:
    return FlagView(flag.reason, flag.get_reason_display(), flag.detail)


def review_item_get(*, comparison_id: int) -> ReviewItem | None:
    """A comparison with every label (by pseudonym), its flags and its verdict history."""
    comparison = (
        Comparison.objects.select_related("batch", "prompt", "response_a", "response_b", "gold")
        .filter(pk=comparison_id)
        .first()
    )
    if comparison is None:
        return None
    pseudonym = annotator_pseudonyms(comparison.batch)
    gold_answer = ""
    failed_gold: set[int] = set()
    if comparison.is_gold and comparison.gold is not None:
        gold = comparison.gold
        gold_answer = gold.preferred + (
            f", at least {gold.get_min_strength_display()}" if gold.min_strength else ""
        )
        failed_gold = set(
            Label.objects.filter(gold_failed_q(), comparison=comparison).values_list(
                "id", flat=True
            )
        )
    labels = list(
        Label.objects.filter(comparison=comparison)
        .prefetch_related(
            Prefetch("review_flags", queryset=ReviewFlag.objects.order_by("reason", "id"))
        )
        .order_by("id")
    )
    annotator_flags: dict[str, list[FlagView]] = defaultdict(list)
    for flag in ReviewFlag.objects.filter(
        batch=comparison.batch,
        label__isnull=True,
        annotator_id__in=[label.annotator_id for label in labels if label.annotator_id],
    ).order_by("reason"):
        annotator_flags[pseudonym(flag.annotator_id, "")].append(_flag_view(flag))
    views = [
        LabelView(
            id=label.pk,
            annotator=pseudonym(label.annotator_id, label.source_annotator),
            preferred=label.preferred,
            strength=label.strength,
            strength_label=label.get_strength_display() if label.strength else "unrated",
            safety_a=label.safety_a,
            safety_b=label.safety_b,
            safety_bin=label.safety_bin,
            left=label.left,
            seconds=None if label.time_spent_ms is None else label.time_spent_ms / 1000,
            comment=label.comment,
            created_at=label.created_at,
            flags=[_flag_view(f) for f in label.review_flags.all()]
            + (
                [
                    FlagView(
                        FAILED_GOLD, REASON_LABELS[FAILED_GOLD], f"the gold answer is {gold_answer}"
                    )
                ]
                if label.pk in failed_gold
                else []
            ),
        )
        for label in labels
    ]
    verdicts = list(
        ReviewVerdict.objects.filter(comparison=comparison)
        .select_related("reviewer")
        .order_by("-id")
    )
    sides = {label.preferred for label in labels}
    disagreement = len(sides) > 1 and not comparison.is_gold
    return ReviewItem(comparison, gold_answer, views, dict(annotator_flags), verdicts, disagreement)


def review_next_pending(*, batch: Batch, after_id: int) -> int | None:
    """The next comparison of the batch that still needs review, after ``after_id``
    (wrapping around to the first); None when none is left."""
    pending = review_queue(batch=batch).values_list("pk", flat=True)
    return pending.filter(pk__gt=after_id).first() or pending.first()


# --- exports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewState:
    """What a snapshot writes about the review of its labels."""

    verdicts: dict[int, ReviewVerdict]  # comparison id → the standing (newest) verdict
    label_flags: dict[int, tuple[str, ...]]  # label id → flag reasons
    annotator_flags: dict[tuple[str, int], tuple[str, ...]]  # (batch name, annotator id) → reasons


def review_state(labels: QuerySet[Label]) -> ReviewState:
    """The standing verdicts and the flags of the comparisons and labels ``labels`` covers.

    Only reviewed comparisons and flagged labels are held in memory: three queries.
    """
    verdicts: dict[int, ReviewVerdict] = {}
    for verdict in ReviewVerdict.objects.filter(
        comparison_id__in=labels.values("comparison_id")
    ).order_by("id"):
        verdicts[verdict.comparison_id] = verdict  # the newest stands
    label_flags: dict[int, list[str]] = defaultdict(list)
    for label_id, reason in (
        ReviewFlag.objects.filter(label__in=labels.values("id"))
        .order_by("label_id", "reason")
        .values_list("label_id", "reason")
    ):
        label_flags[label_id].append(reason)
    annotator_flags: dict[tuple[str, int], list[str]] = defaultdict(list)
    for batch, annotator_id, reason in (
        ReviewFlag.objects.filter(
            label__isnull=True, batch_id__in=labels.values("comparison__batch_id")
        )
        .order_by("batch__name", "annotator_id", "reason")
        .values_list("batch__name", "annotator_id", "reason")
    ):
        annotator_flags[batch, annotator_id].append(reason)
    return ReviewState(
        verdicts,
        {k: tuple(v) for k, v in label_flags.items()},
        {k: tuple(v) for k, v in annotator_flags.items()},
    )


# --- a batch's findings ----------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorFlagView:
    annotator: str  # pseudonym
    reason: str
    reason_label: str
    detail: str


def annotator_flag_list(*, batch: Batch) -> list[AnnotatorFlagView]:
    """The batch's annotator flags (side bias, strength skew), by pseudonym."""
    pseudonym = annotator_pseudonyms(batch)
    return [
        AnnotatorFlagView(
            pseudonym(flag.annotator_id, ""), flag.reason, flag.get_reason_display(), flag.detail
        )
        for flag in ReviewFlag.objects.filter(batch=batch, label__isnull=True).order_by(
            "reason", "id"
        )
    ]


@dataclass(frozen=True)
class RewardModelCheck:
    category: str
    model: str
    flagged: int
    checked_at: object


def reward_model_check_list(*, batch: Batch) -> list[RewardModelCheck]:
    """Per category, which reward model last checked the batch, when, and how many labels
    it flagged (only checks that flagged something leave a trace)."""
    rows = (
        ReviewFlag.objects.filter(batch=batch, reason=ReviewFlag.Reason.REWARD_MODEL)
        .order_by()
        .values("comparison__category", "source")
        .annotate(n=Count("id"), at=Max("created_at"))
        .order_by("comparison__category")
    )
    return [RewardModelCheck(r["comparison__category"], r["source"], r["n"], r["at"]) for r in rows]
