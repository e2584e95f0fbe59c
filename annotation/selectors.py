"""Reads of preference data. Each returns querysets or plain values; no writes.

The annotator's task and counts are read in ``annotation.queue.reads``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from annotation.models import (
    Assignment,
    Batch,
    Comparison,
    Demonstration,
    Guideline,
    Label,
    ReviewVerdict,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from annotation.domain import PreferencePair


def batch_list() -> QuerySet[Batch]:
    return Batch.objects.annotate(
        n_comparisons=Count("comparisons", distinct=True),
    ).order_by("-created_at")


@dataclass(frozen=True)
class BatchProgress:
    """A batch's own work (gold checks apart): ``labels_wanted`` is the base overlap per
    comparison plus the labels adaptive overlap asked for since."""

    comparisons: int
    labels_wanted: int
    labels: int
    in_progress: int
    skipped: int
    helpfulness: int
    safety: int
    annotators: int
    extra_labels_wanted: int = 0
    gold_checks: int = 0
    gold_labels: int = 0
    demonstrations: int = 0

    @property
    def percent(self) -> int:
        return int(100 * self.labels / self.labels_wanted) if self.labels_wanted else 0

    @property
    def remaining(self) -> int:
        return max(self.labels_wanted - self.labels, 0)


def batch_progress(batch: Batch) -> BatchProgress:
    own = Q(is_gold=False)
    counts = Comparison.objects.filter(batch=batch).aggregate(
        total=Count("id", filter=own),
        extra=Coalesce(Sum("extra_labels", filter=own), 0),
        gold=Count("id", filter=Q(is_gold=True)),
        helpfulness=Count("id", filter=own & Q(category="helpfulness")),
        safety=Count("id", filter=own & Q(category="safety")),
    )
    labels = Label.objects.filter(comparison__batch=batch, comparison__is_gold=False)
    assignments = Assignment.objects.filter(comparison__batch=batch, comparison__is_gold=False)
    return BatchProgress(
        comparisons=counts["total"],
        labels_wanted=counts["total"] * batch.labels_per_comparison + counts["extra"],
        labels=labels.count(),
        in_progress=assignments.filter(status=Assignment.Status.ASSIGNED).count(),
        skipped=assignments.filter(status=Assignment.Status.SKIPPED).count(),
        helpfulness=counts["helpfulness"],
        safety=counts["safety"],
        annotators=labels.exclude(annotator=None).values("annotator").distinct().count(),
        extra_labels_wanted=counts["extra"],
        gold_checks=counts["gold"],
        gold_labels=Label.objects.filter(comparison__batch=batch, comparison__is_gold=True).count(),
        demonstrations=Demonstration.objects.filter(batch=batch).count(),
    )


GUIDELINE_CACHE_SECONDS = 60


def _guideline_cache_key(category: str) -> str:
    return f"pairwise:guideline-active:{category}"


def guideline_active(category: str) -> Guideline | None:
    """The category's newest active guideline, cached: every task screen shows it.

    ``services.guideline_publish`` clears the entry. With a cache shared by all processes
    (Redis) a new version shows at once; with the default per-process cache other
    processes show it within ``GUIDELINE_CACHE_SECONDS`` (as do edits made in the admin).
    """
    key = _guideline_cache_key(category)
    cached = cache.get(key)
    if cached is not None:
        return cached[0]
    guideline = (
        Guideline.objects.filter(category=category, is_active=True).order_by("-version").first()
    )
    cache.set(key, (guideline,), GUIDELINE_CACHE_SECONDS)  # a tuple, so "none yet" is cached too
    return guideline


def guideline_cache_clear(category: str) -> None:
    cache.delete(_guideline_cache_key(category))


def label_list_for(annotator: User) -> QuerySet[Label]:
    """An annotator's own labels, newest first. Never other annotators' labels."""
    return (
        Label.objects.filter(annotator=annotator)
        .select_related("comparison__batch", "comparison__prompt")
        .order_by("-created_at")
    )


def comparison_list_for_batch(batch: Batch) -> QuerySet[Comparison]:
    """A batch's comparisons for the admin page, with their prompt, responses and label count."""
    return (
        Comparison.objects.filter(batch=batch)
        .select_related("prompt", "response_a", "response_b")
        .annotate(n_labels=Count("labels"))
        .order_by("id")
    )


def comparison_list(*, batch_id: int | None = None) -> QuerySet[Comparison]:
    """Comparisons with their dialogue, responses and batch, for listing (no N+1)."""
    qs = Comparison.objects.select_related("batch", "prompt", "response_a", "response_b").annotate(
        n_labels=Count("labels")
    )
    if batch_id is not None:
        qs = qs.filter(batch_id=batch_id)
    return qs.order_by("id")


