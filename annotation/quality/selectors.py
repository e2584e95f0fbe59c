"""Reads for the Quality page: a batch's labels as agreement input, per-annotator figures.

One query reads every label of a batch as plain tuples (no model instances); the
statistics are computed by ``annotation.quality.agreement`` (no Django).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import median

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from annotation.domain import Category
from annotation.gold.selectors import AnnotatorGold, annotator_gold_list
from annotation.models import AnnotatorBatchCount, Batch, Label
from annotation.quality.agreement import (
    MIN_SHARED_FOR_KAPPA,
    AgreementReport,
    Ratings,
    agreement_report,
    majority_agreement,
)

LABEL_COLUMNS = (
    "comparison_id",
    "comparison__category",
    "annotator_id",
    "source_annotator",
    "preferred",
    "strength",
    "left",
    "time_spent_ms",
)


@dataclass(frozen=True)
class LabelRow:
    comparison_id: int
    category: str
    annotator_id: int | None
    source_annotator: str
    preferred: str
    strength: str
    left: str
    time_spent_ms: int | None


def batch_label_rows(batch_id: int) -> list[LabelRow]:
    """Every label of the batch's own comparisons, as plain rows, in one query. Gold
    checks are left out: they are scored against their answer (gold accuracy), and every
    annotator meets the same few, which would weigh them far above the batch's work."""
    query = (
        Label.objects.filter(comparison__batch_id=batch_id, comparison__is_gold=False)
        .order_by()
        .values_list(*LABEL_COLUMNS)
    )
    return [LabelRow(*row) for row in query.iterator(chunk_size=10_000)]


def _rater_names(rows: list[LabelRow]) -> dict[int, str]:
    ids = {r.annotator_id for r in rows if r.annotator_id is not None}
    users = get_user_model().objects.filter(pk__in=ids).values_list("pk", "username")
    return dict(users)


def rater_name(row: LabelRow, usernames: dict[int, str]) -> str:
    """A Pairwise user by username; an imported label by the rater named in its source."""
    if row.annotator_id is not None:
        return usernames.get(row.annotator_id, f"user {row.annotator_id}")
    return row.source_annotator or "imported"


def ratings_from_rows(rows: list[LabelRow], usernames: dict[int, str]) -> Ratings:
    return Ratings.from_labels(
        (r.comparison_id, rater_name(r, usernames), r.preferred, r.strength) for r in rows
    )


@dataclass(frozen=True)
class AnnotatorQuality:
    """One annotator's work in a batch. ``None`` reads "not known" (shown as —)."""

    name: str
    user_id: int | None
    labels: int
    majority_rate: float | None
    majority_compared: int
    majority_agreed: int
    median_seconds: float | None
    left_choice_rate: float | None
    skip_rate: float | None
    gold_accuracy: float | None
    paused: bool | None  # None: an imported rater, not in the queue
    pause_reason: str  # why, and who decided (annotation.gold's pause events)


@dataclass(frozen=True)
class BatchQuality:
    batch_id: int
    labels: int
    by_category: tuple[tuple[str, AgreementReport], ...]
    annotators: tuple[AnnotatorQuality, ...]
    # Label counts per annotator on the signed scale (-3..3), for the distribution plot.
    signed_counts: dict[str, dict[int, int]]


def _skip_rates(batch_id: int) -> dict[int, float]:
    counts = AnnotatorBatchCount.objects.filter(batch_id=batch_id).values_list(
        "annotator_id", "done", "skipped"
    )
    return {a: skipped / (done + skipped) for a, done, skipped in counts if done + skipped}


def _pause_text(gold: AnnotatorGold) -> str:
    event = gold.last_event
    if not gold.paused or event is None or not event.paused:
        return ""
    return f"{event.reason} — {'by ' + event.by if event.by else 'the gold rule'}"


def batch_quality(batch_id: int, *, min_shared: int = MIN_SHARED_FOR_KAPPA) -> BatchQuality:
    """Agreement per category and each annotator's figures for one batch."""
    return batch_quality_from_rows(batch_id, batch_label_rows(batch_id), min_shared=min_shared)


def batch_quality_from_rows(
    batch_id: int, rows: list[LabelRow], *, min_shared: int = MIN_SHARED_FOR_KAPPA
) -> BatchQuality:
    """``batch_quality`` on rows already read (``batch_label_rows``)."""
    usernames = _rater_names(rows)
    ratings = ratings_from_rows(rows, usernames)
    categories = np.asarray([r.category for r in rows])
    by_category = tuple(
        (c.value, agreement_report(ratings.only(categories == c.value), min_shared=min_shared))
        for c in Category
        if (categories == c.value).any()
    )
    majority = {m.rater: m for m in majority_agreement(ratings)}
    skip_rates = _skip_rates(batch_id)
    gold = {g.annotator_id: g for g in annotator_gold_list(batch_ids=[batch_id])}
    seconds: dict[str, list[float]] = defaultdict(list)
    sides: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [chose the left one, shown]
    user_ids: dict[str, int | None] = {}
    for r in rows:
        name = rater_name(r, usernames)
        user_ids[name] = r.annotator_id
        if r.time_spent_ms is not None:
            seconds[name].append(r.time_spent_ms / 1000)
        if r.left:
            sides[name][0] += r.preferred == r.left
            sides[name][1] += 1
    annotators = []
    for name, m in majority.items():
        chose_left, shown = sides[name]
        user_id = user_ids[name]
        record = gold.get(user_id) if user_id is not None else None
        annotators.append(
            AnnotatorQuality(
                name=name,
                user_id=user_id,
                labels=m.labels,
                majority_rate=m.rate,
                majority_compared=m.compared,
                majority_agreed=m.agreed,
                median_seconds=median(seconds[name]) if seconds[name] else None,
                left_choice_rate=chose_left / shown if shown else None,
                skip_rate=skip_rates.get(user_id) if user_id is not None else None,
                gold_accuracy=record.accuracy if record else None,
                paused=record.paused if record else None,
                pause_reason=_pause_text(record) if record else "",
            )
        )
    signed: dict[str, dict[int, int]] = {name: {} for name in ratings.raters}
    for r, p in zip(ratings.rater.tolist(), ratings.point.tolist(), strict=True):
        per_point = signed[ratings.raters[r]]
        per_point[p] = per_point.get(p, 0) + 1
    return BatchQuality(
        batch_id=batch_id,
        labels=len(rows),
        by_category=by_category,
        annotators=tuple(sorted(annotators, key=lambda a: (-a.labels, a.name))),
        signed_counts=signed,
    )


def batch_list_for_quality() -> QuerySet[Batch]:
    """Batches to pick from, newest first."""
    return Batch.objects.order_by("-created_at", "-id").only("id", "name", "status")