def batch_list_with_progress() -> QuerySet[Batch]:
    """Batches with their progress counts in one query (subqueries, not joins that multiply).

    Annotates ``n_comparisons``, ``n_labels``, ``n_in_progress``, ``n_skipped`` (the
    batch's own work, gold checks apart), ``n_extra_labels`` (asked for by adaptive
    overlap) and ``n_demonstrations``.
    """

    def count_of(qs: QuerySet) -> Subquery:
        return Subquery(
            qs.filter(comparison__batch=OuterRef("pk"), comparison__is_gold=False)
            .order_by()
            .values("comparison__batch")
            .annotate(n=Count("pk"))
            .values("n")[:1]
        )

    own = Comparison.objects.filter(batch=OuterRef("pk"), is_gold=False).order_by().values("batch")
    n_comparisons = Subquery(own.annotate(n=Count("pk")).values("n")[:1])
    n_extra_labels = Subquery(own.annotate(n=Sum("extra_labels")).values("n")[:1])
    n_demonstrations = Subquery(
        Demonstration.objects.filter(batch=OuterRef("pk"))
        .order_by()
        .values("batch")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    return Batch.objects.annotate(
        n_comparisons=Coalesce(n_comparisons, 0),
        n_demonstrations=Coalesce(n_demonstrations, 0),
        n_extra_labels=Coalesce(n_extra_labels, 0),
        n_labels=Coalesce(count_of(Label.objects.all()), 0),
        n_in_progress=Coalesce(
            count_of(Assignment.objects.filter(status=Assignment.Status.ASSIGNED)), 0
        ),
        n_skipped=Coalesce(
            count_of(Assignment.objects.filter(status=Assignment.Status.SKIPPED)), 0
        ),
    ).order_by("-created_at")


def demonstration_list_for_batch(batch: Batch) -> QuerySet[Demonstration]:
    """A batch's demonstrations for its page, with their dialogue and author."""
    return (
        Demonstration.objects.filter(batch=batch)
        .select_related("prompt", "written_by")
        .order_by("id")
    )


def _training_batches(batch_ids: list[int]) -> None:
    """Raise ``ValueError`` naming the batches among ``batch_ids`` that cannot train a
    model: missing, not frozen, or evaluation batches."""
    batches = list(
        Batch.objects.filter(pk__in=batch_ids).values_list("id", "name", "status", "purpose")
    )
    missing = set(batch_ids) - {b[0] for b in batches}
    if missing:
        raise ValueError(f"no batch with id(s) {sorted(missing)}")
    not_frozen = [name for _, name, status, _ in batches if status != Batch.Status.FROZEN]
    if not_frozen:
        raise ValueError(f"only frozen batches train models; not frozen: {', '.join(not_frozen)}")
    evaluation = [name for _, name, _, purpose in batches if purpose == Batch.Purpose.EVALUATION]
    if evaluation:
        raise ValueError(
            f"evaluation batches never train models; evaluation: {', '.join(evaluation)}"
        )


def demonstrations_for_batches(batch_ids: list[int]) -> list[tuple[list[dict], str]]:
    """Every demonstration of the given FROZEN batches as ``(turns, response)``, turns as
    ``[{"role", "content"}, ...]`` ending with the user's: what an SFT stage trains on
    (``rlhf.ml.sft``). In batch id, then demonstration id order; raises ``ValueError``
    naming any batch that is missing, not frozen or an evaluation batch."""
    _training_batches(batch_ids)
    rows = (
        Demonstration.objects.filter(batch_id__in=batch_ids)
        .order_by("batch_id", "id")
        .values_list("prompt__turns", "response")
    )
    return [
        ([{"role": t["role"], "content": t["content"]} for t in turns], response)
        for turns, response in rows.iterator(chunk_size=2000)
    ]


def preference_pairs_frozen(*, batch_ids: list[int]) -> list[PreferencePair]:
    """Every label of the given FROZEN batches as a ``domain.PreferencePair`` (chosen =
    the preferred response), in label order, but those on gold checks and those a reviewer
    overruled; raises ``ValueError`` naming any batch that is
    not frozen. Strength stays blank ("") for unrated imported labels."""
    from annotation.domain import Category, PreferencePair, SafetyBin, Turn

    _training_batches(batch_ids)
    # Labels on gold checks are checks of annotators, never training data: the gold
    # comparison's source keeps its own labels (counted once, where they are).
    # A label a reviewer overruled (the standing verdict prefers the other response) is
    # wrong by the review's word: it trains nothing (annotation.review).
    standing = Subquery(
        ReviewVerdict.objects.filter(comparison=OuterRef("comparison_id"))
        .order_by("-id")
        .values("preferred")[:1]
    )
    rows = (
        Label.objects.filter(comparison__batch_id__in=batch_ids, comparison__is_gold=False)
        .annotate(standing=standing)
        .filter(Q(standing__isnull=True) | Q(standing=F("preferred")))
        .order_by("id")
        .values_list(
            "preferred",
            "strength",
            "safety_bin",
            "comparison__category",
            "comparison__source",
            "comparison__prompt__turns",
            "comparison__response_a__text",
            "comparison__response_b__text",
        )
    )
    pairs: list[PreferencePair] = []
    for preferred, strength, bin_, category, source, turns, text_a, text_b in rows.iterator(
        chunk_size=2000
    ):
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
